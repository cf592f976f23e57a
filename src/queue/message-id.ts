import { QueueError, QueueErrorCodes } from './errors.js'

/**
 * Message ids are `<partition>-<seq>`: the partition in 1-6 decimal digits, the seq in 1-15. The
 * partition part bounds how many partitions a queue can have.
 */
export const MAX_PARTITIONS = 1_000_000

/** The id of message `seq` of `partition`. */
export function formatMessageId(partition: number, seq: number): string {
  return `${partition}-${seq}`
}

/**
 * Parses `<partition>-<seq>` (1-6 and 1-15 ASCII digits); undefined when malformed. Runs on every
 * settle, hence by hand rather than with a regular expression and its match array.
 */
export function parseMessageId(id: string): { partition: number; seq: number } | undefined {
  const dash = id.indexOf('-')
  const seqDigits = id.length - dash - 1
  if (dash < 1 || dash > 6 || seqDigits < 1 || seqDigits > 15) return undefined
  const partition = digitsValue(id, 0, dash)
  const seq = digitsValue(id, dash + 1, id.length)
  if (partition === undefined || seq === undefined) return undefined
  return { partition, seq }
}

/** The number `id[from, to)` spells in decimal digits, or undefined if any other character is there. */
function digitsValue(id: string, from: number, to: number): number | undefined {
  let value = 0
  for (let i = from; i < to; i++) {
    const digit = id.charCodeAt(i) - 48
    if (digit < 0 || digit > 9) return undefined
    value = value * 10 + digit
  }
  return value
}

/** Throws INVALID_PARTITION unless `partition` is a number a message id can carry. */
export function assertPartitionNumber(partition: number): void {
  if (!Number.isSafeInteger(partition) || partition < 0 || partition >= MAX_PARTITIONS) {
    throw new QueueError(QueueErrorCodes.invalidPartition, `partition ${partition} is not a partition number`)
  }
}
