/**
 * The message-ids a `$queue/<name>/$ack|$nack|$reject|$extend` PUBLISH names, and the answer to a batch
 * settle in which some ids failed. Pure functions of the packet, tested through the adapter.
 */
import type { PublishPacket } from 'aedes'
import { QueueUserProperties, userPropertyValues, isMessageIdForm } from './queue-properties.js'
import {
  EdgeError,
  EdgeErrorCodes,
  MqttReasonCodes,
  publishReasonCode,
  PublishRefusedError,
} from './queue-reason-codes.js'

/** Most message-ids one settle may carry (repeated user property `message-id`), docs/queue-protocol.md. */
export const MAX_SETTLE_MESSAGE_IDS = 1000
/** Longest Reason String of a partly refused batch settle, in characters. */
const MAX_BATCH_REASON_CHARS = 512
/** Failed ids named in the log line of a partly refused batch settle. */
export const LOGGED_FAILED_IDS = 20

export interface SettleFailure {
  readonly messageId: string
  readonly err: unknown
}

/**
 * The message-ids of a settle: every `message-id` user property in order (MQTT 5 allows repeats), or,
 * without one, the payload (MQTT 3.1.1 has no user properties). Refuses, before anything is settled, an
 * empty list, more than {@link MAX_SETTLE_MESSAGE_IDS} ids, and an id given twice (its second settle
 * could only fail, which would make a partial success out of a mistake).
 */
export function settleMessageIds(packet: PublishPacket): readonly string[] {
  const fromProperties = userPropertyValues(packet.properties?.userProperties, QueueUserProperties.messageId)
  if (fromProperties.length === 0) {
    const fromPayload = payloadText(packet).trim()
    if (fromPayload === '') {
      throw new PublishRefusedError(
        MqttReasonCodes.unspecifiedError,
        `settle on ${packet.topic} needs user property "message-id" (or the id as payload)`,
      )
    }
    if (!isMessageIdForm(fromPayload)) {
      throw PublishRefusedError.from(
        new EdgeError(
          EdgeErrorCodes.invalidPayload,
          `the payload of a settle without user property "message-id" must be one message id (<partition>-<seq>), got "${truncate(fromPayload, 64)}"`,
        ),
      )
    }
    return [fromPayload]
  }
  if (fromProperties.length > MAX_SETTLE_MESSAGE_IDS) {
    throw PublishRefusedError.from(
      new EdgeError(
        EdgeErrorCodes.invalidMessageIds,
        `settle carries ${fromProperties.length} message-ids, at most ${MAX_SETTLE_MESSAGE_IDS} per settle; nothing was settled`,
      ),
    )
  }
  if (fromProperties.length === 1) return fromProperties
  const seen = new Set<string>()
  for (const id of fromProperties) {
    if (seen.has(id)) {
      throw PublishRefusedError.from(
        new EdgeError(
          EdgeErrorCodes.invalidMessageIds,
          `message-id "${truncate(id, 64)}" is given twice in one settle; nothing was settled`,
        ),
      )
    }
    seen.add(id)
  }
  return fromProperties
}

/**
 * The PUBACK of a batch settle in which some ids failed: the reason code of the first failure (in the
 * order given) and a Reason String saying how many were settled and which ids failed and why, cut at
 * {@link MAX_BATCH_REASON_CHARS} characters.
 */
export function batchRefusal(total: number, failures: readonly SettleFailure[]): PublishRefusedError {
  const first = failures[0]
  let text = `${total - failures.length} of ${total} message-ids settled; failed:`
  let named = 0
  for (const { messageId, err } of failures) {
    const entry = ` ${truncate(messageId, 64)} (${truncate(err instanceof Error ? err.message : String(err), 120)});`
    const rest = failures.length - named - 1
    const tail = rest > 0 ? ` and ${rest} more` : ''
    if (text.length + entry.length + tail.length > MAX_BATCH_REASON_CHARS) break
    text += entry
    named++
  }
  if (named < failures.length) text += ` and ${failures.length - named} more`
  else text = text.slice(0, -1)
  return new PublishRefusedError(publishReasonCode(first?.err), text, { cause: first?.err })
}

function truncate(text: string, maxChars: number): string {
  return text.length <= maxChars ? text : `${text.slice(0, maxChars - 1)}…`
}

function payloadText(packet: PublishPacket): string {
  return typeof packet.payload === 'string' ? packet.payload : packet.payload.toString('utf8')
}
