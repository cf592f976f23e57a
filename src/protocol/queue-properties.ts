/**
 * MQTT 5 PUBLISH properties <-> the core's {@link MessageProperties}, and the user properties the
 * `$queue/` contract reads (`partition-key`, `message-id`, …) and writes on deliveries.
 */
import type { IPublishPacket, UserProperties } from 'mqtt-packet'
import type { Delivery, MessageProperties } from '../queue/types.js'
import { EdgeError, EdgeErrorCodes } from './queue-reason-codes.js'

/** User property names of the `$queue/` contract (docs/queues.md). */
export const QueueUserProperties = {
  partitionKey: 'partition-key',
  consumerGroup: 'consumer-group',
  messageId: 'message-id',
  groupId: 'group-id',
  partition: 'partition',
  deliveryCount: 'delivery-count',
  delayMs: 'delay-ms',
  reason: 'reason',
} as const

type PublishProperties = NonNullable<IPublishPacket['properties']>

/** mqtt-packet's `{ key: value | value[] }` as ordered pairs (a key may repeat). */
export function userPropertyPairs(userProperties: UserProperties | undefined): Array<[string, string]> {
  const pairs: Array<[string, string]> = []
  if (userProperties === undefined) return pairs
  for (const [key, value] of Object.entries(userProperties)) {
    if (Array.isArray(value)) for (const v of value) pairs.push([key, v])
    else pairs.push([key, value])
  }
  return pairs
}

/**
 * The value of a single-valued user property (`partition-key`, `delay-ms`, `group-id`, `reason`,
 * `consumer-group`), if present. Given more than once it is refused ({@link EdgeError}
 * `REPEATED_PROPERTY`) rather than silently taking the first value.
 */
export function singleUserProperty(
  userProperties: UserProperties | undefined,
  key: string,
): string | undefined {
  const value = userProperties?.[key]
  if (!Array.isArray(value)) return value
  if (value.length === 1) return value[0]
  throw new EdgeError(
    EdgeErrorCodes.repeatedProperty,
    `user property "${key}" is given ${value.length} times; it takes one value`,
  )
}

/** `0` or a decimal integer without leading zeros, sign, exponent, spaces or hex. */
const NON_NEGATIVE_INTEGER = /^(?:0|[1-9][0-9]*)$/

/**
 * A single-valued user property holding a non-negative integer (`delay-ms`): exactly
 * `0|[1-9][0-9]*`, at most 2^53-1 (`Number.MAX_SAFE_INTEGER`). `''`, `'1e3'`, `'0x10'`, `' 5'`, `'05'`
 * are refused ({@link EdgeError} `INVALID_PROPERTY`), not read as numbers.
 */
export function nonNegativeIntegerProperty(
  userProperties: UserProperties | undefined,
  key: string,
): number | undefined {
  const text = singleUserProperty(userProperties, key)
  if (text === undefined) return undefined
  const value = Number(text)
  if (!NON_NEGATIVE_INTEGER.test(text) || !Number.isSafeInteger(value)) {
    const shown = text.length > 40 ? `${text.slice(0, 39)}…` : text
    throw new EdgeError(
      EdgeErrorCodes.invalidProperty,
      `user property "${key}" must be a non-negative integer (0|[1-9][0-9]*, at most ${Number.MAX_SAFE_INTEGER}), got "${shown}"`,
    )
  }
  return value
}

/** A message id as the core hands them out: `<partition>-<seq>`, both non-negative integers. */
const MESSAGE_ID = /^(?:0|[1-9][0-9]*)-(?:0|[1-9][0-9]*)$/

/** True when `text` has the form of a message id (`<partition>-<seq>`). */
export function isMessageIdForm(text: string): boolean {
  return MESSAGE_ID.test(text)
}

/** Every value of user property `key`, in the order sent (MQTT 5 allows a key to repeat, §3.3.2.3.7). */
export function userPropertyValues(
  userProperties: UserProperties | undefined,
  key: string,
): readonly string[] {
  const value = userProperties?.[key]
  if (value === undefined) return []
  return Array.isArray(value) ? value : [value]
}

/** What a queue keeps of a publisher's properties (Message Expiry is carried separately). */
export function messagePropertiesOf(properties: PublishProperties | undefined): MessageProperties {
  const kept: MessageProperties = {}
  if (properties === undefined) return kept
  if (properties.contentType !== undefined) kept.contentType = properties.contentType
  if (properties.responseTopic !== undefined) kept.responseTopic = properties.responseTopic
  if (properties.correlationData !== undefined) kept.correlationData = properties.correlationData
  if (properties.payloadFormatIndicator !== undefined) {
    kept.payloadFormatIndicator = properties.payloadFormatIndicator
  }
  const pairs = userPropertyPairs(properties.userProperties)
  if (pairs.length > 0) kept.userProperties = pairs
  return kept
}

/** The user properties every delivery carries; a publisher's own values under these names are dropped. */
const DELIVERY_USER_PROPERTIES: ReadonlySet<string> = new Set([
  QueueUserProperties.messageId,
  QueueUserProperties.groupId,
  QueueUserProperties.partition,
  QueueUserProperties.deliveryCount,
])

/** Adds a pair in mqtt-packet's form: a repeated key holds an array of its values, in order. */
function addUserProperty(userProperties: UserProperties, key: string, value: string): void {
  const existing = userProperties[key]
  if (existing === undefined) userProperties[key] = value
  else if (Array.isArray(existing)) existing.push(value)
  else userProperties[key] = [existing, value]
}

/**
 * The properties of the PUBLISH that delivers `delivery`: the publisher's properties, the user
 * properties `message-id`, `group-id`, `partition`, `delivery-count` (replacing any the publisher set
 * under those names), and the remaining lifetime as Message Expiry Interval ([MQTT-3.3.2-6]).
 */
export function deliveryProperties(delivery: Delivery, nowMs: number): PublishProperties {
  const { message } = delivery
  const stored = message.properties
  const properties: PublishProperties = {}
  if (stored.contentType !== undefined) properties.contentType = stored.contentType
  if (stored.responseTopic !== undefined) properties.responseTopic = stored.responseTopic
  if (stored.correlationData !== undefined) properties.correlationData = Buffer.from(stored.correlationData)
  if (stored.payloadFormatIndicator !== undefined) {
    properties.payloadFormatIndicator = stored.payloadFormatIndicator
  }
  // Built once per delivery: no intermediate arrays, the publisher's pairs first, then ours.
  const userProperties: UserProperties = {}
  if (stored.userProperties !== undefined) {
    for (const [key, value] of stored.userProperties) {
      if (!DELIVERY_USER_PROPERTIES.has(key)) addUserProperty(userProperties, key, value)
    }
  }
  addUserProperty(userProperties, QueueUserProperties.messageId, message.id)
  addUserProperty(userProperties, QueueUserProperties.groupId, delivery.group)
  addUserProperty(userProperties, QueueUserProperties.partition, String(message.partition))
  addUserProperty(userProperties, QueueUserProperties.deliveryCount, String(delivery.deliveryCount))
  properties.userProperties = userProperties
  if (message.expiresAtMs !== undefined) {
    // At least 1 s: 0 would mean "no expiry" to some clients; the core does not hand out expired messages.
    properties.messageExpiryInterval = Math.max(1, Math.ceil((message.expiresAtMs - nowMs) / 1000))
  }
  return properties
}
