/**
 * A durable FIFO per (queue, partition) for `$queue/` publishes that a cluster node accepted for a
 * partition it does not own (another node owns it, or nobody does yet). The node sends the PUBACK
 * once {@link ForwardBuffer.append} resolves, so the buffer, not the network, is what makes that
 * PUBACK true: an appended publish survives a crash and is handed to the owner in the order it came.
 *
 * It has its own LevelDB (not the queue store's) because its lifecycle differs: it holds messages
 * that belong to no local partition, and it is drained by the forwarder (src/cluster/cluster-queues.ts),
 * not by consumers. It lives under src/storage because it is durable state on LevelDB: it opens,
 * checks its format and group-commits through the kernel (../level/), and its keys are in
 * ./forward-keys.ts.
 *
 * Key layout (every key sorts in FIFO order within its partition, so a range scan reads oldest first):
 *
 * - `queue 0x00 partition:u32be seq:u64be` -> encoded {@link BufferedPublish}. A queue name is UTF-8
 *   and never contains U+0000 ([MQTT-4.7.3-2]), so the 0x00 ends it: queue `a` never shares a prefix
 *   with `a/b` or `ab`. A name is never empty, so these keys start with a byte >= 0x01.
 * - `0x00 0x01` -> format version.
 * - `0x00 0x02 queue 0x00 partition:u32be` -> the partition's highest seq ever assigned, written when
 *   entries are removed, so that a partition drained to empty still never reuses a seq after a restart.
 */
import { writeBatch, type LevelOp } from '../level/batch.js'
import { LevelError } from '../level/errors.js'
import { AfterFailure, GroupCommitter } from '../level/group-committer.js'
import { isU32, MAX_U32 } from '../level/keys.js'
import { openLevel, type LevelDb, type LevelFormat } from '../level/open.js'
import type { BufferedPublish } from './buffered-publish.js'
import { ForwardBufferError, ForwardBufferErrorCodes } from './errors.js'
import {
  decodeEntryKey,
  decodeLastSeq,
  decodeLastSeqKey,
  decodeValue,
  encodeLastSeq,
  encodeValue,
  entriesEnd,
  ENTRIES_START,
  entryKey,
  FORMAT_KEY,
  FORMAT_VERSION,
  LAST_SEQ_RANGE,
  lastSeqKey,
} from './forward-keys.js'

export { ForwardBufferError, ForwardBufferErrorCodes, type ForwardBufferErrorCode } from './errors.js'
export type { BufferedPublish } from './buffered-publish.js'

/** A buffered publish with its place in its partition's FIFO. */
export interface BufferedEntry {
  /** Per (queue, partition), from 1, strictly increasing, never reused (not even after a restart). */
  readonly seq: number
  readonly publish: BufferedPublish
}

/** In-memory counters of one partition; the entries are the contiguous seqs [firstSeq, lastSeq]. */
interface Counters {
  readonly queue: string
  readonly partition: number
  /** Oldest seq not removed. */
  firstSeq: number
  /** Highest seq assigned, written or not. */
  lastSeq: number
  /** Highest seq whose batch has been written; {@link ForwardBuffer.oldest} never reads past it. */
  writtenSeq: number
}

const FORMAT: LevelFormat = { name: 'forward buffer', key: FORMAT_KEY, version: FORMAT_VERSION }

/**
 * A durable FIFO of {@link BufferedPublish}es per (queue, partition), on its own LevelDB.
 *
 * Writes (appends and removes) are group-committed by the kernel's committer: everything asked for
 * during one event-loop turn becomes one LevelDB write batch, and every caller of that turn is
 * resolved when it lands. Batches are written one at a time, in order, so a partition's FIFO order
 * on disk is the order of the calls.
 *
 * A failed batch poisons the buffer ({@link AfterFailure.refuse}): its seqs were assigned but are
 * not on disk, so the counters no longer describe the disk. The batch collected meanwhile and every
 * later write are refused with the same error until {@link close} and {@link open} reload the
 * counters.
 */
export class ForwardBuffer {
  readonly #path: string
  #db: LevelDb | undefined
  #commits: GroupCommitter<LevelOp> | undefined
  #opening: Promise<void> | undefined
  #closing: Promise<void> | undefined
  readonly #counters = new Map<string, Counters>()
  #size = 0

  /** @param path Directory of the buffer's LevelDB database; created (recursively) by {@link open}. */
  constructor(path: string) {
    this.#path = path
  }

  /** Opens (or creates) the database and loads every partition's counters from its keys. */
  open(): Promise<void> {
    if (this.#db !== undefined && this.#closing === undefined) return Promise.resolve()
    this.#opening ??= this.#open().finally(() => {
      this.#opening = undefined
    })
    return this.#opening
  }

  async #open(): Promise<void> {
    await this.#closing
    let db: LevelDb
    try {
      db = await openLevel(this.#path, FORMAT, (opened) => this.#loadCounters(opened))
    } catch (error) {
      throw asBufferError(error, 'loading counters')
    }
    this.#commits = new GroupCommitter<LevelOp>({
      write: (ops, sync) => writeEntries(db, ops, sync),
      afterFailure: AfterFailure.refuse,
    })
    this.#db = db
  }

  /**
   * Reads the first and last key of each partition, jumping from one partition to the next (a seek
   * per partition, not a read of every entry), then the stored highest seqs of drained partitions.
   */
  async #loadCounters(db: LevelDb): Promise<void> {
    this.#counters.clear()
    this.#size = 0
    let after: Buffer | undefined
    for (;;) {
      const range = after === undefined ? { gte: ENTRIES_START, limit: 1 } : { gt: after, limit: 1 }
      const [first] = await db.keys(range).all()
      if (first === undefined) break
      const { queue, partition, seq } = decodeEntryKey(first)
      const end = entriesEnd(queue, partition)
      const [last] = await db.keys({ gte: first, lte: end, reverse: true, limit: 1 }).all()
      const lastSeq = last === undefined ? seq : decodeEntryKey(last).seq
      this.#counters.set(countersKey(queue, partition), {
        queue,
        partition,
        firstSeq: seq,
        lastSeq,
        writtenSeq: lastSeq,
      })
      this.#size += lastSeq - seq + 1
      after = end
    }
    const stored = await db.iterator(LAST_SEQ_RANGE).all()
    for (const [key, value] of stored) {
      const { queue, partition } = decodeLastSeqKey(key)
      const lastSeq = decodeLastSeq(value)
      if (lastSeq === undefined) throw storageFailure('loading counters', new Error('bad last-seq record'))
      const counters = this.#counters.get(countersKey(queue, partition))
      if (counters === undefined) {
        this.#counters.set(countersKey(queue, partition), {
          queue,
          partition,
          firstSeq: lastSeq + 1,
          lastSeq,
          writtenSeq: lastSeq,
        })
      } else if (lastSeq > counters.lastSeq) {
        // Entries above a stored last seq cannot exist (it is written with every remove), but a seq
        // must never be reused: keep the higher one.
        counters.lastSeq = lastSeq
        counters.writtenSeq = lastSeq
      }
    }
  }

  /** Writes what is pending, waits for it, then closes the database. Idempotent. */
  close(): Promise<void> {
    if (this.#closing !== undefined) return this.#closing
    const db = this.#db
    if (db === undefined) return this.#opening?.then(() => this.close()) ?? Promise.resolve()
    // From here on appends and removes are refused; what was asked before is still written.
    this.#closing = (async () => {
      // Nothing new is accepted, so at most the collected batch and the one being written remain.
      await this.#commits?.close()
      this.#db = undefined
      this.#commits = undefined
      try {
        await db.close()
      } catch (error) {
        throw storageFailure('close', error)
      }
    })().finally(() => {
      this.#closing = undefined
    })
    return this.#closing
  }

  /**
   * Appends a publish at the end of its partition's FIFO. Resolves once it is on disk (fsynced if
   * `sync`), so the caller may PUBACK then; appends of one event-loop turn share one write batch.
   */
  append(publish: BufferedPublish, options: { sync: boolean }): Promise<void> {
    let value: Buffer
    let commits: GroupCommitter<LevelOp>
    try {
      commits = this.#writable()
      checkQueue(publish.queue)
      checkPartition(publish.partition)
      // Encoded now, so the entry holds the publish as it was at the call.
      value = encodeValue(publish)
    } catch (error) {
      return Promise.reject(asError(error))
    }
    const counters = this.#countersFor(publish.queue, publish.partition)
    const seq = ++counters.lastSeq
    this.#size++
    const put: LevelOp = { type: 'put', key: entryKey(publish.queue, publish.partition, seq), value }
    return commits.add([put], options.sync, () => {
      if (seq > counters.writtenSeq) counters.writtenSeq = seq
    })
  }

  /** True when the partition holds no entry; appends not yet written count as entries. */
  isEmpty(queue: string, partition: number): boolean {
    const counters = this.#counters.get(countersKey(queue, partition))
    return counters === undefined || counters.lastSeq < counters.firstSeq
  }

  /** The partitions that hold entries, ordered by queue name, then partition. */
  pending(): Array<{ queue: string; partition: number; count: number }> {
    const out: Array<{ queue: string; partition: number; count: number }> = []
    for (const counters of this.#counters.values()) {
      const count = counters.lastSeq - counters.firstSeq + 1
      if (count > 0) out.push({ queue: counters.queue, partition: counters.partition, count })
    }
    return out.sort((a, b) => (a.queue < b.queue ? -1 : a.queue > b.queue ? 1 : a.partition - b.partition))
  }

  /** Entries held, over every partition (appends not yet written included). */
  size(): number {
    return this.#size
  }

  /**
   * Up to `limit` of the partition's oldest entries, oldest first. Only written entries: an append
   * whose batch has not landed yet is not returned, so nothing is forwarded before it is durable.
   */
  async oldest(queue: string, partition: number, limit: number): Promise<BufferedEntry[]> {
    const db = this.#requireDb()
    checkQueue(queue)
    checkPartition(partition)
    const counters = this.#counters.get(countersKey(queue, partition))
    if (counters === undefined || !(limit >= 1)) return []
    const from = counters.firstSeq
    const through = counters.writtenSeq
    if (through < from) return []
    let entries: Array<[Buffer, Buffer]>
    try {
      entries = await db
        .iterator({
          gte: entryKey(queue, partition, from),
          lte: entryKey(queue, partition, through),
          limit: Math.floor(Math.min(limit, through - from + 1)),
        })
        .all()
    } catch (error) {
      throw storageFailure('oldest', error)
    }
    const out: BufferedEntry[] = []
    for (const [key, value] of entries) {
      const seq = decodeEntryKey(key).seq
      // A remove called while this read ran has taken these already.
      if (seq < counters.firstSeq) continue
      out.push({ seq, publish: decodeValue(queue, partition, value) })
    }
    return out
  }

  /**
   * Deletes the partition's entries with seq <= `throughSeq` (the owner has taken them). Not fsynced:
   * a remove lost to a power failure only means the owner gets those publishes again. Written in the
   * same ordered stream as appends, so it can never be overtaken by the append of an entry it removes.
   */
  remove(queue: string, partition: number, throughSeq: number): Promise<void> {
    let commits: GroupCommitter<LevelOp>
    try {
      commits = this.#writable()
      checkQueue(queue)
      checkPartition(partition)
      if (typeof throughSeq !== 'number' || Number.isNaN(throughSeq)) {
        throw new ForwardBufferError(ForwardBufferErrorCodes.invalidInput, 'throughSeq must be a number')
      }
    } catch (error) {
      return Promise.reject(asError(error))
    }
    const counters = this.#counters.get(countersKey(queue, partition))
    if (counters === undefined) return Promise.resolve()
    const through = Math.min(Math.floor(throughSeq), counters.lastSeq)
    if (through < counters.firstSeq) return Promise.resolve()
    const ops: LevelOp[] = []
    for (let seq = counters.firstSeq; seq <= through; seq++) {
      ops.push({ type: 'del', key: entryKey(queue, partition, seq) })
    }
    // The highest seq so far, so that a partition emptied here continues above it after a restart.
    ops.push({ type: 'put', key: lastSeqKey(queue, partition), value: encodeLastSeq(counters.lastSeq) })
    this.#size -= through - counters.firstSeq + 1
    counters.firstSeq = through + 1
    return commits.add(ops, false)
  }

  #countersFor(queue: string, partition: number): Counters {
    const key = countersKey(queue, partition)
    let counters = this.#counters.get(key)
    if (counters === undefined) {
      counters = { queue, partition, firstSeq: 1, lastSeq: 0, writtenSeq: 0 }
      this.#counters.set(key, counters)
    }
    return counters
  }

  #writable(): GroupCommitter<LevelOp> {
    if (this.#closing !== undefined) {
      throw new ForwardBufferError(ForwardBufferErrorCodes.notOpen, `forward buffer ${this.#path} is closing`)
    }
    this.#requireDb()
    const commits = this.#commits as GroupCommitter<LevelOp>
    if (commits.failure !== undefined) throw commits.failure
    return commits
  }

  #requireDb(): LevelDb {
    if (this.#db === undefined) {
      throw new ForwardBufferError(
        ForwardBufferErrorCodes.notOpen,
        `forward buffer ${this.#path} is not open`,
      )
    }
    return this.#db
  }
}

/** One batch of the committer; a failure becomes the buffer's `STORAGE_FAILURE`. */
async function writeEntries(db: LevelDb, ops: LevelOp[], sync: boolean): Promise<void> {
  try {
    await writeBatch(db, ops, sync)
  } catch (error) {
    throw asBufferError(error, 'write batch')
  }
}

function asError(error: unknown): Error {
  return error instanceof Error ? error : new Error(String(error))
}

function storageFailure(what: string, cause: unknown): ForwardBufferError {
  if (cause instanceof ForwardBufferError) return cause
  const detail = cause instanceof Error ? cause.message : String(cause)
  return new ForwardBufferError(ForwardBufferErrorCodes.storageFailure, `LevelDB ${what} failed: ${detail}`, {
    cause,
  })
}

/** A kernel error keeps its message (and its cause, if it has one); anything else is `what` failing. */
function asBufferError(error: unknown, what: string): ForwardBufferError {
  if (error instanceof LevelError) {
    return new ForwardBufferError(
      ForwardBufferErrorCodes.storageFailure,
      error.message,
      error.cause === undefined ? undefined : { cause: error.cause },
    )
  }
  return storageFailure(what, error)
}

function checkQueue(queue: string): void {
  if (typeof queue !== 'string' || queue.length === 0 || queue.includes('\u0000')) {
    throw new ForwardBufferError(
      ForwardBufferErrorCodes.invalidInput,
      `queue name ${JSON.stringify(queue)} must be a non-empty string without U+0000`,
    )
  }
}

function checkPartition(partition: number): void {
  if (!isU32(partition)) {
    throw new ForwardBufferError(
      ForwardBufferErrorCodes.invalidInput,
      `partition must be an integer in [0, ${MAX_U32}], got ${String(partition)}`,
    )
  }
}

function countersKey(queue: string, partition: number): string {
  return `${queue}\u0000${partition}`
}
