/**
 * Helpers for the `$queue/` integration tests (test/integration/queue-*.test.ts): config for a
 * declared queue, joining a consumer group, settling a delivery, and reading a PUBACK's reason code
 * and Reason String from mqtt.js.
 */
import type { IClientPublishOptions, IPublishPacket, MqttClient } from 'mqtt'
import type { RawConfig } from '../../src/config/index.js'
import type { QueueSettingsOverrides } from '../../src/queue/settings.js'
import { TIMEOUT_MS, uniqueId, type Received } from './server.js'
import { within } from './wait.js'

/** A unique queue name, e.g. `it/orders-1a2b3c4d`. */
export function uniqueQueue(prefix = 'q'): string {
  return `it/${uniqueId(prefix)}`
}

/** `raw` config for {@link startTestServer} that declares `queue` with `settings`. */
export function declareQueue(queue: string, settings: QueueSettingsOverrides): RawConfig {
  return { queues: { declared: { [queue]: settings } } }
}

/** Joins `queue` in `group` (the `consumer-group` user property), or in the client-id group. */
export async function subscribeQueue(client: MqttClient, queue: string, group?: string): Promise<void> {
  const granted = await client.subscribeAsync(`$queue/${queue}`, {
    qos: 1,
    ...(group === undefined ? {} : { properties: { userProperties: { 'consumer-group': group } } }),
  })
  const code = granted[0]?.qos
  if (code === undefined || code >= 0x80) {
    throw new Error(`SUBSCRIBE $queue/${queue} refused with 0x${(code ?? 0).toString(16)}`)
  }
}

/** A PUBACK's reason code (0 = success) and Reason String. */
export interface PublishOutcome {
  reasonCode: number
  reasonString: string | undefined
}

/** Publishes with QoS 1 and resolves with the PUBACK's reason code, failures included. */
export function publishOutcome(
  client: MqttClient,
  topic: string,
  payload: string | Buffer,
  properties: IClientPublishOptions['properties'] = {},
): Promise<PublishOutcome> {
  return within(
    new Promise<PublishOutcome>((resolve) => {
      client.publish(topic, payload, { qos: 1, properties }, (err, packet) => {
        const ack = packet as { reasonCode?: number; properties?: { reasonString?: string } } | undefined
        const code = (err as { code?: number } | undefined)?.code
        resolve({ reasonCode: ack?.reasonCode ?? code ?? 0, reasonString: ack?.properties?.reasonString })
      })
    }),
    TIMEOUT_MS,
    `PUBACK for ${topic}`,
  )
}

export type SettleVerb = '$ack' | '$nack' | '$reject' | '$extend'

/** Settles message `messageId` of `queue` with `verb`; extra user properties (`delay-ms`, `reason`, …). */
export function settle(
  client: MqttClient,
  queue: string,
  verb: SettleVerb,
  messageId: string,
  extra: Record<string, string> = {},
): Promise<PublishOutcome> {
  return publishOutcome(client, `$queue/${queue}/${verb}`, '', {
    userProperties: { 'message-id': messageId, ...extra },
  })
}

/** Like {@link settle}, but fails unless the PUBACK is a success. */
export async function settleOk(
  client: MqttClient,
  queue: string,
  verb: SettleVerb,
  messageId: string,
  extra: Record<string, string> = {},
): Promise<void> {
  const outcome = await settle(client, queue, verb, messageId, extra)
  if (outcome.reasonCode !== 0) {
    throw new Error(
      `${verb} ${messageId} refused: 0x${outcome.reasonCode.toString(16)} ${outcome.reasonString ?? ''}`,
    )
  }
}

/** Every value of user property `key` (mqtt-packet gives repeats as an array). */
export function userValues(packet: IPublishPacket, key: string): string[] {
  const value = packet.properties?.userProperties?.[key]
  if (value === undefined) return []
  return Array.isArray(value) ? value : [value]
}

/** The single value of user property `key`; fails when it is missing or repeated. */
export function userValue(packet: IPublishPacket, key: string): string {
  const values = userValues(packet, key)
  if (values.length !== 1 || values[0] === undefined) {
    throw new Error(`expected one user property "${key}", got ${JSON.stringify(values)}`)
  }
  return values[0]
}

/** The `message-id` of a delivery. */
export function messageIdOf(received: Received): string {
  return userValue(received.packet, 'message-id')
}

/** The `delivery-count` of a delivery, as a number. */
export function deliveryCountOf(received: Received): number {
  return Number(userValue(received.packet, 'delivery-count'))
}
