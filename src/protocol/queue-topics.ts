/**
 * The `$queue/` topic grammar of the MQTT edge:
 *
 * - `$queue/<name>`: publish a message / subscribe as a consumer (`<name>` = one or more levels);
 * - `$queue/<name>/$ack|$nack|$reject|$extend`: settle a delivery (message id in user property
 *   `message-id`, or in the payload for MQTT 3.1.1 clients).
 *
 * Whether `<name>` itself is valid (no empty level, no wildcard, no other `$` level) is the core's call
 * (it rejects with `INVALID_QUEUE_NAME`), so the rule lives in one place.
 */
import { SettleActions, type SettleAction } from '../queue/types.js'

export const QUEUE_PREFIX = '$queue/'

/** The last topic level that turns a publish into a settle, e.g. `$queue/jobs/$ack`. */
const SETTLE_LEVELS: Readonly<Record<string, SettleAction>> = {
  $ack: SettleActions.ack,
  $nack: SettleActions.nack,
  $reject: SettleActions.reject,
  $extend: SettleActions.extend,
}

export type QueueTopic =
  | { readonly kind: 'message'; readonly queue: string }
  | { readonly kind: 'settle'; readonly queue: string; readonly action: SettleAction }

/** True for any topic (or filter) in the `$queue/` namespace, which never goes through mqemitter. */
export function isQueueTopic(topic: string): boolean {
  return topic.startsWith(QUEUE_PREFIX)
}

/** Classifies a PUBLISH topic of the `$queue/` namespace; `undefined` for any other topic. */
export function parseQueueTopic(topic: string): QueueTopic | undefined {
  if (!isQueueTopic(topic)) return undefined
  const name = topic.slice(QUEUE_PREFIX.length)
  const slash = name.lastIndexOf('/')
  const action = slash >= 0 ? SETTLE_LEVELS[name.slice(slash + 1)] : undefined
  if (action !== undefined) return { kind: 'settle', queue: name.slice(0, slash), action }
  return { kind: 'message', queue: name }
}

/**
 * The consumer group of a subscriber that did not send the `consumer-group` user property (always the
 * case for MQTT 3.1.1): its client id up to the first `-`, so `worker-1` and `worker-2` share the group
 * `worker`. An id without `-` (or starting with one) is its own group.
 */
export function defaultConsumerGroup(clientId: string): string {
  const dash = clientId.indexOf('-')
  return dash > 0 ? clientId.slice(0, dash) : clientId
}
