/**
 * Input checks shared by every {@link QueueStore} implementation, so that all stores accept and refuse
 * exactly the same ops (the contract suite in test/contract checks both). A refused op makes the whole
 * batch fail before anything is applied.
 */
import { QueueError, QueueErrorCodes } from '../queue/errors.js'
import type { GroupPartitionState, Membership, PartitionMeta, StoreOp } from '../queue/store.js'
import type { QueueMessage } from '../queue/types.js'
import { isU32, MAX_U32 } from './level/keys.js'

/** Partitions are stored as unsigned 32-bit integers. */
export const MAX_PARTITION = MAX_U32
/** Delivery counts are stored as unsigned 32-bit integers. */
export const MAX_DELIVERY_COUNT = MAX_U32

/**
 * U+0000 is the key separator of the level store (MQTT topic names cannot contain it,
 * [MQTT-4.7.3-2]); a lone surrogate cannot be encoded as UTF-8 and would collide with U+FFFD.
 */
const FORBIDDEN_IN_NAME = /[\u0000\p{Cs}]/u

/** The error every store rejects with for input it cannot store. */
export function invalidInput(message: string): QueueError {
  return new QueueError(QueueErrorCodes.storageFailure, `invalid store input: ${message}`)
}

/** The error every store rejects with when used while not open. */
export function notOpen(): QueueError {
  return new QueueError(QueueErrorCodes.closed, 'queue store is not open')
}

export function checkName(kind: 'queue' | 'group' | 'client id', name: string): void {
  if (typeof name !== 'string' || FORBIDDEN_IN_NAME.test(name)) {
    throw invalidInput(`${kind} name ${JSON.stringify(name)} contains U+0000 or a lone surrogate`)
  }
}

export function checkPartition(partition: number): void {
  if (!isU32(partition)) {
    throw invalidInput(`partition ${String(partition)} is not an integer in [0, ${MAX_PARTITION}]`)
  }
}

/** Sequence numbers, floors and counts: non-negative safe integers (stored as 64-bit). */
export function checkUint(what: string, value: number): void {
  if (!Number.isSafeInteger(value) || value < 0) {
    throw invalidInput(`${what} ${String(value)} is not a non-negative safe integer`)
  }
}

function checkFiniteNumber(what: string, value: number): void {
  if (typeof value !== 'number' || Number.isNaN(value)) throw invalidInput(`${what} is not a number`)
}

export function checkMessage(message: QueueMessage): void {
  checkName('queue', message.queue)
  checkPartition(message.partition)
  checkUint('seq', message.seq)
  // The level store derives the id from the key; refusing other ids keeps every store identical.
  if (message.id !== `${message.partition}-${message.seq}`) {
    throw invalidInput(`message id ${JSON.stringify(message.id)} is not "<partition>-<seq>"`)
  }
  if (!(message.payload instanceof Uint8Array)) throw invalidInput('payload is not a Uint8Array')
  checkFiniteNumber('enqueuedAtMs', message.enqueuedAtMs)
  if (message.expiresAtMs !== undefined) checkFiniteNumber('expiresAtMs', message.expiresAtMs)
  const cd = message.properties.correlationData
  if (cd !== undefined && !(cd instanceof Uint8Array))
    throw invalidInput('correlationData is not a Uint8Array')
}

export function checkPartitionMeta(meta: PartitionMeta): void {
  checkName('queue', meta.queue)
  checkPartition(meta.partition)
  checkUint('lastSeq', meta.lastSeq)
  checkUint('count', meta.count)
}

export function checkGroupState(state: GroupPartitionState): void {
  checkName('queue', state.queue)
  checkName('group', state.group)
  checkPartition(state.partition)
  checkUint('ackFloor', state.ackFloor)
  for (const seq of state.settledAbove) checkUint('settledAbove seq', seq)
  for (const [seq, count] of state.attempts) {
    checkUint('attempts seq', seq)
    checkUint('deliveryCount', count)
    if (count > MAX_DELIVERY_COUNT) throw invalidInput(`deliveryCount ${count} exceeds ${MAX_DELIVERY_COUNT}`)
  }
}

export function checkMembership(membership: Membership): void {
  checkName('client id', membership.clientId)
  checkName('queue', membership.queue)
  checkName('group', membership.group)
}

/** Throws {@link invalidInput} if the op cannot be stored. */
export function checkOp(op: StoreOp): void {
  switch (op.type) {
    case 'putMessage':
      return checkMessage(op.message)
    case 'deleteMessage':
      checkName('queue', op.queue)
      checkPartition(op.partition)
      return checkUint('seq', op.seq)
    case 'putPartitionMeta':
      return checkPartitionMeta(op.meta)
    case 'putGroupState':
      return checkGroupState(op.state)
    case 'deleteGroupState':
      checkName('queue', op.queue)
      checkName('group', op.group)
      return checkPartition(op.partition)
    case 'putMembership':
    case 'deleteMembership':
      return checkMembership(op.membership)
    case 'putQueueSettings':
      checkName('queue', op.record.queue)
      if (typeof op.record.settings !== 'object' || op.record.settings === null) {
        throw invalidInput('queue settings must be an object')
      }
      return
    case 'putGroupRecord':
      checkName('queue', op.record.queue)
      checkName('group', op.record.group)
      if (typeof op.record.implicit !== 'boolean')
        throw invalidInput('group record: implicit must be a boolean')
      if (op.record.idleSinceMs !== undefined) checkUint('idleSinceMs', op.record.idleSinceMs)
      return
    case 'putQueueLayout':
      checkName('queue', op.layout.queue)
      if (
        !Number.isSafeInteger(op.layout.partitions) ||
        op.layout.partitions < 1 ||
        op.layout.partitions > 0xffff_ffff
      )
        throw invalidInput('queue layout: partitions must be a positive 32-bit integer')
      return
    case 'deleteGroupRecord':
      checkName('queue', op.queue)
      return checkName('group', op.group)
    case 'deleteQueue':
      return checkName('queue', op.queue)
    default:
      throw invalidInput(`unknown op type ${JSON.stringify((op as { type?: unknown }).type)}`)
  }
}

/**
 * Normalizes `readMessages` bounds: returns the first seq to read and the maximum count, or
 * `undefined` when the answer is necessarily empty.
 */
export function readBounds(fromSeq: number, limit: number): { start: number; limit: number } | undefined {
  checkFiniteNumber('fromSeq', fromSeq)
  checkFiniteNumber('limit', limit)
  const start = Math.max(0, Math.ceil(fromSeq))
  const max = Number.isFinite(limit) ? Math.floor(limit) : Number.MAX_SAFE_INTEGER
  if (max <= 0 || start > Number.MAX_SAFE_INTEGER) return undefined
  return { start, limit: max }
}
