/**
 * The key and integer codec every LevelDB store under src/storage shares: fixed-width big-endian
 * integers (byte order equals numeric order) and names ended by a 0x00 byte.
 *
 * 0x00 can end a name because MQTT strings (topic names, so queue names, and client ids) cannot
 * contain U+0000 ([MQTT-4.7.3-2], [MQTT-1.5.4-2]): a terminated name is never a prefix of another, so
 * `a 00` does not share a prefix with `a/b 00` or `ab 00`.
 */

/** Ends every name in a key. */
export const TERMINATOR = 0x00

/** The largest value a u32 field (a partition, a delivery count) can hold. */
export const MAX_U32 = 0xffff_ffff

const TWO_32 = 0x1_0000_0000

/** True for an integer that fits a u32 field. */
export function isU32(value: number): boolean {
  return Number.isInteger(value) && value >= 0 && value <= MAX_U32
}

/**
 * Writes a safe integer as 8 bytes big-endian (two u32s), which sorts like the number; returns the
 * offset after it.
 */
export function writeU64(buf: Buffer, value: number, offset: number): number {
  buf.writeUInt32BE(Math.floor(value / TWO_32), offset)
  buf.writeUInt32BE(value >>> 0, offset + 4)
  return offset + 8
}

/** Reads what {@link writeU64} wrote. */
export function readU64(buf: Buffer, offset: number): number {
  return buf.readUInt32BE(offset) * TWO_32 + buf.readUInt32BE(offset + 4)
}

/** Writes `name` as UTF-8 followed by {@link TERMINATOR}; returns the offset after the terminator. */
export function writeName(buf: Buffer, name: string, offset: number): number {
  const end = offset + buf.write(name, offset, 'utf8')
  buf[end] = TERMINATOR
  return end + 1
}

/** Range options covering every key that starts with `prefix`. */
export function prefixRange(prefix: Buffer): { gte: Buffer; lt: Buffer } {
  // Every prefix used here ends in 0x00 or is a single kind byte, so bumping the last byte is safe.
  const lt = Buffer.from(prefix)
  lt[lt.length - 1] = (lt[lt.length - 1] as number) + 1
  return { gte: prefix, lt }
}
