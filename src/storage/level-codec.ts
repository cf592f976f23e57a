/**
 * Binary key and value encodings of the level store; docs/storage.md describes the layout.
 *
 * Keys sort the way the store scans them: a one-byte record kind, the queue name as UTF-8 ended by a
 * 0x00 byte (never part of a name, [MQTT-4.7.3-2]), then fixed-width big-endian integers. Because the
 * name is terminated, queue `a` never shares a key prefix with `a/b` or `ab`.
 */
import type {
  GroupPartitionState,
  GroupRecord,
  Membership,
  PartitionMeta,
  QueueLayout,
  StoredQueueSettings,
} from '../queue/store.js'
import type { MessageProperties, QueueMessage } from '../queue/types.js'
import { readU64, TERMINATOR, writeU64 } from './level/keys.js'

export { prefixRange } from './level/keys.js'

export const RecordKinds = {
  message: 0x6d, // 'm'
  partition: 0x70, // 'p'
  group: 0x67, // 'g'
  membership: 0x63, // 'c' (client)
  settings: 0x73, // 's'
  groupRecord: 0x61, // 'a' (a group as a whole)
  layout: 0x6c, // 'l'
  format: 0x76, // 'v'
} as const
export type RecordKind = (typeof RecordKinds)[keyof typeof RecordKinds]

/** Bumped on any incompatible change of a key or value encoding. */
export const FORMAT_VERSION = 1
export const FORMAT_KEY = Buffer.from([RecordKinds.format])

const SEP = TERMINATOR

// ---------------------------------------------------------------------------------------------------
// Keys

/** `kind queue 0x00`: the prefix of every record of one kind of one queue. */
export function queuePrefix(kind: RecordKind, queue: string): Buffer {
  const len = Buffer.byteLength(queue)
  const key = Buffer.allocUnsafe(len + 2)
  key[0] = kind
  key.write(queue, 1, 'utf8')
  key[len + 1] = SEP
  return key
}

/** `m queue 0x00 partition:u32 seq:u64`. */
export function messageKey(queue: string, partition: number, seq: number): Buffer {
  const len = Buffer.byteLength(queue)
  const key = Buffer.allocUnsafe(len + 14)
  key[0] = RecordKinds.message
  key.write(queue, 1, 'utf8')
  key[len + 1] = SEP
  key.writeUInt32BE(partition, len + 2)
  writeU64(key, seq, len + 6)
  return key
}

/** Range options for the messages of one partition with seq >= fromSeq. */
export function messageRange(queue: string, partition: number, fromSeq: number): { gte: Buffer; lt: Buffer } {
  const gte = messageKey(queue, partition, fromSeq)
  // Seqs are safe integers (< 2^53), so 0xff x 8 is above all of them.
  const lt = Buffer.from(gte)
  lt.fill(0xff, lt.length - 8)
  return { gte, lt }
}

export function seqOfMessageKey(key: Buffer): number {
  return readU64(key, key.length - 8)
}

/** `p queue 0x00 partition:u32`. */
export function partitionKey(queue: string, partition: number): Buffer {
  const len = Buffer.byteLength(queue)
  const key = Buffer.allocUnsafe(len + 6)
  key[0] = RecordKinds.partition
  key.write(queue, 1, 'utf8')
  key[len + 1] = SEP
  key.writeUInt32BE(partition, len + 2)
  return key
}

export function decodePartitionKey(key: Buffer): { queue: string; partition: number } {
  return { queue: key.toString('utf8', 1, key.length - 5), partition: key.readUInt32BE(key.length - 4) }
}

/** `g queue 0x00 group 0x00 partition:u32`. */
export function groupKey(queue: string, group: string, partition: number): Buffer {
  const qlen = Buffer.byteLength(queue)
  const glen = Buffer.byteLength(group)
  const key = Buffer.allocUnsafe(qlen + glen + 7)
  key[0] = RecordKinds.group
  key.write(queue, 1, 'utf8')
  key[qlen + 1] = SEP
  key.write(group, qlen + 2, 'utf8')
  key[qlen + glen + 2] = SEP
  key.writeUInt32BE(partition, qlen + glen + 3)
  return key
}

export function decodeGroupKey(key: Buffer): { queue: string; group: string; partition: number } {
  const sep = key.indexOf(SEP, 1)
  return {
    queue: key.toString('utf8', 1, sep),
    group: key.toString('utf8', sep + 1, key.length - 5),
    partition: key.readUInt32BE(key.length - 4),
  }
}

// ---------------------------------------------------------------------------------------------------
// Message values

const Flags = {
  expires: 1,
  contentType: 2,
  responseTopic: 4,
  correlationData: 8,
  payloadFormatPresent: 16,
  payloadFormatUtf8: 32,
  userProperties: 64,
} as const

/**
 * `flags:u8 enqueuedAtMs:f64 [expiresAtMs:f64] [contentType] [responseTopic] [correlationData]
 * [userProperties: count:u32 (key value)*] payload`, where strings and byte strings are `len:u32 bytes`
 * and the payload is the rest of the value (no copy of it is needed to decode).
 */
export function encodeMessageValue(message: QueueMessage): Buffer {
  const p = message.properties
  let flags = 0
  let size = 9
  if (message.expiresAtMs !== undefined) {
    flags |= Flags.expires
    size += 8
  }
  if (p.contentType !== undefined) {
    flags |= Flags.contentType
    size += 4 + Buffer.byteLength(p.contentType)
  }
  if (p.responseTopic !== undefined) {
    flags |= Flags.responseTopic
    size += 4 + Buffer.byteLength(p.responseTopic)
  }
  if (p.correlationData !== undefined) {
    flags |= Flags.correlationData
    size += 4 + p.correlationData.byteLength
  }
  if (p.payloadFormatIndicator !== undefined) {
    flags |= Flags.payloadFormatPresent
    if (p.payloadFormatIndicator) flags |= Flags.payloadFormatUtf8
  }
  if (p.userProperties !== undefined) {
    flags |= Flags.userProperties
    size += 4
    for (const [k, v] of p.userProperties) size += 8 + Buffer.byteLength(k) + Buffer.byteLength(v)
  }
  size += message.payload.byteLength

  const buf = Buffer.allocUnsafe(size)
  buf[0] = flags
  let at = buf.writeDoubleBE(message.enqueuedAtMs, 1)
  if (message.expiresAtMs !== undefined) at = buf.writeDoubleBE(message.expiresAtMs, at)
  if (p.contentType !== undefined) at = writeString(buf, p.contentType, at)
  if (p.responseTopic !== undefined) at = writeString(buf, p.responseTopic, at)
  if (p.correlationData !== undefined) at = writeBytes(buf, p.correlationData, at)
  if (p.userProperties !== undefined) {
    at = buf.writeUInt32BE(p.userProperties.length, at)
    for (const [k, v] of p.userProperties) at = writeString(buf, v, writeString(buf, k, at))
  }
  buf.set(message.payload, at)
  return buf
}

function writeString(buf: Buffer, value: string, at: number): number {
  const written = buf.write(value, at + 4, 'utf8')
  buf.writeUInt32BE(written, at)
  return at + 4 + written
}

function writeBytes(buf: Buffer, value: Uint8Array, at: number): number {
  buf.writeUInt32BE(value.byteLength, at)
  buf.set(value, at + 4)
  return at + 4 + value.byteLength
}

/** A plain Uint8Array view (not a Buffer, not a copy) of `len` bytes of `buf`. */
function view(buf: Buffer, at: number, len: number): Uint8Array {
  return new Uint8Array(buf.buffer, buf.byteOffset + at, len)
}

export function decodeMessageValue(queue: string, partition: number, seq: number, buf: Buffer): QueueMessage {
  const flags = buf[0] as number
  let at = 1
  const enqueuedAtMs = buf.readDoubleBE(at)
  at += 8
  let expiresAtMs: number | undefined
  if (flags & Flags.expires) {
    expiresAtMs = buf.readDoubleBE(at)
    at += 8
  }
  const properties: MessageProperties = {}
  const readString = (): string => {
    const len = buf.readUInt32BE(at)
    const value = buf.toString('utf8', at + 4, at + 4 + len)
    at += 4 + len
    return value
  }
  if (flags & Flags.contentType) properties.contentType = readString()
  if (flags & Flags.responseTopic) properties.responseTopic = readString()
  if (flags & Flags.correlationData) {
    const len = buf.readUInt32BE(at)
    properties.correlationData = view(buf, at + 4, len)
    at += 4 + len
  }
  if (flags & Flags.payloadFormatPresent)
    properties.payloadFormatIndicator = (flags & Flags.payloadFormatUtf8) !== 0
  if (flags & Flags.userProperties) {
    const count = buf.readUInt32BE(at)
    at += 4
    const pairs: Array<[string, string]> = []
    for (let i = 0; i < count; i++) pairs.push([readString(), readString()])
    properties.userProperties = pairs
  }
  const message: { -readonly [K in keyof QueueMessage]: QueueMessage[K] } = {
    id: `${partition}-${seq}`,
    queue,
    partition,
    seq,
    payload: view(buf, at, buf.length - at),
    properties,
    enqueuedAtMs,
  }
  if (expiresAtMs !== undefined) message.expiresAtMs = expiresAtMs
  return message
}

// ---------------------------------------------------------------------------------------------------
// Partition metas and group states

/** `lastSeq:u64 count:u64`. */
export function encodePartitionMeta(meta: PartitionMeta): Buffer {
  const buf = Buffer.allocUnsafe(16)
  writeU64(buf, meta.count, writeU64(buf, meta.lastSeq, 0))
  return buf
}

export function decodePartitionMeta(key: Buffer, value: Buffer): PartitionMeta {
  const { queue, partition } = decodePartitionKey(key)
  return { queue, partition, lastSeq: readU64(value, 0), count: readU64(value, 8) }
}

/** `ackFloor:u64 n:u32 settledSeq:u64 * n  m:u32 (seq:u64 deliveryCount:u32) * m`. */
export function encodeGroupState(state: GroupPartitionState): Buffer {
  const buf = Buffer.allocUnsafe(16 + 8 * state.settledAbove.length + 12 * state.attempts.length)
  let at = writeU64(buf, state.ackFloor, 0)
  at = buf.writeUInt32BE(state.settledAbove.length, at)
  for (const seq of state.settledAbove) at = writeU64(buf, seq, at)
  at = buf.writeUInt32BE(state.attempts.length, at)
  for (const [seq, count] of state.attempts) at = buf.writeUInt32BE(count, writeU64(buf, seq, at))
  return buf
}

export function decodeGroupState(key: Buffer, value: Buffer): GroupPartitionState {
  const { queue, group, partition } = decodeGroupKey(key)
  const ackFloor = readU64(value, 0)
  const settledCount = value.readUInt32BE(8)
  let at = 12
  const settledAbove: number[] = []
  for (let i = 0; i < settledCount; i++, at += 8) settledAbove.push(readU64(value, at))
  const attemptCount = value.readUInt32BE(at)
  at += 4
  const attempts: Array<[number, number]> = []
  for (let i = 0; i < attemptCount; i++, at += 12)
    attempts.push([readU64(value, at), value.readUInt32BE(at + 8)])
  return { queue, group, partition, ackFloor, settledAbove, attempts }
}

/** `s queue 0x00` -> JSON of the settings overrides (small, rare, human-debuggable). */
export function encodeQueueSettings(record: StoredQueueSettings): Buffer {
  return Buffer.from(JSON.stringify(record.settings), 'utf8')
}

export function decodeQueueSettings(key: Buffer, value: Buffer): StoredQueueSettings {
  const queue = key.toString('utf8', 1, key.length - 1)
  return { queue, settings: JSON.parse(value.toString('utf8')) as StoredQueueSettings['settings'] }
}

/** `a queue 0x00 group`: one record per consumer group of a queue. */
export function groupRecordKey(queue: string, group: string): Buffer {
  const prefix = queuePrefix(RecordKinds.groupRecord, queue)
  return Buffer.concat([prefix, Buffer.from(group, 'utf8')])
}

/** `flags:u8 (bit 0 implicit, bit 1 idle) [idleSinceMs:u64]`. */
export function encodeGroupRecord(record: GroupRecord): Buffer {
  const idle = record.idleSinceMs !== undefined
  const buf = Buffer.alloc(idle ? 9 : 1)
  buf[0] = (record.implicit ? 1 : 0) | (idle ? 2 : 0)
  if (record.idleSinceMs !== undefined) writeU64(buf, record.idleSinceMs, 1)
  return buf
}

export function decodeGroupRecord(key: Buffer, value: Buffer): GroupRecord {
  const sep = key.indexOf(SEP, 1)
  const queue = key.toString('utf8', 1, sep)
  const group = key.toString('utf8', sep + 1)
  const flags = value[0] ?? 0
  const implicit = (flags & 1) === 1
  return (flags & 2) === 2
    ? { queue, group, implicit, idleSinceMs: readU64(value, 1) }
    : { queue, group, implicit }
}

/** `l queue 0x00` -> partitions:u32. */
export function encodeQueueLayout(layout: QueueLayout): Buffer {
  const buf = Buffer.allocUnsafe(4)
  buf.writeUInt32BE(layout.partitions, 0)
  return buf
}

export function decodeQueueLayout(key: Buffer, value: Buffer): QueueLayout {
  return { queue: key.toString('utf8', 1, key.length - 1), partitions: value.readUInt32BE(0) }
}

/** `c clientId 0x00 queue 0x00 group 0x00`, empty value: a client's memberships are one prefix scan. */
export function membershipKey({ clientId, queue, group }: Membership): Buffer {
  const clen = Buffer.byteLength(clientId)
  const qlen = Buffer.byteLength(queue)
  const glen = Buffer.byteLength(group)
  const key = Buffer.allocUnsafe(clen + qlen + glen + 4)
  key[0] = RecordKinds.membership
  key.write(clientId, 1, 'utf8')
  key[clen + 1] = SEP
  key.write(queue, clen + 2, 'utf8')
  key[clen + qlen + 2] = SEP
  key.write(group, clen + qlen + 3, 'utf8')
  key[key.length - 1] = SEP
  return key
}

export function decodeMembershipKey(key: Buffer): Membership {
  const first = key.indexOf(SEP, 1)
  const second = key.indexOf(SEP, first + 1)
  return {
    clientId: key.toString('utf8', 1, first),
    queue: key.toString('utf8', first + 1, second),
    group: key.toString('utf8', second + 1, key.length - 1),
  }
}
