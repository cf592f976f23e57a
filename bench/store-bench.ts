/**
 * A small, bounded benchmark of LevelQueueStore (not part of the tests):
 *   npx tsc -p . && node dist/bench/store-bench.js [messagesPerRun]
 * Each run uses a fresh temp directory that is removed afterwards.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { StoreOp } from '../src/queue/store.js'
import type { QueueMessage } from '../src/queue/types.js'
import { LevelQueueStore } from '../src/storage/level-store.js'

const BATCH = 100
const PARTITIONS = 10
const QUEUE = 'bench/tasks'
const payload = new Uint8Array(256).fill(0x61)

function message(partition: number, seq: number): QueueMessage {
  return {
    id: `${partition}-${seq}`,
    queue: QUEUE,
    partition,
    seq,
    payload,
    properties: { contentType: 'application/json', userProperties: [['trace-id', `t-${seq}`]] },
    enqueuedAtMs: Date.now(),
  }
}

async function withStore<T>(run: (store: LevelQueueStore) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), 'spool-bench-'))
  const store = new LevelQueueStore(dir)
  try {
    await store.open()
    return await run(store)
  } finally {
    await store.close()
    await rm(dir, { recursive: true, force: true })
  }
}

function report(name: string, messages: number, startNs: bigint): void {
  const seconds = Number(process.hrtime.bigint() - startNs) / 1e9
  const rate = Math.round(messages / seconds)
  const usPerMsg = ((seconds * 1e6) / messages).toFixed(2)
  console.log(`${name.padEnd(44)} ${String(rate).padStart(9)} msgs/s  ${usPerMsg.padStart(7)} us/msg`)
}

/** Batches of BATCH putMessage + the partition metas they touch: the enqueue group commit. */
async function enqueue(total: number, sync: boolean): Promise<void> {
  await withStore(async (store) => {
    const lastSeq = new Array<number>(PARTITIONS).fill(0)
    const start = process.hrtime.bigint()
    for (let done = 0; done < total; done += BATCH) {
      const ops: StoreOp[] = []
      for (let i = 0; i < BATCH; i++) {
        const partition = (done + i) % PARTITIONS
        const seq = (lastSeq[partition] ?? 0) + 1
        lastSeq[partition] = seq
        ops.push({ type: 'putMessage', message: message(partition, seq) })
      }
      for (let p = 0; p < PARTITIONS; p++) {
        const seq = lastSeq[p] ?? 0
        ops.push({ type: 'putPartitionMeta', meta: { queue: QUEUE, partition: p, lastSeq: seq, count: seq } })
      }
      await store.write(ops, { sync })
    }
    report(`enqueue, batches of ${BATCH}, sync=${String(sync)}`, total, start)
  })
}

/**
 * Enqueue a batch, read it back, then ack it (delete messages, group state, metas): the full life of a
 * message in storage, one partition, group-committed per BATCH.
 */
async function enqueueAckCycles(total: number, sync: boolean): Promise<void> {
  await withStore(async (store) => {
    let seq = 0
    const start = process.hrtime.bigint()
    for (let done = 0; done < total; done += BATCH) {
      const first = seq + 1
      const put: StoreOp[] = []
      for (let i = 0; i < BATCH; i++) put.push({ type: 'putMessage', message: message(0, ++seq) })
      put.push({ type: 'putPartitionMeta', meta: { queue: QUEUE, partition: 0, lastSeq: seq, count: BATCH } })
      await store.write(put, { sync })
      const read = await store.readMessages(QUEUE, 0, first, BATCH)
      if (read.length !== BATCH) throw new Error(`read ${read.length} of ${BATCH}`)
      const ack: StoreOp[] = read.map((m) => ({
        type: 'deleteMessage',
        queue: QUEUE,
        partition: 0,
        seq: m.seq,
      }))
      ack.push(
        {
          type: 'putGroupState',
          state: { queue: QUEUE, group: 'g', partition: 0, ackFloor: seq, settledAbove: [], attempts: [] },
        },
        { type: 'putPartitionMeta', meta: { queue: QUEUE, partition: 0, lastSeq: seq, count: 0 } },
      )
      await store.write(ack, { sync })
    }
    report(`enqueue+read+ack cycles of ${BATCH}, sync=${String(sync)}`, total, start)
  })
}

const total = Number(process.argv[2] ?? 100_000)
const syncTotal = Math.min(total, 20_000) // fsync-bound: keep the run short
console.log(`LevelQueueStore, ${payload.byteLength}-byte payloads, node ${process.version}`)
await enqueue(total, false)
await enqueue(syncTotal, true)
await enqueueAckCycles(total, false)
await enqueueAckCycles(syncTotal, true)
