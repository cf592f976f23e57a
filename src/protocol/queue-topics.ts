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
import { DEAD_LETTER_PREFIX } from '../queue/manager.js'

export const QUEUE_PREFIX = '$queue/'

/**
 * Limits on `<name>` in `$queue/<name>` (docs/queue-protocol.md), checked at the edge before anything
 * else sees the topic. Far below what aedes' topic router takes (100 levels, qlobber's `max_words`),
 * so a queue topic, its settle topics and its dead-letter queue `dlq/<name>` always fit.
 */
export const QueueNameLimits = {
  /** Topic levels of `<name>`; the dead-letter queue `dlq/<name>` may have one more. */
  maxLevels: 32,
  /** UTF-8 bytes of `<name>`; `dlq/<name>` may have 4 more. */
  maxBytes: 1024,
} as const

/** Why `name` (a queue name from a `$queue/` topic) is over {@link QueueNameLimits}, or undefined. */
export function queueNameLimitProblem(name: string): string | undefined {
  const own = name.startsWith(DEAD_LETTER_PREFIX) ? name.slice(DEAD_LETTER_PREFIX.length) : name
  const bytes = Buffer.byteLength(own)
  if (bytes > QueueNameLimits.maxBytes) {
    return `queue name has ${bytes} bytes, at most ${QueueNameLimits.maxBytes} allowed`
  }
  let levels = 1
  for (let i = 0; i < own.length; i++) if (own.charCodeAt(i) === 0x2f) levels++
  if (levels > QueueNameLimits.maxLevels) {
    return `queue name has ${levels} levels, at most ${QueueNameLimits.maxLevels} allowed`
  }
  return undefined
}

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
