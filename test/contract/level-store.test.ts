import assert from 'node:assert/strict'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, test, type TestContext } from 'node:test'
import { QueueErrorCodes } from '../../src/queue/errors.js'
import { LevelQueueStore } from '../../src/storage/level-store.js'
import { queueStoreContract } from './queue-store.contract.js'

/** A fresh temp dir, removed after the test (after the stores in it are closed). */
async function tempDir(t: TestContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'spool-level-'))
  t.after(() => rm(dir, { recursive: true, force: true }))
  return dir
}

queueStoreContract('LevelQueueStore', async (t) => {
  const dir = await tempDir(t)
  const store = new LevelQueueStore(join(dir, 'db'))
  t.after(() => store.close())
  return store
})

void describe('LevelQueueStore', () => {
  void test('open creates missing parent directories', async (t) => {
    const dir = await tempDir(t)
    const store = new LevelQueueStore(join(dir, 'a', 'b', 'c'))
    t.after(() => store.close())
    await store.open()
    await store.open()
    assert.deepEqual(await store.loadState(), {
      partitions: [],
      groups: [],
      groupRecords: [],
      layouts: [],
      memberships: [],
      queueSettings: [],
    })
  })

  void test('a new instance on the same directory loads what the previous one wrote', async (t) => {
    const dir = await tempDir(t)
    const first = new LevelQueueStore(dir)
    await first.open()
    const payload = new Uint8Array([1, 2, 3])
    await first.write(
      [
        {
          type: 'putMessage',
          message: {
            id: '4-9',
            queue: 'jobs/ü',
            partition: 4,
            seq: 9,
            payload,
            properties: { userProperties: [['k', 'v']] },
            enqueuedAtMs: 5,
          },
        },
        { type: 'putPartitionMeta', meta: { queue: 'jobs/ü', partition: 4, lastSeq: 9, count: 1 } },
        {
          type: 'putGroupState',
          state: {
            queue: 'jobs/ü',
            group: 'g',
            partition: 4,
            ackFloor: 8,
            settledAbove: [],
            attempts: [[9, 2]],
          },
        },
        { type: 'putMembership', membership: { clientId: 'c1', queue: 'jobs/ü', group: 'g' } },
      ],
      { sync: true },
    )
    await first.close()

    const second = new LevelQueueStore(dir)
    t.after(() => second.close())
    await second.open()
    assert.deepEqual(await second.loadState(), {
      partitions: [{ queue: 'jobs/ü', partition: 4, lastSeq: 9, count: 1 }],
      groups: [
        { queue: 'jobs/ü', group: 'g', partition: 4, ackFloor: 8, settledAbove: [], attempts: [[9, 2]] },
      ],
      groupRecords: [],
      layouts: [],
      memberships: [{ clientId: 'c1', queue: 'jobs/ü', group: 'g' }],
      queueSettings: [],
    })
    const [read] = await second.readMessages('jobs/ü', 4, 0, 10)
    assert.equal(read?.id, '4-9')
    assert.deepEqual(read.payload, payload)
    assert.deepEqual(read.properties, { userProperties: [['k', 'v']] })
  })

  void test('LevelDB errors surface as STORAGE_FAILURE rejections', async (t) => {
    const dir = await tempDir(t)
    const first = new LevelQueueStore(dir)
    t.after(() => first.close())
    await first.open()
    // LevelDB holds a lock on the directory: a second open must fail loudly, not hang or succeed.
    const second = new LevelQueueStore(dir)
    await assert.rejects(second.open(), (err: unknown) => {
      assert.equal((err as { code?: unknown }).code, QueueErrorCodes.storageFailure)
      assert.ok((err as Error).cause instanceof Error)
      return true
    })
    // A path that is a file cannot become a database directory.
    const file = join(dir, 'not-a-dir')
    await writeFile(file, 'x')
    await assert.rejects(new LevelQueueStore(join(file, 'db')).open(), {
      code: QueueErrorCodes.storageFailure,
    })
  })
})
