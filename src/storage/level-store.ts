/**
 * The durable {@link QueueStore}: LevelDB through classic-level. Key layout and encodings are in
 * ./level-codec.ts and docs/storage.md.
 */
import { mkdir } from 'node:fs/promises'
import { ClassicLevel } from 'classic-level'
import { QueueError, QueueErrorCodes } from '../queue/errors.js'
import type { QueueStore, StoreOp, StoredState } from '../queue/store.js'
import type { QueueMessage } from '../queue/types.js'
import {
  decodeGroupRecord,
  decodeQueueLayout,
  encodeQueueLayout,
  decodeGroupState,
  encodeGroupRecord,
  groupRecordKey,
  decodeMembershipKey,
  decodeMessageValue,
  decodePartitionMeta,
  encodeGroupState,
  encodeMessageValue,
  encodePartitionMeta,
  FORMAT_KEY,
  FORMAT_VERSION,
  groupKey,
  membershipKey,
  messageKey,
  messageRange,
  partitionKey,
  prefixRange,
  queuePrefix,
  decodeQueueSettings,
  encodeQueueSettings,
  RecordKinds,
  seqOfMessageKey,
} from './level-codec.js'
import { checkName, checkOp, checkPartition, invalidInput, notOpen, readBounds } from './validate.js'

type Db = ClassicLevel<Buffer, Buffer>
type LevelOp = { type: 'put'; key: Buffer; value: Buffer } | { type: 'del'; key: Buffer }

/** A checked, encoded batch; `deleteQueue` ops become key scans when the batch runs. */
interface PreparedBatch {
  /** A `string` entry is a `deleteQueue` of that queue, expanded in {@link LevelQueueStore.write}. */
  readonly ops: Array<LevelOp | string>
  /** Queue of each entry of `ops` (to find earlier puts of the same batch that a deleteQueue removes). */
  readonly queues: string[]
  readonly deletesQueues: boolean
}

const EMPTY = Buffer.alloc(0)

function storageFailure(what: string, cause: unknown): QueueError {
  const detail = cause instanceof Error ? cause.message : String(cause)
  return new QueueError(QueueErrorCodes.storageFailure, `LevelDB ${what} failed: ${detail}`, { cause })
}

/**
 * {@link QueueStore} on LevelDB. Writes are applied one batch at a time in call order (classic-level
 * runs batches on the libuv thread pool, where two in-flight batches could otherwise land in either
 * order); reads run concurrently and see every write that has resolved.
 */
export class LevelQueueStore implements QueueStore {
  readonly #location: string
  #db: Db | undefined
  #opening: Promise<void> | undefined
  #closing: Promise<void> | undefined
  /** Settles when the last queued write has settled; orders batches. */
  #tail: Promise<void> = Promise.resolve()

  /** @param location Directory of the LevelDB database; created (recursively) by {@link open}. */
  constructor(location: string) {
    this.#location = location
  }

  get location(): string {
    return this.#location
  }

  open(): Promise<void> {
    if (this.#db !== undefined) return Promise.resolve()
    this.#opening ??= this.#open().finally(() => {
      this.#opening = undefined
    })
    return this.#opening
  }

  async #open(): Promise<void> {
    await this.#closing
    try {
      await mkdir(this.#location, { recursive: true })
    } catch (err) {
      throw storageFailure(`creating ${this.#location}`, err)
    }
    const db: Db = new ClassicLevel<Buffer, Buffer>(this.#location, {
      keyEncoding: 'buffer',
      valueEncoding: 'buffer',
    })
    try {
      await db.open()
    } catch (err) {
      throw storageFailure(`open of ${this.#location}`, err)
    }
    try {
      await checkFormat(db)
    } catch (err) {
      await db.close()
      throw err instanceof QueueError ? err : storageFailure('format check', err)
    }
    this.#db = db
    this.#tail = Promise.resolve()
  }

  /** Waits for queued writes, then closes the database. Idempotent. */
  close(): Promise<void> {
    const db = this.#db
    if (db === undefined) return this.#closing ?? this.#opening?.then(() => this.close()) ?? Promise.resolve()
    this.#db = undefined
    const tail = this.#tail
    this.#closing = (async () => {
      await tail // queued writes still run; their errors reach their own callers
      try {
        await db.close()
      } catch (err) {
        throw storageFailure('close', err)
      }
    })().finally(() => {
      this.#closing = undefined
    })
    return this.#closing
  }

  async write(ops: readonly StoreOp[], options: { readonly sync: boolean }): Promise<void> {
    const db = this.#requireDb()
    // Check and encode now, so the batch holds the data as it was at the call.
    const batch = prepare(ops)
    const run = this.#tail.then(() => applyBatch(db, batch, options.sync))
    // The chain only orders writes: the caller receives this write's outcome through `run`.
    this.#tail = run.then(
      () => undefined,
      () => undefined,
    )
    return run
  }

  async readMessages(
    queue: string,
    partition: number,
    fromSeq: number,
    limit: number,
  ): Promise<QueueMessage[]> {
    const db = this.#requireDb()
    checkName('queue', queue)
    checkPartition(partition)
    const bounds = readBounds(fromSeq, limit)
    if (bounds === undefined) return []
    const range = messageRange(queue, partition, bounds.start)
    let entries: Array<[Buffer, Buffer]>
    try {
      entries = await db.iterator({ ...range, limit: bounds.limit }).all()
    } catch (err) {
      throw storageFailure('readMessages', err)
    }
    return entries.map(([key, value]) => decodeMessageValue(queue, partition, seqOfMessageKey(key), value))
  }

  async getMessage(queue: string, partition: number, seq: number): Promise<QueueMessage | undefined> {
    const db = this.#requireDb()
    checkName('queue', queue)
    checkPartition(partition)
    if (!Number.isSafeInteger(seq) || seq < 0) return undefined
    let value: Buffer | undefined
    try {
      value = await db.get(messageKey(queue, partition, seq))
    } catch (err) {
      throw storageFailure('getMessage', err)
    }
    return value === undefined ? undefined : decodeMessageValue(queue, partition, seq, value)
  }

  async loadState(): Promise<StoredState> {
    const db = this.#requireDb()
    const kindRange = (kind: number) => prefixRange(Buffer.from([kind]))
    try {
      const [metas, groups, records, layouts, memberships, settings] = await Promise.all([
        db.iterator(kindRange(RecordKinds.partition)).all(),
        db.iterator(kindRange(RecordKinds.group)).all(),
        db.iterator(kindRange(RecordKinds.groupRecord)).all(),
        db.iterator(kindRange(RecordKinds.layout)).all(),
        db.keys(kindRange(RecordKinds.membership)).all(),
        db.iterator(kindRange(RecordKinds.settings)).all(),
      ])
      return {
        partitions: metas.map(([key, value]) => decodePartitionMeta(key, value)),
        groups: groups.map(([key, value]) => decodeGroupState(key, value)),
        groupRecords: records.map(([key, value]) => decodeGroupRecord(key, value)),
        layouts: layouts.map(([key, value]) => decodeQueueLayout(key, value)),
        memberships: memberships.map(decodeMembershipKey),
        queueSettings: settings.map(([key, value]) => decodeQueueSettings(key, value)),
      }
    } catch (err) {
      throw storageFailure('loadState', err)
    }
  }

  #requireDb(): Db {
    if (this.#db === undefined) throw notOpen()
    return this.#db
  }
}

async function checkFormat(db: Db): Promise<void> {
  const stored = await db.get(FORMAT_KEY)
  if (stored === undefined) {
    await db.put(FORMAT_KEY, Buffer.from([FORMAT_VERSION]), { sync: true })
  } else if (stored.length !== 1 || stored[0] !== FORMAT_VERSION) {
    throw new QueueError(
      QueueErrorCodes.storageFailure,
      `unsupported storage format ${stored.toString('hex')} in ${db.location} (expected ${FORMAT_VERSION})`,
    )
  }
}

function prepare(ops: readonly StoreOp[]): PreparedBatch {
  const out: Array<LevelOp | string> = new Array<LevelOp | string>(ops.length)
  const queues: string[] = new Array<string>(ops.length)
  let deletesQueues = false
  for (let i = 0; i < ops.length; i++) {
    const op = ops[i] as StoreOp
    checkOp(op)
    switch (op.type) {
      case 'putMessage': {
        const m = op.message
        out[i] = { type: 'put', key: messageKey(m.queue, m.partition, m.seq), value: encodeMessageValue(m) }
        queues[i] = m.queue
        break
      }
      case 'deleteMessage':
        out[i] = { type: 'del', key: messageKey(op.queue, op.partition, op.seq) }
        queues[i] = op.queue
        break
      case 'putPartitionMeta':
        out[i] = {
          type: 'put',
          key: partitionKey(op.meta.queue, op.meta.partition),
          value: encodePartitionMeta(op.meta),
        }
        queues[i] = op.meta.queue
        break
      case 'putGroupState': {
        const s = op.state
        out[i] = { type: 'put', key: groupKey(s.queue, s.group, s.partition), value: encodeGroupState(s) }
        queues[i] = s.queue
        break
      }
      case 'deleteGroupState':
        out[i] = { type: 'del', key: groupKey(op.queue, op.group, op.partition) }
        queues[i] = op.queue
        break
      case 'putQueueSettings':
        out[i] = {
          type: 'put',
          key: queuePrefix(RecordKinds.settings, op.record.queue),
          value: encodeQueueSettings(op.record),
        }
        queues[i] = op.record.queue
        break
      case 'putGroupRecord':
        out[i] = {
          type: 'put',
          key: groupRecordKey(op.record.queue, op.record.group),
          value: encodeGroupRecord(op.record),
        }
        queues[i] = op.record.queue
        break
      case 'deleteGroupRecord':
        out[i] = { type: 'del', key: groupRecordKey(op.queue, op.group) }
        queues[i] = op.queue
        break
      case 'putQueueLayout':
        out[i] = {
          type: 'put',
          key: queuePrefix(RecordKinds.layout, op.layout.queue),
          value: encodeQueueLayout(op.layout),
        }
        queues[i] = op.layout.queue
        break
      case 'putMembership':
        out[i] = { type: 'put', key: membershipKey(op.membership), value: EMPTY }
        queues[i] = op.membership.queue
        break
      case 'deleteMembership':
        out[i] = { type: 'del', key: membershipKey(op.membership) }
        queues[i] = op.membership.queue
        break
      case 'deleteQueue':
        out[i] = op.queue
        queues[i] = op.queue
        deletesQueues = true
        break
      default:
        throw invalidInput('unknown op type')
    }
  }
  return { ops: out, queues, deletesQueues }
}

/**
 * Runs one prepared batch as ONE LevelDB write batch (all-or-nothing, in order). The chained form is
 * used because it copies each op into the native WriteBatch as it goes; with classic-level 3 it costs
 * about a third of `db.batch(array)` per op (see bench/store-bench.ts).
 */
async function applyBatch(db: Db, prepared: PreparedBatch, sync: boolean): Promise<void> {
  const ops = prepared.deletesQueues ? await expandQueueDeletes(db, prepared) : (prepared.ops as LevelOp[])
  if (ops.length === 0) return
  const batch = db.batch()
  try {
    for (const op of ops) {
      if (op.type === 'put') batch.put(op.key, op.value)
      else batch.del(op.key)
    }
    await batch.write({ sync })
  } catch (err) {
    // Nothing was written; release the native batch (idempotent if write() already closed it).
    await batch.close()
    throw storageFailure('write batch', err)
  }
}

/**
 * Replaces each `deleteQueue` with dels of every key the queue has on disk plus every key this batch put
 * for it earlier. Runs inside the write chain, so no other write can slip between scan and batch.
 */
async function expandQueueDeletes(db: Db, batch: PreparedBatch): Promise<LevelOp[]> {
  const out: LevelOp[] = []
  for (let i = 0; i < batch.ops.length; i++) {
    const op = batch.ops[i] as LevelOp | string
    if (typeof op !== 'string') {
      out.push(op)
      continue
    }
    for (let j = 0; j < i; j++) {
      const earlier = batch.ops[j] as LevelOp | string
      // Memberships are not part of the queue's data (see the port): deleteQueue leaves them.
      const queueData = typeof earlier !== 'string' && earlier.key[0] !== RecordKinds.membership
      if (batch.queues[j] === op && queueData && earlier.type === 'put') {
        out.push({ type: 'del', key: earlier.key })
      }
    }
    out.push({ type: 'del', key: queuePrefix(RecordKinds.settings, op) })
    out.push({ type: 'del', key: queuePrefix(RecordKinds.layout, op) })
    for (const kind of [
      RecordKinds.message,
      RecordKinds.partition,
      RecordKinds.group,
      RecordKinds.groupRecord,
    ]) {
      let keys: Buffer[]
      try {
        keys = await db.keys(prefixRange(queuePrefix(kind, op))).all()
      } catch (err) {
        throw storageFailure('deleteQueue scan', err)
      }
      for (const key of keys) out.push({ type: 'del', key })
    }
  }
  return out
}
