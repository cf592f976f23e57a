// The on-disk formats did not change with the LevelDB kernel (src/storage/level/): the bytes below
// were written by the code before it (commit dafd381) for the scenarios in this file. The new code
// must write exactly them, and must load a directory that holds exactly them.
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import { test, type TestContext } from 'node:test'
import { ClassicLevel } from 'classic-level'
import type { StoredQueueSettings } from '../../src/queue/store.js'
import type { QueueMessage } from '../../src/queue/types.js'
import { LevelPersistence, type StoredPacket } from '../../src/protocol/persistence/level-persistence.js'
import { ForwardBuffer, type BufferedPublish } from '../../src/storage/forward/forward-buffer.js'
import { LevelQueueStore } from '../../src/storage/level-store.js'

type Pairs = Array<[string, string]>

/** Any JSON object: the store keeps queue settings as JSON without reading them. */
const SETTINGS = JSON.parse('{"maxDeliveries":3}') as StoredQueueSettings['settings']

/** [key hex, value hex] of the queue store, in key order. */
const QUEUES: Pairs = [
  ['616a6f62732fc3bc0067', '030000018bcfe5687b'],
  ['616a6f62732fc3bc0068', '00'],
  ['636331006a6f62732fc3bc006700', ''],
  ['63633200676f6e65006700', ''],
  [
    '676a6f62732fc3bc00670000000003',
    '000000000000000500000001000000000000000700000001000000000000000600000002',
  ],
  ['6c6a6f62732fc3bc00', '00000004'],
  [
    '6d6a6f62732fc3bc00000000030000000000000007',
    '7f4278bcfe568000004278bcfe652600000000000a746578742f706c61696e00000003722f3100000002090800000002000000016b0000000176000000016b0000000177010203',
  ],
  ['706a6f62732fc3bc0000000003', '00000000000000070000000000000001'],
  ['736a6f62732fc3bc00', '7b226d617844656c69766572696573223a337d'],
  ['76', '01'],
]

/** [key hex, value hex] of the forward buffer, in key order. */
const FORWARD: Pairs = [
  ['0001', '01'],
  ['0002610000000000', '0000000000000002'],
  ['6100000000000000000000000002', '034278bcfe568000004278bcfe5dd30000000000017874776f'],
  ['612f6200ffffffff0000000000000001', '004278bcfe568000007468726565'],
]

/** [key, value] of the session store as UTF-8 text, in key order (before its format record existed). */
const SESSIONS: Pairs = [
  [
    'i\u0000client-1\u00005',
    '{"cmd":"publish","brokerId":"broker-1","brokerCounter":0,"topic":"in","payload":{"$b64":"cTI="},"qos":2,"retain":false,"dup":false,"messageId":5}',
  ],
  [
    'o\u0000client-1\u00000000000000000001',
    '{"properties":{"correlationData":{"$b64":"AQI="}},"cmd":"publish","brokerId":"broker-1","brokerCounter":1,"topic":"a/x","payload":{"$b64":"b25l"},"qos":1,"retain":false,"dup":false,"messageId":11}',
  ],
  [
    'r\u0000r/1',
    '{"cmd":"publish","topic":"r/1","payload":{"$b64":"a2VwdA=="},"qos":1,"retain":true,"brokerId":"broker-1"}',
  ],
  ['s\u0000client-1\u0000a/+', '{"qos":1,"rh":0,"rap":0,"nl":0,"subscriptionIdentifier":7}'],
  ['s\u0000client-1\u0000b', '{"qos":0}'],
  [
    'w\u0000client-1',
    '{"cmd":"publish","topic":"will","payload":{"$b64":"Ynll"},"qos":1,"retain":false,"brokerId":"broker-1","clientId":"client-1"}',
  ],
]
/** The session store's format record, added with the kernel: `00 'v'` -> 0x01. */
const SESSIONS_FORMAT: [string, string] = ['0076', '01']

const hex = (pairs: Pairs): Pairs =>
  pairs.map(([k, v]) => [Buffer.from(k).toString('hex'), Buffer.from(v).toString('hex')])

async function tempDir(t: TestContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'spool-format-'))
  t.after(() => rm(dir, { recursive: true, force: true }))
  return dir
}

async function dump(path: string): Promise<Pairs> {
  const db = new ClassicLevel<Buffer, Buffer>(path, { keyEncoding: 'buffer', valueEncoding: 'buffer' })
  await db.open()
  const entries = await db.iterator().all()
  await db.close()
  return entries.map(([k, v]) => [k.toString('hex'), v.toString('hex')])
}

async function writeRaw(path: string, pairs: Pairs): Promise<void> {
  const db = new ClassicLevel<Buffer, Buffer>(path, { keyEncoding: 'buffer', valueEncoding: 'buffer' })
  await db.open()
  await db.batch(
    pairs.map(([k, v]) => ({ type: 'put', key: Buffer.from(k, 'hex'), value: Buffer.from(v, 'hex') })),
  )
  await db.close()
}

const message = (
  queue: string,
  partition: number,
  seq: number,
  extra: Partial<QueueMessage> = {},
): QueueMessage => ({
  id: `${partition}-${seq}`,
  queue,
  partition,
  seq,
  payload: new Uint8Array([1, 2, 3]),
  properties: {},
  enqueuedAtMs: 1_700_000_000_000,
  ...extra,
})

async function writeQueues(path: string): Promise<void> {
  const q = new LevelQueueStore(path)
  await q.open()
  await q.write(
    [
      {
        type: 'putMessage',
        message: message('jobs/ü', 3, 7, {
          expiresAtMs: 1_700_000_060_000,
          properties: {
            contentType: 'text/plain',
            responseTopic: 'r/1',
            correlationData: new Uint8Array([9, 8]),
            payloadFormatIndicator: true,
            userProperties: [
              ['k', 'v'],
              ['k', 'w'],
            ],
          },
        }),
      },
      { type: 'putPartitionMeta', meta: { queue: 'jobs/ü', partition: 3, lastSeq: 7, count: 1 } },
      {
        type: 'putGroupState',
        state: {
          queue: 'jobs/ü',
          group: 'g',
          partition: 3,
          ackFloor: 5,
          settledAbove: [7],
          attempts: [[6, 2]],
        },
      },
      {
        type: 'putGroupRecord',
        record: { queue: 'jobs/ü', group: 'g', implicit: true, idleSinceMs: 1_700_000_000_123 },
      },
      { type: 'putGroupRecord', record: { queue: 'jobs/ü', group: 'h', implicit: false } },
      { type: 'putQueueLayout', layout: { queue: 'jobs/ü', partitions: 4 } },
      { type: 'putQueueSettings', record: { queue: 'jobs/ü', settings: SETTINGS } },
      { type: 'putMembership', membership: { clientId: 'c1', queue: 'jobs/ü', group: 'g' } },
      { type: 'putMessage', message: message('gone', 0, 1) },
      { type: 'putMembership', membership: { clientId: 'c2', queue: 'gone', group: 'g' } },
      { type: 'deleteQueue', queue: 'gone' },
      { type: 'putMessage', message: message('jobs/ü', 3, 8) },
      { type: 'deleteMessage', queue: 'jobs/ü', partition: 3, seq: 8 },
    ],
    { sync: true },
  )
  await q.close()
}

const pub = (
  queue: string,
  partition: number,
  text: string,
  extra: Partial<BufferedPublish> = {},
): BufferedPublish => ({
  queue,
  partition,
  payload: new Uint8Array(Buffer.from(text)),
  properties: {},
  acceptedAtMs: 1_700_000_000_000,
  ...extra,
})

async function writeForward(path: string): Promise<void> {
  const f = new ForwardBuffer(path)
  await f.open()
  await Promise.all([
    f.append(pub('a', 0, 'one'), { sync: true }),
    f.append(pub('a', 0, 'two', { messageExpirySeconds: 30, properties: { contentType: 'x' } }), {
      sync: false,
    }),
    f.append(pub('a/b', 0xffff_ffff, 'three'), { sync: false }),
  ])
  await f.remove('a', 0, 1)
  await f.close()
}

const broker = { id: 'broker-1' }
const client = { id: 'client-1' }
const publish = (topic: string, payload: string, extra: Partial<StoredPacket> = {}): StoredPacket => ({
  cmd: 'publish',
  topic,
  payload: Buffer.from(payload),
  qos: 1,
  retain: false,
  brokerId: broker.id,
  ...extra,
})

async function writeSessions(path: string): Promise<void> {
  const p = new LevelPersistence({ path })
  await p.setup(broker)
  await p.addSubscriptions(client, [
    { topic: 'a/+', qos: 1, rh: 0, rap: 0, nl: 0, subscriptionIdentifier: 7 },
    { topic: 'b', qos: 0 },
  ])
  await p.storeRetained(publish('r/1', 'kept', { retain: true }))
  await p.putWill(client, publish('will', 'bye'))
  await p.outgoingEnqueueCombi(
    [{ clientId: client.id }],
    publish('a/x', 'one', { brokerCounter: 1, properties: { correlationData: Buffer.from([1, 2]) } }),
  )
  await p.outgoingUpdate(client, publish('a/x', 'one', { brokerCounter: 1, messageId: 11 }))
  await p.incomingStorePacket(client, publish('in', 'q2', { qos: 2, messageId: 5 }))
  await p.destroy()
}

async function all<T>(stream: Readable): Promise<T[]> {
  const out: T[] = []
  for await (const item of stream) out.push(item as T)
  return out
}

void test('the queue store writes the same bytes as before the kernel', async (t) => {
  const path = join(await tempDir(t), 'queues')
  await writeQueues(path)
  assert.deepEqual(await dump(path), QUEUES)
})

void test('the forward buffer writes the same bytes as before the kernel', async (t) => {
  const path = join(await tempDir(t), 'forward')
  await writeForward(path)
  assert.deepEqual(await dump(path), FORWARD)
})

void test('the session store writes the same bytes as before the kernel, plus its format record', async (t) => {
  const path = join(await tempDir(t), 'sessions')
  await writeSessions(path)
  const expected = [...hex(SESSIONS), SESSIONS_FORMAT].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
  assert.deepEqual(await dump(path), expected)
})

void test('a queue store directory written before the kernel loads', async (t) => {
  const path = join(await tempDir(t), 'queues')
  await writeRaw(path, QUEUES)
  const store = new LevelQueueStore(path)
  t.after(() => store.close())
  await store.open()
  const state = await store.loadState()
  assert.deepEqual(state.partitions, [{ queue: 'jobs/ü', partition: 3, lastSeq: 7, count: 1 }])
  assert.deepEqual(state.groups, [
    { queue: 'jobs/ü', group: 'g', partition: 3, ackFloor: 5, settledAbove: [7], attempts: [[6, 2]] },
  ])
  assert.deepEqual(state.groupRecords, [
    { queue: 'jobs/ü', group: 'g', implicit: true, idleSinceMs: 1_700_000_000_123 },
    { queue: 'jobs/ü', group: 'h', implicit: false },
  ])
  assert.deepEqual(state.layouts, [{ queue: 'jobs/ü', partitions: 4 }])
  assert.deepEqual(state.queueSettings, [{ queue: 'jobs/ü', settings: { maxDeliveries: 3 } }])
  assert.deepEqual(state.memberships, [
    { clientId: 'c1', queue: 'jobs/ü', group: 'g' },
    { clientId: 'c2', queue: 'gone', group: 'g' },
  ])
  const [read, ...rest] = await store.readMessages('jobs/ü', 3, 0, 10)
  assert.equal(rest.length, 0)
  assert.equal(read?.id, '3-7')
  assert.equal(read.expiresAtMs, 1_700_000_060_000)
  assert.deepEqual(read.properties.userProperties, [
    ['k', 'v'],
    ['k', 'w'],
  ])
  assert.deepEqual(read.properties.correlationData, new Uint8Array([9, 8]))
})

void test('a forward buffer directory written before the kernel loads, and its seqs continue', async (t) => {
  const path = join(await tempDir(t), 'forward')
  await writeRaw(path, FORWARD)
  const buffer = new ForwardBuffer(path)
  t.after(() => buffer.close())
  await buffer.open()
  assert.deepEqual(buffer.pending(), [
    { queue: 'a', partition: 0, count: 1 },
    { queue: 'a/b', partition: 0xffff_ffff, count: 1 },
  ])
  const [two] = await buffer.oldest('a', 0, 10)
  assert.equal(two?.seq, 2)
  assert.equal(Buffer.from(two.publish.payload).toString(), 'two')
  assert.equal(two.publish.messageExpirySeconds, 30)
  await buffer.append(pub('a', 0, 'four'), { sync: false })
  assert.deepEqual(
    (await buffer.oldest('a', 0, 10)).map((e) => e.seq),
    [2, 3],
  )
})

void test('a session store directory written before the kernel loads, and gets its format record', async (t) => {
  const path = join(await tempDir(t), 'sessions')
  await writeRaw(path, hex(SESSIONS))
  const p = new LevelPersistence({ path })
  await p.setup(broker)
  assert.deepEqual(await p.subscriptionsByClient(client), [
    { topic: 'a/+', qos: 1, rh: 0, rap: 0, nl: 0, subscriptionIdentifier: 7 },
    { topic: 'b', qos: 0 },
  ])
  assert.equal((await p.getWill(client))?.payload.toString(), 'bye')
  const retained = await all<StoredPacket>(p.createRetainedStream('r/#'))
  assert.deepEqual(
    retained.map((r) => r.topic),
    ['r/1'],
  )
  const outgoing = await all<StoredPacket>(p.outgoingStream(client))
  assert.deepEqual(
    outgoing.map((o) => [o.payload.toString(), o.messageId]),
    [['one', 11]],
  )
  assert.deepEqual(outgoing[0]?.properties, { correlationData: Buffer.from([1, 2]) })
  assert.equal(
    (await p.incomingGetPacket(client, publish('in', '', { messageId: 5 }))).payload.toString(),
    'q2',
  )
  await p.destroy()
  assert.deepEqual(
    (await dump(path)).find(([k]) => k === SESSIONS_FORMAT[0]),
    SESSIONS_FORMAT,
  )
})
