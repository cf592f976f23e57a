/**
 * Keys and values of the forward buffer's LevelDB (the layout is in ./forward-buffer.ts's header).
 * Integers and terminators come from the kernel's codec (../level/keys.ts); values are the queue
 * store's message encoding (../level-codec.ts).
 */
import { decodeMessageValue, encodeMessageValue } from '../level-codec.js'
import { readU64, TERMINATOR, writeU64 } from '../level/keys.js'
import { ForwardBufferError, ForwardBufferErrorCodes } from './errors.js'
import type { BufferedPublish } from './buffered-publish.js'

const META = 0x00
const META_FORMAT = 0x01
const META_LAST_SEQ = 0x02

/** `0x00 0x01` -> format version. */
export const FORMAT_KEY = Buffer.from([META, META_FORMAT])
export const FORMAT_VERSION = 1
/** Every entry key is >= this (a queue name is non-empty and has no 0x00 byte). */
export const ENTRIES_START = Buffer.from([0x01])
/** Range options covering every last-seq record. */
export const LAST_SEQ_RANGE = {
  gte: Buffer.from([META, META_LAST_SEQ]),
  lt: Buffer.from([META, META_LAST_SEQ + 1]),
}

function malformed(key: Buffer): ForwardBufferError {
  return new ForwardBufferError(
    ForwardBufferErrorCodes.storageFailure,
    `malformed forward buffer key ${key.toString('hex')}`,
  )
}

/** `queue 0x00 partition:u32be seq:u64be`. */
export function entryKey(queue: string, partition: number, seq: number): Buffer {
  const len = Buffer.byteLength(queue)
  const key = Buffer.allocUnsafe(len + 13)
  key.write(queue, 0, 'utf8')
  key[len] = TERMINATOR
  key.writeUInt32BE(partition, len + 1)
  writeU64(key, seq, len + 5)
  return key
}

/** The last possible entry key of a partition (above every seq). */
export function entriesEnd(queue: string, partition: number): Buffer {
  const end = entryKey(queue, partition, 0)
  end.fill(0xff, end.length - 8)
  return end
}

export function decodeEntryKey(key: Buffer): { queue: string; partition: number; seq: number } {
  const sep = key.indexOf(TERMINATOR)
  if (sep < 1 || key.length !== sep + 13) throw malformed(key)
  return {
    queue: key.toString('utf8', 0, sep),
    partition: key.readUInt32BE(sep + 1),
    seq: readU64(key, sep + 5),
  }
}

/** `0x00 0x02 queue 0x00 partition:u32be`. */
export function lastSeqKey(queue: string, partition: number): Buffer {
  const len = Buffer.byteLength(queue)
  const key = Buffer.allocUnsafe(len + 7)
  key[0] = META
  key[1] = META_LAST_SEQ
  key.write(queue, 2, 'utf8')
  key[len + 2] = TERMINATOR
  key.writeUInt32BE(partition, len + 3)
  return key
}

export function decodeLastSeqKey(key: Buffer): { queue: string; partition: number } {
  const sep = key.indexOf(TERMINATOR, 2)
  if (sep < 3 || key.length !== sep + 5) throw malformed(key)
  return { queue: key.toString('utf8', 2, sep), partition: key.readUInt32BE(sep + 1) }
}

/** `lastSeq:u64be`. */
export function encodeLastSeq(lastSeq: number): Buffer {
  const value = Buffer.allocUnsafe(8)
  writeU64(value, lastSeq, 0)
  return value
}

/** Reads a last-seq value; `undefined` if it is not 8 bytes. */
export function decodeLastSeq(value: Buffer): number | undefined {
  return value.length === 8 ? readU64(value, 0) : undefined
}

// Values: the queue store's message encoding, with the time the message was accepted as its enqueue
// time and its expiry as an absolute time. Queue, partition and seq are in the key.

export function encodeValue(publish: BufferedPublish): Buffer {
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

export function decodeValue(queue: string, partition: number, buf: Buffer): BufferedPublish {
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
