/**
 * One MQTT connection seen by the queue core as a {@link ConsumerConnection}: it writes deliveries as
 * PUBLISH packets straight to the client's socket (QoS 1, or QoS 0 on a QoS 0 subscription) and tracks
 * their packet ids until the client's PUBACK.
 *
 * MQTT 5 limits of the client apply to deliveries as to aedes' own PUBLISH packets:
 * - Receive Maximum [MQTT-3.3.4-9]: QoS 1 deliveries go through the client's outbound window
 *   (`client.outbound`, aedes patch 027), which plain QoS 1/2 deliveries share; a delivery that finds
 *   it full waits there in order (its delivery timeout runs in the core meanwhile);
 * - Maximum Packet Size [MQTT-3.1.2-25]: a delivery that would be larger is not sent and is settled
 *   `reject` (dead-lettered with reason `packet-too-large`): no consumer of this client can receive it,
 *   and retrying it to the same partition owner would only loop until `maxDeliveries`;
 * - Topic Alias Maximum [MQTT-3.3.2-11]: the topic is replaced by an alias when the client allows
 *   them (`client.outboundTopicAlias`, aedes patch 029).
 *
 * Deliveries do not go through aedes (`client.publish` / `deliverQoS`) on purpose:
 * - aedes would route them through mqemitter, whose drain loop overflowed the stack under queue load;
 * - for a persistent session aedes would store them (`outgoingUpdate`) and redeliver them itself on
 *   reconnect, while the core already redelivers every unsettled message (with a fresh delivery count).
 *
 * Packet ids come from the client's own counter (`client._nextId`, the one aedes' QoSPacket uses), so
 * ids handed to our deliveries and to aedes' own QoS 1/2 deliveries on plain topics are distinct as long
 * as fewer than 65535 ids are allocated while one is in flight; ids still in flight here are skipped.
 */
import mqttPacket, { type IPublishPacket } from 'mqtt-packet'
import type { Client } from 'aedes'
import { SettleActions, type ConsumerConnection, type Delivery, type SettleInput } from '../queue/types.js'
import type { QueueLogger } from '../queue/logger.js'
import { QUEUE_PREFIX } from './queue-topics.js'
import { deliveryProperties } from './queue-properties.js'

const MAX_PACKET_ID = 65535

/** The aedes client internals this adapter relies on (lib/client.js, lib/handlers/connect.js). */
export interface AedesClientInternals {
  /** Next packet id aedes will give an outgoing QoS 1/2 PUBLISH (1..65535, wraps). */
  _nextId: number
  /** True once CONNACK was written; a SUBSCRIBE seen before that is aedes restoring a session. */
  connackSent: boolean
  /** The client's subscriptions by filter, with their granted QoS (set when aedes adds them). */
  subscriptions: Record<string, { qos: number } | undefined>
  /** Outbound Receive Maximum window shared with aedes' QoS 1/2 deliveries (patch 027). */
  outbound?: {
    submit(messageId: number, send: () => void): boolean
    has(messageId: number): boolean
  }
  /** Outbound topic alias for `topic` (patch 029): `topic` is '' when the alias is already known. */
  outboundTopicAlias?(topic: string): { topic: string; alias?: number }
}

/** Settles a delivery on the consumer's behalf (QoS 0 on 3.1.1, too large); errors are logged there. */
export type SettleForConsumer = (consumer: MqttQueueConsumer, input: SettleInput) => void

/** A delivery written to the client and not yet PUBACKed. */
export interface InflightDelivery {
  readonly queue: string
  readonly messageId: string
  readonly group: string
  /** Settled explicitly (a 3.1.1 `$nack` etc.): the PUBACK then only frees the packet id. */
  settled?: boolean
}

export class MqttQueueConsumer implements ConsumerConnection {
  readonly clientId: string
  readonly receiveMaximum: number
  /** Set once the client subscribed with a persistent session (the core stored the membership). */
  persistentSession = false
  /** Set once the core knows this consumer (subscribed or resumed), so it must hear of the disconnect. */
  joined = false
  /**
   * The session start (`resumeSession` / `endSession`) every later queue operation of this client waits
   * for, so that e.g. ending an old session cannot remove a membership the new connection just made.
   */
  sessionReady: Promise<void> = Promise.resolve()

  readonly #client: Client & AedesClientInternals
  readonly #logger: QueueLogger
  readonly #nodeId: string
  readonly #now: () => number
  readonly #inflight = new Map<number, InflightDelivery>()
  readonly #grantedQos = new Map<string, number>()
  readonly #settle: SettleForConsumer

  constructor(
    client: Client,
    logger: QueueLogger,
    nodeId: string,
    settle: SettleForConsumer,
    now: () => number = Date.now,
  ) {
    this.#client = client as Client & AedesClientInternals
    this.#settle = settle
    this.clientId = client.id
    // aedes puts 65535, the default of MQTT 5 §3.1.2.11.3, when CONNECT has none (so for 3.1.1 too).
    this.receiveMaximum = client.receiveMaximum
    this.#logger = logger
    this.#nodeId = nodeId
    this.#now = now
  }

  /** MQTT 3.1.1 consumers cannot send user properties, so their PUBACK is the ack. */
  get settlesWithPuback(): boolean {
    return this.#client.version !== 5
  }

  /** The QoS granted to this client's subscription of `queue` (SUBSCRIBE seen before aedes adds it). */
  granted(queue: string, qos: number): void {
    this.#grantedQos.set(queue, qos)
  }

  /** QoS of deliveries from `queue`: the granted QoS, at most 1 (queue messages are stored, not QoS 2). */
  #qosFor(queue: string): 0 | 1 {
    const qos = this.#grantedQos.get(queue) ?? this.#client.subscriptions[QUEUE_PREFIX + queue]?.qos ?? 1
    return qos === 0 ? 0 : 1
  }

  get inflightCount(): number {
    return this.#inflight.size
  }

  /** Log fields of a delivery; built only when something is logged. */
  #fields(delivery: Delivery) {
    const { message } = delivery
    return {
      queue: message.queue,
      partition: message.partition,
      group: delivery.group,
      messageId: message.id,
      clientId: this.clientId,
      node: this.#nodeId,
    }
  }

  deliver(delivery: Delivery): void {
    const { message } = delivery
    const client = this.#client
    // aedes sets `connected` only after flushing its own offline queue; CONNACK is out before that.
    if (client.closed || !(client.connected || client.connackSent)) {
      // The core redelivers it: it learns of the disconnect through QueueService.disconnect().
      this.#logger.warn(this.#fields(delivery), 'queue delivery dropped: client is not connected')
      return
    }
    const qos = this.#qosFor(message.queue)
    let packetId: number | undefined
    if (qos > 0) {
      packetId = this.#allocatePacketId()
      if (packetId === undefined) {
        this.#logger.error(
          this.#fields(delivery),
          'queue delivery dropped: no free packet id (receive maximum exceeded?)',
        )
        return
      }
    }
    const version = client.version === 5 ? 5 : client.version === 3 ? 3 : 4
    const topic = QUEUE_PREFIX + message.queue
    const packet: IPublishPacket = {
      cmd: 'publish',
      topic,
      payload: asBuffer(message.payload),
      qos,
      // A redelivery is a new PUBLISH with a new packet id, not a retransmission ([MQTT-3.3.1-1]); the
      // redelivery shows in `delivery-count`.
      dup: false,
      retain: false,
    }
    if (packetId !== undefined) packet.messageId = packetId
    if (version === 5) packet.properties = deliveryProperties(delivery, this.#now())
    let bytes: Buffer
    try {
      bytes = mqttPacket.generate(packet, { protocolVersion: version })
    } catch (err) {
      this.#logger.error({ ...this.#fields(delivery), err }, 'queue delivery dropped: cannot encode PUBLISH')
      return
    }
    // [MQTT-3.1.2-24] [MQTT-3.1.2-25] Never send a packet larger than the client's Maximum Packet Size
    // (measured with the full topic: an alias only makes it smaller). Nobody on this connection can
    // ever take it, so it is dead-lettered rather than retried.
    const max = client.maximumPacketSize
    if (max !== undefined && bytes.length > max) {
      this.#logger.warn(
        { ...this.#fields(delivery), bytes: bytes.length, max },
        'queue delivery dead-lettered: exceeds client Maximum Packet Size',
      )
      this.#settleLater({
        queue: message.queue,
        messageId: message.id,
        group: delivery.group,
        action: SettleActions.reject,
        reason: `packet-too-large: ${bytes.length} bytes exceed the consumer's Maximum Packet Size of ${max}`,
      })
      return
    }
    if (packetId === undefined) {
      client.conn.write(this.#withTopicAlias(packet, bytes, version))
      // A 3.1.1 consumer cannot settle a QoS 0 delivery (no PUBACK, no user properties): at most once,
      // as it asked. A v5 consumer settles it with $ack / $nack / $reject like any other.
      if (this.settlesWithPuback) {
        this.#settleLater({
          queue: message.queue,
          messageId: message.id,
          group: delivery.group,
          action: SettleActions.ack,
        })
      }
      return
    }
    this.#inflight.set(packetId, { queue: message.queue, messageId: message.id, group: delivery.group })
    const send = () => {
      if (!client.closed) client.conn.write(this.#withTopicAlias(packet, bytes, version))
    }
    if (client.outbound === undefined) send()
    else client.outbound.submit(packetId, send)
  }

  /**
   * [MQTT-3.3.2-11] The topic alias is chosen when the bytes go out (a delivery may wait in the
   * window), so that an alias always follows the PUBLISH that set it up on this connection.
   */
  #withTopicAlias(packet: IPublishPacket, bytes: Buffer, version: 3 | 4 | 5): Buffer {
    const aliased = version === 5 ? this.#client.outboundTopicAlias?.(packet.topic) : undefined
    if (aliased?.alias === undefined) return bytes
    return mqttPacket.generate(
      { ...packet, topic: aliased.topic, properties: { ...packet.properties, topicAlias: aliased.alias } },
      { protocolVersion: version },
    )
  }

  #settleLater(input: SettleInput): void {
    // Not from inside deliver(): the core is still recording this delivery.
    setImmediate(() => this.#settle(this, input))
  }

  /** The client PUBACKed `packetId`: returns the delivery it belonged to, if it was one of ours. */
  acknowledged(packetId: number | undefined): InflightDelivery | undefined {
    if (packetId === undefined) return undefined
    const inflight = this.#inflight.get(packetId)
    if (inflight !== undefined) this.#inflight.delete(packetId)
    return inflight
  }

  /** A settle publish names this delivery: its PUBACK must not settle it again as acked. */
  settledExplicitly(queue: string, messageId: string): void {
    for (const inflight of this.#inflight.values()) {
      if (inflight.queue === queue && inflight.messageId === messageId) inflight.settled = true
    }
  }

  /** Forgets every in-flight packet id (the connection is gone; the core returns the deliveries). */
  clear(): void {
    this.#inflight.clear()
  }

  #allocatePacketId(): number | undefined {
    const client = this.#client
    for (let tries = 0; tries < MAX_PACKET_ID; tries++) {
      const id = client._nextId
      // Same sequence as aedes' QoSPacket, so aedes' next id is one we did not take.
      client._nextId = id >= MAX_PACKET_ID ? 1 : id + 1
      if (!this.#inflight.has(id) && client.outbound?.has(id) !== true) return id
    }
    return undefined
  }
}

/** The payload as a Buffer for mqtt-packet, which copies it: a view of the same bytes when not one yet. */
function asBuffer(payload: Uint8Array): Buffer {
  return Buffer.isBuffer(payload)
    ? payload
    : Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength)
}
