/**
 * The durable {@link QueueStore}: LevelDB through classic-level. Key layout and encodings are in
 * ./level-codec.ts and docs/storage.md.
 */
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
import { writeBatch, type LevelOp } from './level/batch.js'
import { LevelError } from './level/errors.js'
import { AfterFailure, GroupCommitter } from './level/group-committer.js'
import { TERMINATOR } from './level/keys.js'
import { openLevel, type LevelDb, type LevelFormat } from './level/open.js'
import { checkName, checkOp, checkPartition, invalidInput, notOpen, readBounds } from './validate.js'

/** A checked, encoded op; a `string` is a `deleteQueue` of that queue, expanded when its batch runs. */
type PreparedOp = LevelOp | string

const EMPTY = Buffer.alloc(0)

const FORMAT: LevelFormat = { name: 'storage', key: FORMAT_KEY, version: FORMAT_VERSION }

function storageFailure(what: string, cause: unknown): QueueError {
  const detail = cause instanceof Error ? cause.message : String(cause)
  return new QueueError(QueueErrorCodes.storageFailure, `LevelDB ${what} failed: ${detail}`, { cause })
}

/** The store's errors are QueueErrors: a kernel error keeps its message, and its cause if it has one. */
function asQueueError(error: unknown, what: string): QueueError {
  if (error instanceof QueueError) return error
  if (error instanceof LevelError) {
    return new QueueError(
      QueueErrorCodes.storageFailure,
      error.message,
      error.cause === undefined ? undefined : { cause: error.cause },
    )
  }
  return storageFailure(what, error)
}

/** The open handle and its committer; replaced as a whole by each open. */
interface Opened {
  readonly db: LevelDb
  readonly commits: GroupCommitter<PreparedOp>
}

/**
 * {@link QueueStore} on LevelDB. Writes go through the kernel's group committer
 * (./level/group-committer.ts): the writes of one event-loop turn become one LevelDB batch, and
 * batches are applied one at a time in call order (classic-level runs batches on the libuv thread
 * pool, where two in-flight batches could otherwise land in either order). A failed batch rejects
 * the writes in it; later batches still run. Reads run concurrently and see every write that has
 * resolved.
 */
export class LevelQueueStore implements QueueStore {
  readonly #location: string
  #opened: Opened | undefined
  #opening: Promise<void> | undefined
  #closing: Promise<void> | undefined

  /** @param location Directory of the LevelDB database; created (recursively) by {@link open}. */
  constructor(location: string) {
    this.#location = location
  }

  get location(): string {
    return this.#location
  }

  open(): Promise<void> {
    if (this.#opened !== undefined) return Promise.resolve()
    this.#opening ??= this.#open().finally(() => {
      this.#opening = undefined
    })
    return this.#opening
  }

  async #open(): Promise<void> {
    await this.#closing
    let db: LevelDb
    try {
      db = await openLevel(this.#location, FORMAT)
    } catch (error) {
      throw asQueueError(error, `open of ${this.#location}`)
    }
    const commits = new GroupCommitter<PreparedOp>({
      write: (ops, sync) => applyBatch(db, ops, sync),
      afterFailure: AfterFailure.continue,
    })
    this.#opened = { db, commits }
  }

  /** Waits for queued writes, then closes the database. Idempotent. */
  close(): Promise<void> {
    const opened = this.#opened
    if (opened === undefined) {
      return this.#closing ?? this.#opening?.then(() => this.close()) ?? Promise.resolve()
    }
    this.#opened = undefined
    this.#closing = (async () => {
      await opened.commits.close() // queued writes still run; their errors reach their own callers
      try {
        await opened.db.close()
      } catch (err) {
        throw storageFailure('close', err)
      }
    })().finally(() => {
      this.#closing = undefined
    })
    return this.#closing
  }

  async write(ops: readonly StoreOp[], options: { readonly sync: boolean }): Promise<void> {
    const { commits } = this.#requireOpen()
    // Check and encode now, so the batch holds the data as it was at the call.
    const prepared = prepare(ops)
    return commits.add(prepared, options.sync)
  }

  async readMessages(
    queue: string,
    partition: number,
    fromSeq: number,
    limit: number,
  ): Promise<QueueMessage[]> {
    const { db } = this.#requireOpen()
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
    const { db } = this.#requireOpen()
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
    const { db } = this.#requireOpen()
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

  #requireOpen(): Opened {
    if (this.#opened === undefined) throw notOpen()
    return this.#opened
  }
}

function prepare(ops: readonly StoreOp[]): PreparedOp[] {
  const out: PreparedOp[] = new Array<PreparedOp>(ops.length)
  for (let i = 0; i < ops.length; i++) {
    const op = ops[i] as StoreOp
    checkOp(op)
    switch (op.type) {
      case 'putMessage': {
        const m = op.message
        out[i] = { type: 'put', key: messageKey(m.queue, m.partition, m.seq), value: encodeMessageValue(m) }
        break
      }
      case 'deleteMessage':
        out[i] = { type: 'del', key: messageKey(op.queue, op.partition, op.seq) }
        break
      case 'putPartitionMeta':
        out[i] = {
          type: 'put',
          key: partitionKey(op.meta.queue, op.meta.partition),
          value: encodePartitionMeta(op.meta),
        }
        break
      case 'putGroupState': {
        const s = op.state
        out[i] = { type: 'put', key: groupKey(s.queue, s.group, s.partition), value: encodeGroupState(s) }
        break
      }
      case 'deleteGroupState':
        out[i] = { type: 'del', key: groupKey(op.queue, op.group, op.partition) }
        break
      case 'putQueueSettings':
        out[i] = {
          type: 'put',
          key: queuePrefix(RecordKinds.settings, op.record.queue),
          value: encodeQueueSettings(op.record),
        }
        break
      case 'putGroupRecord':
        out[i] = {
          type: 'put',
          key: groupRecordKey(op.record.queue, op.record.group),
          value: encodeGroupRecord(op.record),
        }
        break
      case 'deleteGroupRecord':
        out[i] = { type: 'del', key: groupRecordKey(op.queue, op.group) }
        break
      case 'putQueueLayout':
        out[i] = {
          type: 'put',
          key: queuePrefix(RecordKinds.layout, op.layout.queue),
          value: encodeQueueLayout(op.layout),
        }
        break
      case 'putMembership':
        out[i] = { type: 'put', key: membershipKey(op.membership), value: EMPTY }
        break
      case 'deleteMembership':
        out[i] = { type: 'del', key: membershipKey(op.membership) }
        break
      case 'deleteQueue':
        out[i] = op.queue
        break
      default:
        throw invalidInput('unknown op type')
    }
  }
  return out
}

/**
 * Writes the batch of one turn as ONE LevelDB write batch (all-or-nothing, in order), after
 * expanding its `deleteQueue`s. Runs inside the committer, one batch at a time.
 */
async function applyBatch(db: LevelDb, prepared: PreparedOp[], sync: boolean): Promise<void> {
  try {
    const ops = prepared.some((op) => typeof op === 'string')
      ? await expandQueueDeletes(db, prepared)
      : (prepared as LevelOp[])
    await writeBatch(db, ops, sync)
  } catch (error) {
    throw asQueueError(error, 'write batch')
  }
}

/** True if `key` is a record of `queue` (`kind queue 0x00 …`); memberships (`c clientId 0x00 …`) never are. */
function isQueueRecord(key: Buffer, queue: Buffer): boolean {
  return (
    key[0] !== RecordKinds.membership &&
    key.length > queue.length + 1 &&
    key[queue.length + 1] === TERMINATOR &&
    key.compare(queue, 0, queue.length, 1, queue.length + 1) === 0
  )
}

/**
 * Replaces each `deleteQueue` with dels of every key the queue has on disk plus every key this batch
 * put for it earlier (the batch holds the writes of a whole turn, so that includes earlier writes of
 * that turn). Runs inside the committer, so no other write can slip between scan and batch.
 */
async function expandQueueDeletes(db: LevelDb, batch: readonly PreparedOp[]): Promise<LevelOp[]> {
  const out: LevelOp[] = []
  for (let i = 0; i < batch.length; i++) {
    const op = batch[i] as PreparedOp
    if (typeof op !== 'string') {
      out.push(op)
      continue
    }
    const queue = Buffer.from(op, 'utf8')
    for (let j = 0; j < i; j++) {
      const earlier = batch[j] as PreparedOp
      // Memberships are not part of the queue's data (see the port): deleteQueue leaves them.
      if (typeof earlier !== 'string' && earlier.type === 'put' && isQueueRecord(earlier.key, queue)) {
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
