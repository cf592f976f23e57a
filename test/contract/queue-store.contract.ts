/**
 * The one conformance suite of the storage port: every {@link QueueStore} implementation runs it (see
 * memory-store.test.ts, level-store.test.ts). It checks behaviour the core relies on, not internals.
 */
import assert from 'node:assert/strict'
import { describe, test, type TestContext } from 'node:test'
import { QueueErrorCodes } from '../../src/queue/errors.js'
import type {
  GroupPartitionState,
  Membership,
  PartitionMeta,
  QueueStore,
  StoreOp,
  StoredState,
} from '../../src/queue/store.js'
import type { MessageProperties, QueueMessage } from '../../src/queue/types.js'

/**
 * Creates a fresh, unopened store with no data and registers its own cleanup (close, remove files)
 * with `t.after`. The suite opens it.
 */
export type StoreFactory = (t: TestContext) => Promise<QueueStore>

function message(
  queue: string,
  partition: number,
  seq: number,
  payload: Uint8Array = new TextEncoder().encode(`${queue}:${partition}:${seq}`),
  properties: MessageProperties = {},
  extra: { expiresAtMs?: number } = {},
): QueueMessage {
  return {
    id: `${partition}-${seq}`,
    queue,
    partition,
    seq,
    payload,
    properties,
    enqueuedAtMs: 1_700_000_000_000 + seq,
    ...extra,
  }
}

const put = (m: QueueMessage): StoreOp => ({ type: 'putMessage', message: m })
const meta = (queue: string, partition: number, lastSeq: number, count: number): PartitionMeta => ({
  queue,
  partition,
  lastSeq,
  count,
})
const groupState = (
  queue: string,
  group: string,
  partition: number,
  ackFloor: number,
): GroupPartitionState => ({
  queue,
  group,
  partition,
  ackFloor,
  settledAbove: [ackFloor + 2, ackFloor + 5],
  attempts: [
    [ackFloor + 1, 3],
    [ackFloor + 3, 1],
  ],
})

/** Plain copies, so that Buffer vs Uint8Array or frozen vs not does not matter to deepEqual. */
function plain(m: QueueMessage | undefined): unknown {
  if (m === undefined) return undefined
  const properties: Record<string, unknown> = { ...m.properties }
  if (m.properties.correlationData) properties.correlationData = [...m.properties.correlationData]
  if (m.properties.userProperties) properties.userProperties = m.properties.userProperties.map((p) => [...p])
  return { ...m, payload: [...m.payload], properties }
}

const seqsOf = (ms: readonly QueueMessage[]): number[] => ms.map((m) => m.seq)

function sortedState(state: StoredState): StoredState {
  // Code-unit order: localeCompare would ignore the U+0000 separators.
  const byKey =
    <T>(key: (x: T) => string) =>
    (a: T, b: T): number =>
      key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0
  return {
    partitions: [...state.partitions].sort(byKey((p) => `${p.queue}\u0000${p.partition}`)),
    groups: [...state.groups]
      .sort(byKey((g) => `${g.queue}\u0000${g.group}\u0000${g.partition}`))
      .map((g) => ({
        ...g,
        settledAbove: [...g.settledAbove],
        attempts: g.attempts.map((a) => [...a] as const),
      })),
    groupRecords: [...state.groupRecords].sort(byKey((r) => `${r.queue}\u0000${r.group}`)),
    layouts: [...state.layouts].sort(byKey((l) => l.queue)),
    memberships: [...state.memberships].sort(byKey((m) => `${m.clientId}\u0000${m.queue}\u0000${m.group}`)),
    queueSettings: [...state.queueSettings].sort(byKey((q) => q.queue)),
  }
}

async function rejectsWithCode(promise: Promise<unknown>, code: string): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert.equal((err as { code?: unknown }).code, code)
    return true
  })
}

/** Runs the storage contract against the stores `factory` creates. */
export function queueStoreContract(name: string, factory: StoreFactory): void {
  void describe(`QueueStore contract: ${name}`, () => {
    async function openStore(t: TestContext): Promise<QueueStore> {
      const store = await factory(t)
      await store.open()
      return store
    }

    void describe('lifecycle', () => {
      void test('rejects with CLOSED before open and after close; close is idempotent', async (t) => {
        const store = await factory(t)
        await rejectsWithCode(store.write([], { sync: false }), QueueErrorCodes.closed)
        await store.open()
        await store.close()
        await store.close()
        await rejectsWithCode(store.readMessages('q', 0, 0, 10), QueueErrorCodes.closed)
        await rejectsWithCode(store.getMessage('q', 0, 1), QueueErrorCodes.closed)
        await rejectsWithCode(store.loadState(), QueueErrorCodes.closed)
        await rejectsWithCode(store.write([put(message('q', 0, 1))], { sync: false }), QueueErrorCodes.closed)
      })

      void test('an empty store loads an empty state', async (t) => {
        const store = await openStore(t)
        assert.deepEqual(await store.loadState(), {
          partitions: [],
          groups: [],
          groupRecords: [],
          layouts: [],
          memberships: [],
          queueSettings: [],
        })
        await store.write([], { sync: true })
      })

      void test('keeps everything across close and reopen', async (t) => {
        const store = await openStore(t)
        const m = message('jobs/a', 2, 7, new Uint8Array([9, 8, 7]), { contentType: 'x' })
        await store.write(
          [
            put(m),
            { type: 'putPartitionMeta', meta: meta('jobs/a', 2, 7, 1) },
            { type: 'putGroupState', state: groupState('jobs/a', 'workers', 2, 4) },
            { type: 'putGroupRecord', record: { queue: 'jobs/a', group: 'workers', implicit: false } },
            { type: 'putQueueLayout', layout: { queue: 'jobs/a', partitions: 3 } },
            { type: 'putMembership', membership: { clientId: 'c1', queue: 'jobs/a', group: 'workers' } },
            { type: 'putQueueSettings', record: { queue: 'jobs/a', settings: { ordering: 'none' } } },
          ],
          { sync: true },
        )
        await store.close()
        await store.open()
        assert.deepEqual(sortedState(await store.loadState()), {
          partitions: [meta('jobs/a', 2, 7, 1)],
          groups: [groupState('jobs/a', 'workers', 2, 4)],
          groupRecords: [{ queue: 'jobs/a', group: 'workers', implicit: false }],
          layouts: [{ queue: 'jobs/a', partitions: 3 }],
          memberships: [{ clientId: 'c1', queue: 'jobs/a', group: 'workers' }],
          queueSettings: [{ queue: 'jobs/a', settings: { ordering: 'none' } }],
        })
        assert.deepEqual(plain(await store.getMessage('jobs/a', 2, 7)), plain(m))
      })
    })

    void describe('messages', () => {
      void test('round-trips every property, binary correlation data and repeated user-property keys', async (t) => {
        const store = await openStore(t)
        const full = message(
          'q',
          0,
          1,
          new Uint8Array([0, 1, 2, 254, 255]),
          {
            contentType: 'application/json; charset=utf-8',
            responseTopic: 'replies/ü/🚀',
            correlationData: new Uint8Array([0, 0xff, 0x00, 0x80, 0x7f]),
            payloadFormatIndicator: true,
            userProperties: [
              ['k', 'v1'],
              ['k', 'v2'],
              ['', ''],
              ['ключ', '值 🚀'],
            ],
          },
          { expiresAtMs: 1_700_000_060_000.5 },
        )
        const bare = message('q', 0, 2, new Uint8Array(0))
        const pfiFalse = message('q', 0, 3, new Uint8Array([1]), {
          payloadFormatIndicator: false,
          userProperties: [],
        })
        await store.write([put(full), put(bare), put(pfiFalse)], { sync: false })

        assert.deepEqual(plain(await store.getMessage('q', 0, 1)), plain(full))
        const readBare = await store.getMessage('q', 0, 2)
        assert.deepEqual(plain(readBare), plain(bare))
        assert.equal(readBare?.payload.byteLength, 0)
        assert.deepEqual(Object.keys(readBare?.properties ?? { missing: 1 }), [])
        assert.equal('expiresAtMs' in (readBare ?? {}), false)
        assert.deepEqual(plain(await store.getMessage('q', 0, 3)), plain(pfiFalse))
        assert.ok((await store.getMessage('q', 0, 1))?.payload instanceof Uint8Array)
      })

      void test('round-trips a 1 MiB payload', async (t) => {
        const store = await openStore(t)
        const payload = new Uint8Array(1024 * 1024)
        for (let i = 0; i < payload.length; i++) payload[i] = (i * 31 + 7) & 0xff
        await store.write([put(message('big', 0, 1, payload))], { sync: true })
        const read = await store.getMessage('big', 0, 1)
        assert.ok(read)
        assert.equal(read.payload.byteLength, payload.byteLength)
        assert.ok(Buffer.from(payload).equals(Buffer.from(read.payload)))
      })

      void test('getMessage of an absent message resolves undefined', async (t) => {
        const store = await openStore(t)
        await store.write([put(message('q', 0, 1))], { sync: false })
        assert.equal(await store.getMessage('q', 0, 2), undefined)
        assert.equal(await store.getMessage('q', 1, 1), undefined)
        assert.equal(await store.getMessage('other', 0, 1), undefined)
      })

      void test('readMessages returns ascending seqs, across byte and 32-bit boundaries', async (t) => {
        const store = await openStore(t)
        const seqs = [2 ** 53 - 1, 1, 256, 2 ** 32, 255, 65_536, 2, 2 ** 32 + 1, 257]
        // Several batches, out of order.
        await store.write(
          seqs.slice(0, 4).map((s) => put(message('q', 3, s))),
          { sync: false },
        )
        await store.write(
          seqs.slice(4).map((s) => put(message('q', 3, s))),
          { sync: false },
        )
        const read = await store.readMessages('q', 3, 0, 100)
        assert.deepEqual(
          seqsOf(read),
          [...seqs].sort((a, b) => a - b),
        )
        for (const m of read) assert.deepEqual(plain(m), plain(message('q', 3, m.seq)))
      })

      void test('readMessages honours fromSeq (inclusive) and limit', async (t) => {
        const store = await openStore(t)
        await store.write(
          [1, 2, 3, 5, 8, 13].map((s) => put(message('q', 0, s))),
          { sync: false },
        )
        assert.deepEqual(seqsOf(await store.readMessages('q', 0, 1, 100)), [1, 2, 3, 5, 8, 13])
        assert.deepEqual(seqsOf(await store.readMessages('q', 0, 3, 2)), [3, 5])
        assert.deepEqual(seqsOf(await store.readMessages('q', 0, 4, 2)), [5, 8])
        assert.deepEqual(seqsOf(await store.readMessages('q', 0, 13, 10)), [13])
        assert.deepEqual(seqsOf(await store.readMessages('q', 0, 14, 10)), [])
        assert.deepEqual(seqsOf(await store.readMessages('q', 0, 0, 1)), [1])
        assert.deepEqual(seqsOf(await store.readMessages('q', 0, 1, 0)), [])
        assert.deepEqual(seqsOf(await store.readMessages('q', 0, 1, 6)), [1, 2, 3, 5, 8, 13])
      })

      void test('partitions do not leak into each other', async (t) => {
        const store = await openStore(t)
        const partitions = [0, 1, 255, 256, 65_536, 0xffff_ffff]
        await store.write(
          partitions.flatMap((p) => [put(message('q', p, 1)), put(message('q', p, 2))]),
          { sync: false },
        )
        for (const p of partitions) {
          const read = await store.readMessages('q', p, 0, 100)
          assert.deepEqual(
            read.map((m) => [m.partition, m.seq, m.id]),
            [
              [p, 1, `${p}-1`],
              [p, 2, `${p}-2`],
            ],
          )
        }
        assert.deepEqual(await store.readMessages('q', 2, 0, 100), [])
      })

      void test('queue names that prefix each other, unicode and "/" or "!" names stay apart', async (t) => {
        const store = await openStore(t)
        const queues = ['a', 'a/b', 'ab', 'a/', 'a!b', 'a!', 'tasks/image-processing', 'ünï/cødé/🚀', 'Ω']
        await store.write(
          queues.flatMap((q, i) => [put(message(q, 0, 1)), put(message(q, 0, i + 2))]),
          { sync: false },
        )
        for (const [i, q] of queues.entries()) {
          const read = await store.readMessages(q, 0, 0, 100)
          assert.deepEqual(seqsOf(read), [1, i + 2], q)
          for (const m of read) assert.deepEqual(plain(m), plain(message(q, 0, m.seq)), q)
        }
      })

      void test('deleteMessage removes exactly that message; deleting an absent one is a no-op', async (t) => {
        const store = await openStore(t)
        await store.write(
          [
            put(message('q', 0, 1)),
            put(message('q', 0, 2)),
            put(message('q', 0, 3)),
            put(message('q', 1, 2)),
          ],
          { sync: false },
        )
        await store.write([{ type: 'deleteMessage', queue: 'q', partition: 0, seq: 2 }], { sync: false })
        await store.write(
          [
            { type: 'deleteMessage', queue: 'q', partition: 0, seq: 99 },
            { type: 'deleteMessage', queue: 'nope', partition: 0, seq: 1 },
          ],
          { sync: false },
        )
        assert.deepEqual(seqsOf(await store.readMessages('q', 0, 0, 10)), [1, 3])
        assert.equal(await store.getMessage('q', 0, 2), undefined)
        assert.deepEqual(seqsOf(await store.readMessages('q', 1, 0, 10)), [2])
      })

      void test('stored data does not alias what the caller passed in or got back', async (t) => {
        const store = await openStore(t)
        const payload = new Uint8Array([1, 2, 3])
        const correlationData = new Uint8Array([4, 5])
        const userProperties: Array<[string, string]> = [['k', 'v']]
        const original = message('q', 0, 1, payload, { correlationData, userProperties })
        const expected = plain(original)
        await store.write([put(original)], { sync: false })
        payload[0] = 99
        correlationData[0] = 99
        userProperties.push(['x', 'y'])
        userProperties[0] = ['k', 'changed']
        const first = await store.getMessage('q', 0, 1)
        assert.deepEqual(plain(first), expected)
        if (first) {
          first.payload[1] = 99
          if (first.properties.correlationData) first.properties.correlationData[1] = 99
        }
        assert.deepEqual(plain(await store.getMessage('q', 0, 1)), expected)
        assert.deepEqual(plain((await store.readMessages('q', 0, 0, 1))[0]), expected)
      })
    })

    void describe('partition metas, group states and memberships', () => {
      void test('putPartitionMeta overwrites; loadState holds one meta per partition', async (t) => {
        const store = await openStore(t)
        await store.write([{ type: 'putPartitionMeta', meta: meta('q', 0, 1, 1) }], { sync: false })
        await store.write(
          [
            { type: 'putPartitionMeta', meta: meta('q', 0, 5, 3) },
            { type: 'putPartitionMeta', meta: meta('q', 1, 2 ** 40, 0) },
            { type: 'putPartitionMeta', meta: meta('qq', 0, 9, 9) },
          ],
          { sync: false },
        )
        await store.write([{ type: 'putPartitionMeta', meta: meta('q', 0, 6, 2) }], { sync: false })
        assert.deepEqual(sortedState(await store.loadState()).partitions, [
          meta('q', 0, 6, 2),
          meta('q', 1, 2 ** 40, 0),
          meta('qq', 0, 9, 9),
        ])
      })

      void test('putGroupState overwrites, deleteGroupState removes exactly one', async (t) => {
        const store = await openStore(t)
        const empty: GroupPartitionState = {
          queue: 'q/x',
          group: 'g2',
          partition: 0,
          ackFloor: 0,
          settledAbove: [],
          attempts: [],
        }
        await store.write(
          [
            { type: 'putGroupState', state: groupState('q/x', 'g', 0, 1) },
            { type: 'putGroupState', state: groupState('q/x', 'g', 1, 1) },
            { type: 'putGroupState', state: empty },
            { type: 'putGroupState', state: groupState('q/x', 'gruppe/ü', 0, 2 ** 33) },
          ],
          { sync: false },
        )
        await store.write([{ type: 'putGroupState', state: groupState('q/x', 'g', 0, 10) }], { sync: false })
        await store.write([{ type: 'deleteGroupState', queue: 'q/x', group: 'g', partition: 1 }], {
          sync: false,
        })
        await store.write([{ type: 'deleteGroupState', queue: 'q/x', group: 'absent', partition: 0 }], {
          sync: false,
        })
        assert.deepEqual(sortedState(await store.loadState()).groups, [
          groupState('q/x', 'g', 0, 10),
          empty,
          groupState('q/x', 'gruppe/ü', 0, 2 ** 33),
        ])
      })

      void test('putGroupRecord overwrites, deleteGroupRecord removes exactly one, deleteQueue removes them', async (t) => {
        const store = await openStore(t)
        const idleSinceMs = 2 ** 41 + 7
        await store.write(
          [
            { type: 'putGroupRecord', record: { queue: 'q', group: 'g', implicit: false } },
            { type: 'putGroupRecord', record: { queue: 'q', group: 'g', implicit: true, idleSinceMs } },
            { type: 'putGroupRecord', record: { queue: 'q', group: 'g/ü', implicit: false, idleSinceMs: 0 } },
            { type: 'putGroupRecord', record: { queue: 'q/2', group: 'g', implicit: false } },
            { type: 'putGroupRecord', record: { queue: 'qq', group: 'h', implicit: true } },
          ],
          { sync: false },
        )
        assert.deepEqual(sortedState(await store.loadState()).groupRecords, [
          { queue: 'q', group: 'g', implicit: true, idleSinceMs },
          { queue: 'q', group: 'g/ü', implicit: false, idleSinceMs: 0 },
          { queue: 'q/2', group: 'g', implicit: false },
          { queue: 'qq', group: 'h', implicit: true },
        ])
        await store.write(
          [
            { type: 'deleteGroupRecord', queue: 'q', group: 'g/ü' },
            { type: 'deleteGroupRecord', queue: 'absent', group: 'g' },
            { type: 'deleteQueue', queue: 'q/2' },
          ],
          { sync: false },
        )
        await store.close()
        await store.open()
        assert.deepEqual(sortedState(await store.loadState()).groupRecords, [
          { queue: 'q', group: 'g', implicit: true, idleSinceMs },
          { queue: 'qq', group: 'h', implicit: true },
        ])
      })

      void test('putQueueLayout overwrites, one per queue; deleteQueue removes it', async (t) => {
        const store = await openStore(t)
        await store.write(
          [
            { type: 'putQueueLayout', layout: { queue: 'q', partitions: 2 } },
            { type: 'putQueueLayout', layout: { queue: 'q', partitions: 8 } },
            { type: 'putQueueLayout', layout: { queue: 'q/2', partitions: 0xffff_ffff } },
            { type: 'putQueueLayout', layout: { queue: 'qq', partitions: 1 } },
          ],
          { sync: false },
        )
        await store.write([{ type: 'deleteQueue', queue: 'qq' }], { sync: false })
        await store.close()
        await store.open()
        assert.deepEqual(sortedState(await store.loadState()).layouts, [
          { queue: 'q', partitions: 8 },
          { queue: 'q/2', partitions: 0xffff_ffff },
        ])
        await rejectsWithCode(
          store.write([{ type: 'putQueueLayout', layout: { queue: 'q', partitions: 0 } }], { sync: false }),
          QueueErrorCodes.storageFailure,
        )
      })

      void test('putMembership is idempotent, deleteMembership removes exactly one', async (t) => {
        const store = await openStore(t)
        const m = (clientId: string, queue: string, group: string): Membership => ({ clientId, queue, group })
        await store.write(
          [
            { type: 'putMembership', membership: m('c', 'q', 'g') },
            { type: 'putMembership', membership: m('c', 'q', 'g') },
            { type: 'putMembership', membership: m('c', 'q', 'g/2') },
            { type: 'putMembership', membership: m('c', 'q/2', 'g') },
            { type: 'putMembership', membership: m('cc', 'q', 'g') },
          ],
          { sync: false },
        )
        await store.write(
          [
            { type: 'deleteMembership', membership: m('c', 'q', 'g') },
            { type: 'deleteMembership', membership: m('c', 'absent', 'g') },
          ],
          { sync: false },
        )
        assert.deepEqual(sortedState(await store.loadState()).memberships, [
          m('c', 'q', 'g/2'),
          m('c', 'q/2', 'g'),
          m('cc', 'q', 'g'),
        ])
      })
    })

    void describe('deleteQueue', () => {
      void test('deletes only that queue, not queues sharing a name prefix, and keeps memberships', async (t) => {
        const store = await openStore(t)
        const queues = ['a', 'a/b', 'ab', 'a!']
        await store.write(
          queues.flatMap((q) => [
            put(message(q, 0, 1)),
            put(message(q, 1, 2)),
            { type: 'putPartitionMeta', meta: meta(q, 0, 1, 1) } as const,
            { type: 'putPartitionMeta', meta: meta(q, 1, 2, 1) } as const,
            { type: 'putGroupState', state: groupState(q, 'g', 0, 0) } as const,
            { type: 'putMembership', membership: { clientId: 'c', queue: q, group: 'g' } } as const,
          ]),
          { sync: false },
        )
        await store.write([{ type: 'deleteQueue', queue: 'a' }], { sync: true })
        assert.deepEqual(await store.readMessages('a', 0, 0, 10), [])
        assert.deepEqual(await store.readMessages('a', 1, 0, 10), [])
        const state = sortedState(await store.loadState())
        assert.deepEqual(
          state.partitions.map((p) => [p.queue, p.partition]),
          [
            ['a!', 0],
            ['a!', 1],
            ['a/b', 0],
            ['a/b', 1],
            ['ab', 0],
            ['ab', 1],
          ],
        )
        assert.deepEqual(
          state.groups.map((g) => g.queue),
          ['a!', 'a/b', 'ab'],
        )
        assert.equal(state.memberships.length, 4)
        for (const q of ['a/b', 'ab', 'a!']) {
          assert.deepEqual(seqsOf(await store.readMessages(q, 0, 0, 10)), [1], q)
          assert.deepEqual(seqsOf(await store.readMessages(q, 1, 0, 10)), [2], q)
        }
      })

      void test('deletes the queue settings with it, and keeps those of other queues', async (t) => {
        const store = await openStore(t)
        await store.write(
          [
            { type: 'putQueueSettings', record: { queue: 'a', settings: { partitions: 3 } } },
            { type: 'putQueueSettings', record: { queue: 'ab', settings: { retry: { maxDeliveries: 2 } } } },
            { type: 'putQueueSettings', record: { queue: 'a', settings: { partitions: 4 } } },
          ],
          { sync: false },
        )
        assert.deepEqual(sortedState(await store.loadState()).queueSettings, [
          { queue: 'a', settings: { partitions: 4 } },
          { queue: 'ab', settings: { retry: { maxDeliveries: 2 } } },
        ])
        await store.write([{ type: 'deleteQueue', queue: 'a' }], { sync: false })
        assert.deepEqual(sortedState(await store.loadState()).queueSettings, [
          { queue: 'ab', settings: { retry: { maxDeliveries: 2 } } },
        ])
      })

      void test('of an unknown queue is a no-op', async (t) => {
        const store = await openStore(t)
        await store.write([put(message('a/b', 0, 1))], { sync: false })
        await store.write([{ type: 'deleteQueue', queue: 'a' }], { sync: false })
        assert.deepEqual(seqsOf(await store.readMessages('a/b', 0, 0, 10)), [1])
      })
    })

    void describe('batches', () => {
      void test('apply in order within a batch', async (t) => {
        const store = await openStore(t)
        await store.write(
          [
            put(message('q', 0, 1)),
            { type: 'deleteMessage', queue: 'q', partition: 0, seq: 1 },
            { type: 'deleteMessage', queue: 'q', partition: 0, seq: 2 },
            put(message('q', 0, 2, new Uint8Array([2]))),
            { type: 'putPartitionMeta', meta: meta('q', 0, 1, 1) },
            { type: 'putPartitionMeta', meta: meta('q', 0, 2, 1) },
            { type: 'putGroupState', state: groupState('q', 'g', 0, 0) },
            { type: 'deleteGroupState', queue: 'q', group: 'g', partition: 0 },
          ],
          { sync: false },
        )
        assert.deepEqual(seqsOf(await store.readMessages('q', 0, 0, 10)), [2])
        assert.deepEqual((await store.getMessage('q', 0, 2))?.payload, new Uint8Array([2]))
        const state = await store.loadState()
        assert.deepEqual(state.partitions, [meta('q', 0, 2, 1)])
        assert.deepEqual(state.groups, [])
      })

      void test('deleteQueue removes what the same batch put before it, not what comes after', async (t) => {
        const store = await openStore(t)
        await store.write([put(message('q', 0, 1)), { type: 'putPartitionMeta', meta: meta('q', 0, 1, 1) }], {
          sync: false,
        })
        await store.write(
          [
            put(message('q', 0, 2)),
            { type: 'putGroupState', state: groupState('q', 'g', 0, 0) },
            put(message('other', 0, 1)),
            { type: 'deleteQueue', queue: 'q' },
            put(message('q', 0, 3)),
            { type: 'putPartitionMeta', meta: meta('q', 0, 3, 1) },
          ],
          { sync: false },
        )
        assert.deepEqual(seqsOf(await store.readMessages('q', 0, 0, 10)), [3])
        assert.deepEqual(seqsOf(await store.readMessages('other', 0, 0, 10)), [1])
        const state = await store.loadState()
        assert.deepEqual(state.partitions, [meta('q', 0, 3, 1)])
        assert.deepEqual(state.groups, [])
      })

      void test('are all-or-nothing: an op that cannot be stored rejects the whole batch', async (t) => {
        const store = await openStore(t)
        await store.write([put(message('q', 0, 1)), { type: 'putPartitionMeta', meta: meta('q', 0, 1, 1) }], {
          sync: false,
        })
        const before = sortedState(await store.loadState())
        const good: StoreOp[] = [
          put(message('q', 0, 2)),
          { type: 'putPartitionMeta', meta: meta('q', 0, 2, 2) },
          { type: 'deleteMessage', queue: 'q', partition: 0, seq: 1 },
          { type: 'putMembership', membership: { clientId: 'c', queue: 'q', group: 'g' } },
          { type: 'deleteQueue', queue: 'q' },
        ]
        const bad: StoreOp[] = [
          put(message('q', -1, 3)),
          put(message('q', 1.5, 3)),
          put(message('q', 0, Number.NaN)),
          put(message('q', 0, 2 ** 53)),
          put({ ...message('q', 0, 3), id: 'not-the-id' }),
          put(message('bad\u0000name', 0, 3)),
          { type: 'putPartitionMeta', meta: meta('q', 0, -1, 0) },
          { type: 'putGroupState', state: { ...groupState('q', 'g', 0, 0), attempts: [[1, -1]] } },
          { type: 'deleteGroupState', queue: 'q', group: 'g\u0000', partition: 0 },
          { type: 'putMembership', membership: { clientId: '\u0000', queue: 'q', group: 'g' } },
          { type: 'bogus' } as unknown as StoreOp,
        ]
        for (const [i, badOp] of bad.entries()) {
          for (const ops of [
            [...good, badOp],
            [badOp, ...good],
            [...good.slice(0, 2), badOp, ...good.slice(2)],
          ]) {
            await rejectsWithCode(store.write(ops, { sync: true }), QueueErrorCodes.storageFailure)
            assert.deepEqual(sortedState(await store.loadState()), before, `bad op #${i}`)
            assert.deepEqual(seqsOf(await store.readMessages('q', 0, 0, 10)), [1], `bad op #${i}`)
          }
        }
      })

      void test('concurrent writes apply in call order', async (t) => {
        const store = await openStore(t)
        const writes: Array<Promise<void>> = []
        for (let i = 1; i <= 50; i++) {
          writes.push(
            store.write([put(message('q', 0, i)), { type: 'putPartitionMeta', meta: meta('q', 0, i, i) }], {
              sync: i % 10 === 0,
            }),
          )
        }
        writes.push(store.write([{ type: 'deleteQueue', queue: 'q' }], { sync: false }))
        writes.push(
          store.write([put(message('q', 0, 51)), { type: 'putPartitionMeta', meta: meta('q', 0, 51, 1) }], {
            sync: false,
          }),
        )
        await Promise.all(writes)
        assert.deepEqual(seqsOf(await store.readMessages('q', 0, 0, 100)), [51])
        assert.deepEqual((await store.loadState()).partitions, [meta('q', 0, 51, 1)])
      })

      void test('a resolved write is visible to reads, with sync true and false', async (t) => {
        const store = await openStore(t)
        for (const sync of [true, false]) {
          const seq = sync ? 1 : 2
          await store.write([put(message('q', 0, seq))], { sync })
          assert.equal((await store.getMessage('q', 0, seq))?.seq, seq)
        }
      })
    })
  })
}
