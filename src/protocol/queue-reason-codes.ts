/**
 * The one place where queue errors become MQTT 5 reason codes. The core raises {@link QueueError}s
 * with stable codes and never speaks MQTT; the edge itself raises {@link EdgeError}s for what is wrong
 * with the packet (a user property or payload that breaks its grammar, a name over the limits). The
 * `$queue/` adapter asks this module what to put in the PUBACK/PUBREC (publish and settle) or SUBACK
 * (subscribe).
 */
import { QueueError, type QueueErrorCode } from '../queue/errors.js'

/** The MQTT 5 reason codes the queue adapter sends ([MQTT-2.4]). */
export const MqttReasonCodes = {
  success: 0x00,
  unspecifiedError: 0x80,
  implementationSpecificError: 0x83,
  notAuthorized: 0x87,
  topicFilterInvalid: 0x8f,
  topicNameInvalid: 0x90,
  quotaExceeded: 0x97,
  payloadFormatInvalid: 0x99,
} as const
export type MqttReasonCode = (typeof MqttReasonCodes)[keyof typeof MqttReasonCodes]

const R = MqttReasonCodes

/** What the MQTT edge refuses before the core sees the request (docs/queue-protocol.md). */
export const EdgeErrorCodes = {
  /** A user property value breaks its grammar (e.g. `delay-ms` not a non-negative integer). */
  invalidProperty: 'INVALID_PROPERTY',
  /** A single-valued user property (`partition-key`, `delay-ms`, `group-id`, …) given more than once. */
  repeatedProperty: 'REPEATED_PROPERTY',
  /** A settle names more message-ids than one settle may carry, or the same id twice. */
  invalidMessageIds: 'INVALID_MESSAGE_IDS',
  /** The payload is the culprit: a settle whose payload (the 3.1.1 form) is not a message id. */
  invalidPayload: 'INVALID_PAYLOAD',
  /** A `$queue/` name over the documented limits (levels, bytes). */
  queueNameTooLong: 'QUEUE_NAME_TOO_LONG',
} as const
export type EdgeErrorCode = (typeof EdgeErrorCodes)[keyof typeof EdgeErrorCodes]

/** A refusal decided by the edge; like {@link QueueError}, a stable code and a message for the Reason String. */
export class EdgeError extends Error {
  override readonly name = 'EdgeError'
  constructor(
    readonly code: EdgeErrorCode,
    message: string,
  ) {
    super(message)
  }
}

/**
 * PUBACK/PUBREC for edge refusals. 0x83 Implementation specific error ("valid, but not accepted") for a
 * user property that breaks its grammar, 0x99 Payload format invalid where the payload is the culprit.
 */
const PUBLISH_EDGE_REASON_CODES: Record<EdgeErrorCode, MqttReasonCode> = {
  INVALID_PROPERTY: R.implementationSpecificError,
  REPEATED_PROPERTY: R.implementationSpecificError,
  INVALID_MESSAGE_IDS: R.implementationSpecificError,
  INVALID_PAYLOAD: R.payloadFormatInvalid,
  QUEUE_NAME_TOO_LONG: R.topicNameInvalid,
}

/** SUBACK for edge refusals ([MQTT-3.9.3]: 0x99 is not a SUBACK code; SUBSCRIBE has no payload to blame). */
const SUBSCRIBE_EDGE_REASON_CODES: Record<EdgeErrorCode, MqttReasonCode> = {
  INVALID_PROPERTY: R.implementationSpecificError,
  REPEATED_PROPERTY: R.implementationSpecificError,
  INVALID_MESSAGE_IDS: R.implementationSpecificError,
  INVALID_PAYLOAD: R.implementationSpecificError,
  QUEUE_NAME_TOO_LONG: R.topicFilterInvalid,
}

/**
 * PUBACK/PUBREC for a `$queue/<name>` publish or a `$queue/<name>/$ack|$nack|$reject|$extend` settle.
 * Only codes that [MQTT-3.4.2.1] allows in a PUBACK appear here. `Record<QueueErrorCode, …>` makes a
 * new core error code a compile error until it is mapped.
 */
const PUBLISH_REASON_CODES: Record<QueueErrorCode, MqttReasonCode> = {
  INVALID_QUEUE_NAME: R.topicNameInvalid,
  MESSAGE_TOO_LARGE: R.quotaExceeded,
  QUEUE_FULL: R.quotaExceeded,
  UNKNOWN_MESSAGE: R.unspecifiedError,
  AMBIGUOUS_GROUP: R.unspecifiedError,
  STORAGE_FAILURE: R.unspecifiedError,
  // 0x88 Server unavailable is not a PUBACK code; the publish simply failed.
  CLOSED: R.unspecifiedError,
  // Admin-API errors: not raised on the MQTT path, mapped for completeness.
  INVALID_GROUP_NAME: R.unspecifiedError,
  GROUP_REQUIRED: R.unspecifiedError,
  QUEUE_NOT_FOUND: R.unspecifiedError,
  GROUP_NOT_FOUND: R.unspecifiedError,
  QUEUE_EXISTS: R.unspecifiedError,
  QUEUE_IN_USE: R.unspecifiedError,
  QUEUE_NOT_EMPTY: R.unspecifiedError,
  INVALID_SETTINGS: R.unspecifiedError,
  INVALID_PARTITION: R.unspecifiedError,
  // Cluster: the routing layer buffers publishes for partitions in motion; settles get this.
  PARTITION_NOT_SERVED: R.implementationSpecificError,
  NO_LOCAL_PARTITIONS: R.implementationSpecificError,
}

/** SUBACK for `SUBSCRIBE $queue/<name>` ([MQTT-3.9.3]). */
const SUBSCRIBE_REASON_CODES: Record<QueueErrorCode, MqttReasonCode> = {
  INVALID_QUEUE_NAME: R.topicFilterInvalid,
  MESSAGE_TOO_LARGE: R.unspecifiedError,
  QUEUE_FULL: R.quotaExceeded,
  UNKNOWN_MESSAGE: R.unspecifiedError,
  AMBIGUOUS_GROUP: R.unspecifiedError,
  STORAGE_FAILURE: R.unspecifiedError,
  CLOSED: R.unspecifiedError,
  // A `consumer-group` starting with `$` is reserved (e.g. `$pending` on dead-letter queues).
  INVALID_GROUP_NAME: R.topicFilterInvalid,
  // queues.implicitGroups false: the Reason String asks for the consumer-group user property.
  GROUP_REQUIRED: R.implementationSpecificError,
  QUEUE_NOT_FOUND: R.unspecifiedError,
  GROUP_NOT_FOUND: R.unspecifiedError,
  QUEUE_EXISTS: R.unspecifiedError,
  QUEUE_IN_USE: R.unspecifiedError,
  QUEUE_NOT_EMPTY: R.unspecifiedError,
  INVALID_SETTINGS: R.unspecifiedError,
  INVALID_PARTITION: R.unspecifiedError,
  PARTITION_NOT_SERVED: R.implementationSpecificError,
  // Direct routing: the Reason String names the nodes that own the queue's partitions.
  NO_LOCAL_PARTITIONS: R.implementationSpecificError,
}

/** Reason code for a failed `$queue/` publish or settle; other errors are 0x80. */
export function publishReasonCode(err: unknown): MqttReasonCode {
  if (err instanceof QueueError) return PUBLISH_REASON_CODES[err.code]
  if (err instanceof EdgeError) return PUBLISH_EDGE_REASON_CODES[err.code]
  return R.unspecifiedError
}

/** Reason code for a failed `$queue/` subscription; other errors are 0x80. */
export function subscribeReasonCode(err: unknown): MqttReasonCode {
  if (err instanceof QueueError) return SUBSCRIBE_REASON_CODES[err.code]
  if (err instanceof EdgeError) return SUBSCRIBE_EDGE_REASON_CODES[err.code]
  return R.unspecifiedError
}

/**
 * The error an aedes `authorizePublish` hook hands back to refuse a publish: aedes (with patch 020)
 * answers a v5 client with a PUBACK/PUBREC carrying {@link reasonCode} and the message as Reason
 * String, and keeps the connection; a 3.1.1 client, which has no reason codes, is disconnected.
 */
export class PublishRefusedError extends Error {
  override readonly name = 'PublishRefusedError'
  constructor(
    readonly reasonCode: MqttReasonCode,
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options)
  }

  /** Wraps whatever the core threw; the Reason String is the core's message, which names the cause. */
  static from(err: unknown): PublishRefusedError {
    const message = err instanceof Error ? err.message : String(err)
    return new PublishRefusedError(publishReasonCode(err), message, { cause: err })
  }
}
