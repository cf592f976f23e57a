/**
 * The session store's LevelDB (`<dataDir>/sessions`): its keys, its value codec, and writes through
 * the kernel (../level/). The records mirror aedes' session state; ./session-persistence.ts keeps
 * them in memory and writes every change through this class.
 *
 * Keys are UTF-8 text: `<kind> 0x00 <clientId or topic> [0x00 <rest>]`. MQTT forbids U+0000 in topics
 * and client ids ([MQTT-1.5.4-2]), so 0x00 ends each part.
 *
 * | Kind | Key                                  | Value                            |
 * | ---- | ------------------------------------ | -------------------------------- |
 * | `r`  | `r 00 topic`                         | the retained packet (JSON)       |
 * | `s`  | `s 00 clientId 00 topic`             | qos, rh, rap, nl, subscription id |
 * | `o`  | `o 00 clientId 00 seq` (16 digits)   | a packet queued / in flight to it |
 * | `i`  | `i 00 clientId 00 messageId`         | a QoS 2 packet before PUBREL      |
 * | `w`  | `w 00 clientId`                      | the will                         |
 * | —    | `00 v`                               | format version, one byte (1)     |
 *
 * Values are JSON with byte arrays (payload, correlationData) as `{ "$b64": … }`. The format record
 * was added with the kernel; a directory written before has none and is taken as version 1 (older
 * versions skip keys of an unknown kind, so they still read a directory that has it).
 */
import { writeBatch, type LevelOp } from '../level/batch.js'
import { AfterFailure, GroupCommitter } from '../level/group-committer.js'
import { openLevel, type LevelDb, type LevelFormat } from '../level/open.js'

/** One record change, in text form (key and value are UTF-8 on disk). */
export type SessionOp = { type: 'put'; key: string; value: string } | { type: 'del'; key: string }

const SEP = '\u0000'

/** The record kinds (first part of a key). */
export const SessionKinds = { retained: 'r', sub: 's', out: 'o', inc: 'i', will: 'w' } as const

const FORMAT: LevelFormat = { name: 'session store', key: Buffer.from(`${SEP}v`, 'utf8'), version: 1 }

export const sessionKeys = {
  retained: (topic: string): string => SessionKinds.retained + SEP + topic,
  subscription: (clientId: string, topic: string): string => SessionKinds.sub + SEP + clientId + SEP + topic,
  /** Outgoing packets sort by seq within a client: the seq is zero-padded to 16 digits. */
  outgoing: (clientId: string, seq: number): string =>
    SessionKinds.out + SEP + clientId + SEP + seq.toString().padStart(16, '0'),
  incoming: (clientId: string, messageId: number): string =>
    SessionKinds.inc + SEP + clientId + SEP + String(messageId),
  will: (clientId: string): string => SessionKinds.will + SEP + clientId,
}

/** JSON with Buffers/Uint8Arrays (payload, correlationData) kept as base64. */
export function encodeRecord(value: unknown): string {
  return JSON.stringify(value, function replacer(this: Record<string, unknown>, key: string, v: unknown) {
    const raw = key === '' ? v : this[key]
    if (raw instanceof Uint8Array) return { $b64: Buffer.from(raw).toString('base64') }
    return v
  })
}

export function decodeRecord<T>(text: string): T {
  return JSON.parse(text, (_key, v: unknown) => {
    if (typeof v === 'object' && v !== null && typeof (v as { $b64?: unknown }).$b64 === 'string') {
      return Buffer.from((v as { $b64: string }).$b64, 'base64')
    }
    return v
  }) as T
}

/** A stored record, its key split into parts: `kind`, `a` (client id or topic), `b` (the rest). */
export interface SessionRecord {
  readonly key: string
  readonly kind: string
  readonly a: string
  readonly b: string
  readonly value: string
}

function textOp(op: SessionOp): LevelOp {
  return op.type === 'put'
    ? { type: 'put', key: Buffer.from(op.key, 'utf8'), value: Buffer.from(op.value, 'utf8') }
    : { type: 'del', key: Buffer.from(op.key, 'utf8') }
}

/**
 * The open session database. Writes are group-committed by the kernel: the writes of one
 * event-loop turn become one batch, batches land in call order, and a failed batch rejects only
 * its own callers ({@link AfterFailure.continue}: the in-memory state already holds the change, and
 * the next write is tried as usual, as before the kernel).
 */
export class SessionDb {
  readonly #db: LevelDb
  readonly #commits: GroupCommitter<LevelOp>
  readonly #sync: boolean

  private constructor(db: LevelDb, sync: boolean) {
    this.#db = db
    this.#sync = sync
    this.#commits = new GroupCommitter<LevelOp>({
      write: (ops, batchSync) => writeBatch(db, ops, batchSync),
      afterFailure: AfterFailure.continue,
    })
  }

  /** Opens (creating if needed) the database at `path`; `sync` fsyncs every batch. */
  static async open(path: string, sync: boolean): Promise<SessionDb> {
    return new SessionDb(await openLevel(path, FORMAT), sync)
  }

  /** Every record, in key order (the format record excluded). */
  async *records(): AsyncGenerator<SessionRecord> {
    for await (const [rawKey, rawValue] of this.#db.iterator()) {
      const key = rawKey.toString('utf8')
      const parts = key.split(SEP)
      const kind = parts[0] ?? ''
      if (kind === '') continue // the format record (or an old flush marker)
      yield { key, kind, a: parts[1] ?? '', b: parts[2] ?? '', value: rawValue.toString('utf8') }
    }
  }

  /** Resolves once `ops` are in LevelDB (in call order with every other write). */
  write(ops: readonly SessionOp[]): Promise<void> {
    if (ops.length === 0) return Promise.resolve()
    return this.#commits.add(ops.map(textOp), this.#sync)
  }

  /** Waits for every write asked for, then closes the database. */
  async close(): Promise<void> {
    await this.#commits.close()
    await this.#db.close()
  }
}
