/**
 * A durable FIFO per (queue, partition) for `$queue/` publishes that a cluster node accepted for a
 * partition it does not own (another node owns it, or nobody does yet). The node sends the PUBACK
 * once {@link ForwardBuffer.append} resolves, so the buffer, not the network, is what makes that
 * PUBACK true: an appended publish survives a crash and is handed to the owner in the order it came.
 *
 * It has its own classic-level database (not the queue store's) because its lifecycle differs: it
 * holds messages that belong to no local partition, and it is drained by the forwarder, not by
 * consumers.
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
import { mkdir } from 'node:fs/promises'
import { ClassicLevel } from 'classic-level'
import type { MessageProperties } from '../queue/types.js'
import { decodeMessageValue, encodeMessageValue } from '../storage/level-codec.js'

/** A `$queue/` publish kept until the owner of its partition has taken it. */
export interface BufferedPublish {
  readonly queue: string
  readonly partition: number
  readonly payload: Uint8Array
  readonly properties: MessageProperties
  /** When this node accepted it; the owner keeps it as the enqueue time. */
  readonly acceptedAtMs: number
  /** The publisher's Message Expiry Interval, counted from {@link acceptedAtMs}. */
  readonly messageExpirySeconds?: number
}

/** A buffered publish with its place in its partition's FIFO. */
export interface BufferedEntry {
  /** Per (queue, partition), from 1, strictly increasing, never reused (not even after a restart). */
  readonly seq: number
  readonly publish: BufferedPublish
}

export const ForwardBufferErrorCodes = {
  /** Not opened yet, or closed. */
  notOpen: 'NOT_OPEN',
  invalidInput: 'INVALID_INPUT',
  /** LevelDB failed; after a failed write the buffer refuses writes until it is reopened. */
  storageFailure: 'STORAGE_FAILURE',
} as const
export type ForwardBufferErrorCode = (typeof ForwardBufferErrorCodes)[keyof typeof ForwardBufferErrorCodes]

export class ForwardBufferError extends Error {
  override readonly name = 'ForwardBufferError'
  constructor(
    readonly code: ForwardBufferErrorCode,
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options)
  }
}

type Db = ClassicLevel<Buffer, Buffer>
type LevelOp = { type: 'put'; key: Buffer; value: Buffer } | { type: 'del'; key: Buffer }

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

const FORMAT_VERSION = 1
const SEP = 0x00
const TWO_32 = 0x1_0000_0000
const MAX_PARTITION = 0xffff_ffff
const META = 0x00
const META_FORMAT = 0x01
const META_LAST_SEQ = 0x02
const FORMAT_KEY = Buffer.from([META, META_FORMAT])
/** Every entry key is >= this (a queue name is non-empty and has no 0x00 byte). */
const ENTRIES_START = Buffer.from([0x01])

/**
 * A durable FIFO of {@link BufferedPublish}es per (queue, partition), on its own LevelDB.
 *
 * Writes (appends and removes) are group-committed: everything asked for during one event-loop turn
 * becomes one LevelDB write batch, written on `setImmediate`, and every caller of that turn is
 * resolved when it lands. Batches are written one at a time, in order, so a partition's FIFO order
 * on disk is the order of the calls.
 */
export class ForwardBuffer {
  readonly #path: string
  #db: Db | undefined
  #opening: Promise<void> | undefined
  #closing: Promise<void> | undefined
  readonly #counters = new Map<string, Counters>()
  #size = 0

  // Group commit state: the batch being collected for the next flush.
  #ops: LevelOp[] = []
  #appended: Array<{ counters: Counters; seq: number }> = []
  #waiters: Array<{ resolve: () => void; reject: (error: unknown) => void }> = []
  #sync = false
  #scheduled = false
  /** The batch being written; at most one at a time, so batches land in order. */
  #writing: Promise<void> | undefined
  /**
   * Set when a batch failed: its seqs were assigned but are not on disk, so the counters no longer
   * describe the disk. Writes are refused until {@link close} and {@link open} reload the counters.
   */
  #failed: ForwardBufferError | undefined

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
    try {
      await mkdir(this.#path, { recursive: true })
    } catch (error) {
      throw storageFailure(`creating ${this.#path}`, error)
    }
    const db: Db = new ClassicLevel<Buffer, Buffer>(this.#path, {
      keyEncoding: 'buffer',
      valueEncoding: 'buffer',
    })
    try {
      await db.open()
    } catch (error) {
      throw storageFailure(`open of ${this.#path}`, error)
    }
    try {
      await checkFormat(db)
      await this.#loadCounters(db)
    } catch (error) {
      await db.close()
      throw error instanceof ForwardBufferError ? error : storageFailure('loading counters', error)
    }
    this.#failed = undefined
    this.#db = db
  }

  /**
   * Reads the first and last key of each partition, jumping from one partition to the next (a seek
   * per partition, not a read of every entry), then the stored highest seqs of drained partitions.
   */
  async #loadCounters(db: Db): Promise<void> {
    this.#counters.clear()
    this.#size = 0
    let after: Buffer | undefined
    for (;;) {
      const range = after === undefined ? { gte: ENTRIES_START, limit: 1 } : { gt: after, limit: 1 }
      const [first] = await db.keys(range).all()
      if (first === undefined) break
      const { queue, partition, seq } = decodeEntryKey(first)
      const end = entryKey(queue, partition, Number.MAX_SAFE_INTEGER)
      end.fill(0xff, end.length - 8)
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
    const lastSeqPrefix = Buffer.from([META, META_LAST_SEQ])
    const stored = await db.iterator({ gte: lastSeqPrefix, lt: Buffer.from([META, META_LAST_SEQ + 1]) }).all()
    for (const [key, value] of stored) {
      const { queue, partition } = decodeLastSeqKey(key)
      if (value.length !== 8) throw storageFailure('loading counters', new Error('bad last-seq record'))
      const lastSeq = readU64(value, 0)
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
      // Ends: nothing new is accepted, so at most the collected batch and the one being written remain.
      while (this.#scheduled || this.#writing !== undefined) {
        await (this.#writing ?? new Promise<void>((resolve) => setImmediate(resolve)))
      }
      this.#db = undefined
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
    try {
      this.#writable()
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
    this.#ops.push({ type: 'put', key: entryKey(publish.queue, publish.partition, seq), value })
    this.#appended.push({ counters, seq })
    return this.#enqueue(options.sync)
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
    try {
      this.#writable()
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
    for (let seq = counters.firstSeq; seq <= through; seq++) {
      this.#ops.push({ type: 'del', key: entryKey(queue, partition, seq) })
    }
    // The highest seq so far, so that a partition emptied here continues above it after a restart.
    const lastSeq = Buffer.allocUnsafe(8)
    writeU64(lastSeq, counters.lastSeq, 0)
    this.#ops.push({ type: 'put', key: lastSeqKey(queue, partition), value: lastSeq })
    this.#size -= through - counters.firstSeq + 1
    counters.firstSeq = through + 1
    return this.#enqueue(false)
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

  /** Joins the batch being collected; resolves when it is written. */
  #enqueue(sync: boolean): Promise<void> {
    this.#sync ||= sync
    const done = new Promise<void>((resolve, reject) => this.#waiters.push({ resolve, reject }))
    this.#schedule()
    return done
  }

  #schedule(): void {
    // A batch being written reschedules when it is done: what was collected meanwhile goes next.
    if (this.#scheduled || this.#writing !== undefined) return
    this.#scheduled = true
    setImmediate(this.#flush)
  }

  readonly #flush = (): void => {
    this.#scheduled = false
    if (this.#waiters.length === 0) return
    const ops = this.#ops
    const appended = this.#appended
    const waiters = this.#waiters
    const sync = this.#sync
    this.#ops = []
    this.#appended = []
    this.#waiters = []
    this.#sync = false
    const failed = this.#failed
    if (failed !== undefined) {
      for (const waiter of waiters) waiter.reject(failed)
      return
    }
    this.#writing = this.#writeBatch(ops, sync).then(
      () => {
        for (const { counters, seq } of appended) {
          if (seq > counters.writtenSeq) counters.writtenSeq = seq
        }
        for (const waiter of waiters) waiter.resolve()
      },
      (error: unknown) => {
        const failure = storageFailure('write batch', error)
        this.#failed ??= failure
        for (const waiter of waiters) waiter.reject(failure)
      },
    )
    void this.#writing.finally(() => {
      this.#writing = undefined
      if (this.#waiters.length > 0) this.#schedule()
    })
  }

  /** One LevelDB write batch: all-or-nothing, applied in order. */
  async #writeBatch(ops: readonly LevelOp[], sync: boolean): Promise<void> {
    // close() keeps the handle until the last batch is written.
    const batch = this.#requireDb().batch()
    try {
      for (const op of ops) {
        if (op.type === 'put') batch.put(op.key, op.value)
        else batch.del(op.key)
      }
      await batch.write({ sync })
    } catch (error) {
      // Nothing was written; release the native batch (idempotent if write() already closed it).
      await batch.close()
      throw error
    }
  }

  #writable(): void {
    if (this.#closing !== undefined) {
      throw new ForwardBufferError(ForwardBufferErrorCodes.notOpen, `forward buffer ${this.#path} is closing`)
    }
    this.#requireDb()
    if (this.#failed !== undefined) throw this.#failed
  }

  #requireDb(): Db {
    if (this.#db === undefined) {
      throw new ForwardBufferError(
        ForwardBufferErrorCodes.notOpen,
        `forward buffer ${this.#path} is not open`,
      )
    }
    return this.#db
  }
}

async function checkFormat(db: Db): Promise<void> {
  const stored = await db.get(FORMAT_KEY)
  if (stored === undefined) {
    await db.put(FORMAT_KEY, Buffer.from([FORMAT_VERSION]), { sync: true })
  } else if (stored.length !== 1 || stored[0] !== FORMAT_VERSION) {
    throw new ForwardBufferError(
      ForwardBufferErrorCodes.storageFailure,
      `unsupported forward buffer format ${stored.toString('hex')} in ${db.location} (expected ${FORMAT_VERSION})`,
    )
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

function checkQueue(queue: string): void {
  if (typeof queue !== 'string' || queue.length === 0 || queue.includes('\u0000')) {
    throw new ForwardBufferError(
      ForwardBufferErrorCodes.invalidInput,
      `queue name ${JSON.stringify(queue)} must be a non-empty string without U+0000`,
    )
  }
}

function checkPartition(partition: number): void {
  if (!Number.isInteger(partition) || partition < 0 || partition > MAX_PARTITION) {
    throw new ForwardBufferError(
      ForwardBufferErrorCodes.invalidInput,
      `partition must be an integer in [0, ${MAX_PARTITION}], got ${String(partition)}`,
    )
  }
}

function countersKey(queue: string, partition: number): string {
  return `${queue}\u0000${partition}`
}

// ---------------------------------------------------------------------------------------------------
// Keys

/** Writes a safe integer as 8 bytes big-endian (two u32), which sorts like the number. */
function writeU64(buf: Buffer, value: number, offset: number): void {
  buf.writeUInt32BE(Math.floor(value / TWO_32), offset)
  buf.writeUInt32BE(value >>> 0, offset + 4)
}

function readU64(buf: Buffer, offset: number): number {
  return buf.readUInt32BE(offset) * TWO_32 + buf.readUInt32BE(offset + 4)
}

/** `queue 0x00 partition:u32be seq:u64be`. */
function entryKey(queue: string, partition: number, seq: number): Buffer {
  const len = Buffer.byteLength(queue)
  const key = Buffer.allocUnsafe(len + 13)
  key.write(queue, 0, 'utf8')
  key[len] = SEP
  key.writeUInt32BE(partition, len + 1)
  writeU64(key, seq, len + 5)
  return key
}

function decodeEntryKey(key: Buffer): { queue: string; partition: number; seq: number } {
  const sep = key.indexOf(SEP)
  if (sep < 1 || key.length !== sep + 13) {
    throw new ForwardBufferError(
      ForwardBufferErrorCodes.storageFailure,
      `malformed forward buffer key ${key.toString('hex')}`,
    )
  }
  return {
    queue: key.toString('utf8', 0, sep),
    partition: key.readUInt32BE(sep + 1),
    seq: readU64(key, sep + 5),
  }
}

/** `0x00 0x02 queue 0x00 partition:u32be`. */
function lastSeqKey(queue: string, partition: number): Buffer {
  const len = Buffer.byteLength(queue)
  const key = Buffer.allocUnsafe(len + 7)
  key[0] = META
  key[1] = META_LAST_SEQ
  key.write(queue, 2, 'utf8')
  key[len + 2] = SEP
  key.writeUInt32BE(partition, len + 3)
  return key
}

function decodeLastSeqKey(key: Buffer): { queue: string; partition: number } {
  const sep = key.indexOf(SEP, 2)
  if (sep < 3 || key.length !== sep + 5) {
    throw new ForwardBufferError(
      ForwardBufferErrorCodes.storageFailure,
      `malformed forward buffer key ${key.toString('hex')}`,
    )
  }
  return { queue: key.toString('utf8', 2, sep), partition: key.readUInt32BE(sep + 1) }
}

// ---------------------------------------------------------------------------------------------------
// Values: the queue store's message encoding (src/storage/level-codec.ts), with the time the message
// was accepted as its enqueue time and its expiry as an absolute time. Queue, partition and seq are
// in the key.

function encodeValue(publish: BufferedPublish): Buffer {
  return encodeMessageValue({
    id: '',
    queue: publish.queue,
    partition: publish.partition,
    seq: 0,
    payload: publish.payload,
    properties: publish.properties,
    enqueuedAtMs: publish.acceptedAtMs,
    ...(publish.messageExpirySeconds === undefined
      ? {}
      : { expiresAtMs: publish.acceptedAtMs + publish.messageExpirySeconds * 1000 }),
  })
}

function decodeValue(queue: string, partition: number, buf: Buffer): BufferedPublish {
  const message = decodeMessageValue(queue, partition, 0, buf)
  return {
    queue,
    partition,
    payload: message.payload,
    properties: message.properties,
    acceptedAtMs: message.enqueuedAtMs,
    ...(message.expiresAtMs === undefined
      ? {}
      : { messageExpirySeconds: (message.expiresAtMs - message.enqueuedAtMs) / 1000 }),
  }
}
