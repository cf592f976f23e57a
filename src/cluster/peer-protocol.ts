/**
 * The wire side of proto/spool/cluster/v1/cluster.proto: the message shapes proto-loader produces
 * (camelCase, uint64 as number), conversions to and from the queue core's types, and how a
 * {@link QueueError} crosses a gRPC call (status + `spool-error-code` trailer) and comes back.
 */
import * as grpc from '@grpc/grpc-js'
import { ERROR_CODE_TRAILER, loadProtoPackage } from '../net/grpc.js'
import { QueueError, QueueErrorCodes, type QueueErrorCode } from '../queue/errors.js'
import type { PartitionSnapshot } from '../queue/partition-ownership.js'
import type { GroupPartitionState } from '../queue/store.js'
import type { MessageProperties, QueueMessage, SettleAction, SettleInput } from '../queue/types.js'

export const CLUSTER_PROTO_PATH = 'proto/spool/cluster/v1/cluster.proto'

export function loadClusterServiceDefinition(): grpc.ServiceClientConstructor {
  const loaded = loadProtoPackage(CLUSTER_PROTO_PATH) as {
    spool: { cluster: { v1: { ClusterService: grpc.ServiceClientConstructor } } }
  }
  return loaded.spool.cluster.v1.ClusterService
}

export interface WireProperties {
  contentType?: string
  responseTopic?: string
  correlationData?: Buffer
  payloadFormatIndicator?: boolean
  userProperties: Array<{ key: string; value: string }>
}

export interface WireMessage {
  queue: string
  partition: number
  seq: number
  payload: Buffer
  properties: WireProperties | null
  enqueuedAtMs: number
  expiresAtMs?: number
}

export interface WirePublishRequest {
  fromNode: string
  queue: string
  partition: number
  payload: Buffer
  properties: WireProperties | null
  messageExpirySeconds?: number
}

export interface WireSettleRequest {
  fromNode: string
  clientId: string
  queue: string
  messageId: string
  action: string
  group?: string
  delayMs?: number
  reason?: string
}

export interface WireJoin {
  clientId: string
  queue: string
  group: string
  receiveMaximum: number
}

export type WireConsumerEvent =
  | { event: 'hello'; hello: { nodeId: string } }
  | { event: 'join'; join: WireJoin }
  | { event: 'leave'; leave: { clientId: string; queue: string } }
  | { event: 'gone'; gone: { clientId: string } }

export interface WireRemoteDelivery {
  clientId: string
  group: string
  message: WireMessage | null
  deliveryCount: number
}

export interface WireGroupState {
  group: string
  ackFloor: number
  settledAbove: number[]
  attempts: Array<{ seq: number; deliveryCount: number }>
}

export interface WirePartitionHeader {
  fromNode: string
  queue: string
  partition: number
  lastSeq: number
  count: number
  groups: WireGroupState[]
}

export type WirePartitionChunk =
  | { chunk: 'header'; header: WirePartitionHeader }
  | { chunk: 'messages'; messages: { messages: WireMessage[] } }

// ---- Conversions ----

export function propertiesToWire(properties: MessageProperties): WireProperties {
  const wire: WireProperties = {
    userProperties: (properties.userProperties ?? []).map(([key, value]) => ({ key, value })),
  }
  if (properties.contentType !== undefined) wire.contentType = properties.contentType
  if (properties.responseTopic !== undefined) wire.responseTopic = properties.responseTopic
  if (properties.correlationData !== undefined) wire.correlationData = Buffer.from(properties.correlationData)
  if (properties.payloadFormatIndicator !== undefined)
    wire.payloadFormatIndicator = properties.payloadFormatIndicator
  return wire
}

export function propertiesFromWire(wire: WireProperties | null | undefined): MessageProperties {
  const properties: MessageProperties = {}
  if (wire === null || wire === undefined) return properties
  if (wire.contentType !== undefined && wire.contentType !== null) properties.contentType = wire.contentType
  if (wire.responseTopic !== undefined && wire.responseTopic !== null)
    properties.responseTopic = wire.responseTopic
  if (wire.correlationData !== undefined && wire.correlationData !== null)
    properties.correlationData = wire.correlationData
  if (wire.payloadFormatIndicator !== undefined && wire.payloadFormatIndicator !== null)
    properties.payloadFormatIndicator = wire.payloadFormatIndicator
  if (wire.userProperties.length > 0)
    properties.userProperties = wire.userProperties.map(({ key, value }) => [key, value])
  return properties
}

export function messageToWire(message: QueueMessage): WireMessage {
  const wire: WireMessage = {
    queue: message.queue,
    partition: message.partition,
    seq: message.seq,
    payload: Buffer.from(message.payload.buffer, message.payload.byteOffset, message.payload.byteLength),
    properties: propertiesToWire(message.properties),
    enqueuedAtMs: message.enqueuedAtMs,
  }
  if (message.expiresAtMs !== undefined) wire.expiresAtMs = message.expiresAtMs
  return wire
}

export function messageFromWire(wire: WireMessage): QueueMessage {
  return {
    id: `${wire.partition}-${wire.seq}`,
    queue: wire.queue,
    partition: wire.partition,
    seq: wire.seq,
    payload: wire.payload,
    properties: propertiesFromWire(wire.properties),
    enqueuedAtMs: wire.enqueuedAtMs,
    ...(wire.expiresAtMs === undefined || wire.expiresAtMs === null ? {} : { expiresAtMs: wire.expiresAtMs }),
  }
}

export function settleToWire(fromNode: string, clientId: string, input: SettleInput): WireSettleRequest {
  const wire: WireSettleRequest = {
    fromNode,
    clientId,
    queue: input.queue,
    messageId: input.messageId,
    action: input.action,
  }
  if (input.group !== undefined) wire.group = input.group
  if (input.delayMs !== undefined) wire.delayMs = input.delayMs
  if (input.reason !== undefined) wire.reason = input.reason
  return wire
}

const SETTLE_ACTIONS: readonly string[] = ['ack', 'nack', 'reject', 'extend']

export function settleFromWire(wire: WireSettleRequest): SettleInput {
  if (!SETTLE_ACTIONS.includes(wire.action)) {
    throw new QueueError(QueueErrorCodes.unknownMessage, `unknown settle action "${wire.action}"`)
  }
  const input: SettleInput = {
    queue: wire.queue,
    messageId: wire.messageId,
    action: wire.action as SettleAction,
  }
  if (wire.group !== undefined && wire.group !== null) input.group = wire.group
  if (wire.delayMs !== undefined && wire.delayMs !== null) input.delayMs = wire.delayMs
  if (wire.reason !== undefined && wire.reason !== null) input.reason = wire.reason
  return input
}

export function snapshotToWire(fromNode: string, snapshot: PartitionSnapshot): WirePartitionHeader {
  return {
    fromNode,
    queue: snapshot.meta.queue,
    partition: snapshot.meta.partition,
    lastSeq: snapshot.meta.lastSeq,
    count: snapshot.meta.count,
    groups: snapshot.groups.map((state) => ({
      group: state.group,
      ackFloor: state.ackFloor,
      settledAbove: [...state.settledAbove],
      attempts: state.attempts.map(([seq, deliveryCount]) => ({ seq, deliveryCount })),
    })),
  }
}

export function snapshotFromWire(header: WirePartitionHeader): PartitionSnapshot {
  const { queue, partition } = header
  return {
    meta: { queue, partition, lastSeq: header.lastSeq, count: header.count },
    groups: header.groups.map((state): GroupPartitionState => ({
      queue,
      partition,
      group: state.group,
      ackFloor: state.ackFloor,
      settledAbove: state.settledAbove,
      attempts: state.attempts.map(({ seq, deliveryCount }) => [seq, deliveryCount] as const),
    })),
  }
}

// ---- Errors across the wire ----

/** The outcome of one request of a batch: an empty error code means success. */
export interface WireOutcome {
  errorCode: string
  errorMessage: string
}

export function outcomeOf(result: PromiseSettledResult<unknown>): WireOutcome {
  if (result.status === 'fulfilled') return { errorCode: '', errorMessage: '' }
  const err: unknown = result.reason
  if (err instanceof QueueError) return { errorCode: err.code, errorMessage: err.message }
  return {
    errorCode: QueueErrorCodes.storageFailure,
    errorMessage: err instanceof Error ? err.message : String(err),
  }
}

/** The QueueError a failed outcome stands for; undefined for a success. */
export function errorOfOutcome(outcome: WireOutcome | undefined): QueueError | undefined {
  if (outcome === undefined) return new QueueError(QueueErrorCodes.storageFailure, 'no outcome from peer')
  if (outcome.errorCode === '') return undefined
  const known = Object.values(QueueErrorCodes).includes(outcome.errorCode as QueueErrorCode)
  return new QueueError(
    known ? (outcome.errorCode as QueueErrorCode) : QueueErrorCodes.storageFailure,
    outcome.errorMessage,
  )
}

const STATUS_OF_CODE: Partial<Record<QueueErrorCode, grpc.status>> = {
  PARTITION_NOT_SERVED: grpc.status.FAILED_PRECONDITION,
  QUEUE_FULL: grpc.status.RESOURCE_EXHAUSTED,
  MESSAGE_TOO_LARGE: grpc.status.INVALID_ARGUMENT,
  INVALID_QUEUE_NAME: grpc.status.INVALID_ARGUMENT,
  INVALID_PARTITION: grpc.status.INVALID_ARGUMENT,
  UNKNOWN_MESSAGE: grpc.status.NOT_FOUND,
  CLOSED: grpc.status.UNAVAILABLE,
}

/** A handler's failure as a gRPC error: QueueErrors keep their code in a trailer. */
export function toServiceError(err: unknown): Partial<grpc.ServiceError> {
  const metadata = new grpc.Metadata()
  if (err instanceof QueueError) {
    metadata.set(ERROR_CODE_TRAILER, err.code)
    return {
      code: STATUS_OF_CODE[err.code] ?? grpc.status.FAILED_PRECONDITION,
      details: err.message,
      metadata,
    }
  }
  return { code: grpc.status.INTERNAL, details: err instanceof Error ? err.message : String(err), metadata }
}

/** What a peer's error means here: its QueueError again, or a transport failure to retry. */
export function fromServiceError(err: unknown): QueueError | PeerUnavailableError {
  const serviceError = err as Partial<grpc.ServiceError>
  const code = serviceError.metadata?.get(ERROR_CODE_TRAILER)[0]
  if (typeof code === 'string' && Object.values(QueueErrorCodes).includes(code as QueueErrorCode)) {
    return new QueueError(code as QueueErrorCode, serviceError.details ?? 'refused by peer')
  }
  return new PeerUnavailableError(serviceError.details ?? String(err), { cause: err })
}

/** The peer could not be reached or did not answer in time: the caller may retry or buffer. */
export class PeerUnavailableError extends Error {
  override readonly name = 'PeerUnavailableError'
}
