/**
 * The `$queue/` MQTT adapter: turns PUBLISH / SUBSCRIBE / PUBACK / UNSUBSCRIBE and connection events of
 * aedes into calls on the queue core ({@link QueueService}), and the core's deliveries into PUBLISH
 * packets (see queue-consumer.ts).
 *
 * Queue traffic never enters aedes' routing (`broker.publish` → mqemitter → subscribers):
 * - a `$queue/` PUBLISH is stored (or settled) inside `authorizePublish`, because aedes writes the
 *   PUBACK of a QoS 1 publish *before* routing it; the PUBACK therefore means "durably stored". aedes
 *   then calls `broker.publish`, which this adapter short-circuits for `$queue/` topics;
 * - a `$queue/` SUBSCRIBE gets its SUBACK from aedes as usual, but `broker.subscribe` is short-circuited
 *   too, so there is no mqemitter listener; the core delivers through {@link MqttQueueConsumer};
 * - `authorizeForward` drops any `$queue/` packet, as a second fence in front of plain subscribers.
 * This matters beyond isolation: with settles published to `$queue/<name>/$ack` (a topic nobody
 * subscribes to), mqemitter 7.1.0 drained its backlog recursively and died with "Maximum call stack
 * size exceeded" under 4 publishers + 4 acking consumers (test/integration/queue-load.test.ts).
 */
import type { Aedes, Client, ConnackPacket, PublishPacket, Subscription } from 'aedes'
import type { UserProperties } from 'mqtt-packet'
import type { QueueLogger } from '../queue/logger.js'
import {
  SettleActions,
  type PublishInput,
  type QueueService,
  type SettleAction,
  type SettleInput,
} from '../queue/types.js'
import type { BrokerHooks } from './hooks.js'
import { MqttQueueConsumer, type AedesClientInternals } from './queue-consumer.js'
import { bypassQueueRouting } from './queue-routing-bypass.js'
import { batchRefusal, LOGGED_FAILED_IDS, settleMessageIds, type SettleFailure } from './queue-settle-ids.js'
import {
  messagePropertiesOf,
  nonNegativeIntegerProperty,
  QueueUserProperties,
  singleUserProperty,
} from './queue-properties.js'
import {
  EdgeError,
  EdgeErrorCodes,
  MqttReasonCodes,
  PublishRefusedError,
  subscribeReasonCode,
} from './queue-reason-codes.js'
import { defaultConsumerGroup, isQueueTopic, parseQueueTopic, QUEUE_PREFIX } from './queue-topics.js'
import { queueNameLimitProblem } from '../queue/settings.js'

/** What the adapter needs of the broker; `MqttBroker` from broker.ts fits. */
export interface QueueAdapterBroker {
  readonly aedes: Aedes
  readonly hooks: BrokerHooks
}

export interface QueueAdapterOptions {
  /** Clock for the Message Expiry Interval of deliveries; tests may pass their own. */
  now?: () => number
}

/** Handle on the attached adapter. */
export interface QueueAdapter {
  /** Clients currently known to the adapter (connected with a queue session). */
  readonly consumerCount: number
  /** Stops reacting to broker events and removes every consumer from the core (broker shutdown). */
  close(): void
}

/** aedes' subscription object, with the SUBSCRIBE's User Properties that patch 021 attaches. */
type SubscriptionWithProperties = Subscription & { userProperties?: UserProperties }
/** A subscription an authorizeSubscribe hook refuses with a reason (aedes patch 032). */
type RefusedSubscription = Subscription & { refused: { reasonCode: number; reasonString: string } }

/** aedes' persistence as used here: QoS 2 retransmission detection ([MQTT-4.3.3-2]). */
interface IncomingPacketStore {
  incomingGetPacket(client: Client, packet: { messageId?: number }): Promise<unknown>
}

/**
 * Plugs the `$queue/` namespace into the broker: registers its hooks on `broker.hooks` (publish and
 * subscribe hooks are pushed last, so they run after the authorization hooks registered before) and
 * short-circuits aedes' routing for `$queue/` topics. Call once, before the broker listens.
 */
export function attachQueues(
  broker: QueueAdapterBroker,
  queueService: QueueService,
  logger: QueueLogger,
  options: QueueAdapterOptions = {},
): QueueAdapter {
  return new MqttQueueAdapter(broker, queueService, logger, options.now ?? Date.now)
}

class MqttQueueAdapter implements QueueAdapter {
  readonly #aedes: Aedes
  readonly #queues: QueueService
  readonly #logger: QueueLogger
  readonly #now: () => number
  readonly #consumers = new Map<Client, MqttQueueConsumer>()
  readonly #detach: Array<() => void> = []
  #closed = false

  constructor(broker: QueueAdapterBroker, queues: QueueService, logger: QueueLogger, now: () => number) {
    this.#aedes = broker.aedes
    this.#queues = queues
    this.#logger = logger
    this.#now = now

    broker.hooks.authorizePublish.push((client, packet) => this.#authorizePublish(client, packet))
    broker.hooks.authorizeSubscribe.push((client, sub) => this.#authorizeSubscribe(client, sub))
    broker.hooks.authorizeForward.push((_client, packet) => (isQueueTopic(packet.topic) ? null : packet))
    this.#detach.push(bypassQueueRouting(this.#aedes, this.#logger))

    this.#on('connackSent', (connack: ConnackPacket, client: Client) => this.#onConnack(connack, client))
    this.#on('ack', (_orig: unknown, client: Client, ack?: { messageId?: number }) =>
      this.#onAck(client, ack),
    )
    this.#on('unsubscribe', (topics: string[], client: Client) => this.#onUnsubscribe(topics, client))
    this.#on('clientDisconnect', (client: Client) => this.#onClientDisconnect(client))
    this.#on('sessionExpired', (client: Client) => void this.#endSession(client.id))
  }

  get consumerCount(): number {
    return this.#consumers.size
  }

  close(): void {
    if (this.#closed) return
    this.#closed = true
    for (const detach of this.#detach) detach()
    for (const [client, consumer] of this.#consumers) this.#forget(client, consumer)
  }

  #on(event: string, listener: (...args: never[]) => void): void {
    const emitter = this.#aedes as unknown as NodeJS.EventEmitter
    const wrapped = listener as (...args: unknown[]) => void
    emitter.on(event, wrapped)
    this.#detach.push(() => emitter.removeListener(event, wrapped))
  }

  #consumerOf(client: Client): MqttQueueConsumer {
    let consumer = this.#consumers.get(client)
    if (consumer === undefined) {
      consumer = new MqttQueueConsumer(
        client,
        this.#logger,
        this.#aedes.id,
        (c, input) => this.#settleFor(client, c, input),
        this.#now,
      )
      this.#consumers.set(client, consumer)
    }
    return consumer
  }

  /** A settle the adapter makes for the consumer (3.1.1 QoS 0 delivery written, delivery too large). */
  #settleFor(client: Client, consumer: MqttQueueConsumer, input: SettleInput): void {
    if (this.#consumers.get(client) !== consumer) return // gone: the core returned its deliveries
    this.#queues.settle(consumer, input).catch((err: unknown) => {
      this.#logger.warn(
        {
          queue: input.queue,
          messageId: input.messageId,
          group: input.group,
          action: input.action,
          clientId: client.id,
          node: this.#aedes.id,
          err,
        },
        'queue settle for the consumer refused',
      )
    })
  }

  // ---- PUBLISH: store or settle, then let aedes write the PUBACK ----

  #authorizePublish(client: Client | null, packet: PublishPacket): void | Promise<void> {
    if (this.#closed) return
    const topic = parseQueueTopic(packet.topic)
    if (topic === undefined) return
    const tooLong = queueNameLimitProblem(topic.queue)
    if (tooLong !== undefined) {
      const refusal = PublishRefusedError.from(new EdgeError(EdgeErrorCodes.queueNameTooLong, tooLong))
      this.#logger.warn(
        {
          queue: topic.queue.slice(0, 100),
          clientId: client?.id,
          reasonCode: refusal.reasonCode,
          err: refusal.message,
          node: this.#aedes.id,
        },
        topic.kind === 'message' ? 'queue publish refused' : 'queue settle refused',
      )
      throw refusal
    }
    if (topic.kind === 'message') return this.#publish(client, packet, topic.queue)
    return this.#settle(client, packet, topic.queue, topic.action)
  }

  async #publish(client: Client | null, packet: PublishPacket, queue: string): Promise<void> {
    // Only QoS 2 can be a retransmission; checking first spares QoS 0/1 publishes an await.
    if (packet.qos === 2 && (await this.#isQos2Retransmission(client, packet))) return
    const properties = packet.properties
    try {
      const input: PublishInput = {
        queue,
        payload: typeof packet.payload === 'string' ? Buffer.from(packet.payload) : packet.payload,
        properties: messagePropertiesOf(properties),
      }
      const partitionKey = singleUserProperty(properties?.userProperties, QueueUserProperties.partitionKey)
      if (partitionKey !== undefined) input.partitionKey = partitionKey
      if (properties?.messageExpiryInterval !== undefined && properties.messageExpiryInterval > 0) {
        input.messageExpirySeconds = properties.messageExpiryInterval
      }
      await this.#queues.publish(input)
    } catch (err) {
      const refusal = PublishRefusedError.from(err)
      this.#logger.warn(
        {
          queue,
          clientId: client?.id,
          reasonCode: refusal.reasonCode,
          err: refusal.message,
          node: this.#aedes.id,
        },
        'queue publish refused',
      )
      throw refusal
    }
  }

  /**
   * A QoS 2 PUBLISH re-sent before PUBREL (same packet id) was already stored: aedes keeps it in
   * `incomingStorePacket` until PUBREL, and authorizePublish runs again for the retransmission.
   */
  async #isQos2Retransmission(client: Client | null, packet: PublishPacket): Promise<boolean> {
    if (packet.qos !== 2 || client === null || packet.messageId === undefined || !client.connected)
      return false
    const persistence = (this.#aedes as unknown as { persistence: IncomingPacketStore }).persistence
    try {
      await persistence.incomingGetPacket(client, packet)
      return true
    } catch {
      // aedes' persistences reject when the packet is not stored: a first transmission.
      return false
    }
  }

  async #settle(
    client: Client | null,
    packet: PublishPacket,
    queue: string,
    action: SettleAction,
  ): Promise<void> {
    if (client === null) {
      throw new PublishRefusedError(
        MqttReasonCodes.unspecifiedError,
        'settles must come from a consumer connection',
      )
    }
    // Log fields only on a refusal: the common path allocates no more than the one settle input.
    const log = () => ({ queue, action, clientId: client.id, node: this.#aedes.id })
    let messageIds: readonly string[]
    const common: SettleInput = { queue, messageId: '', action }
    try {
      const userProperties = packet.properties?.userProperties
      messageIds = settleMessageIds(packet)
      const group = singleUserProperty(userProperties, QueueUserProperties.groupId)
      if (group !== undefined) common.group = group
      if (action === SettleActions.nack) {
        const delayMs = nonNegativeIntegerProperty(userProperties, QueueUserProperties.delayMs)
        if (delayMs !== undefined) common.delayMs = delayMs
      }
      if (action === SettleActions.reject) {
        const reason = singleUserProperty(userProperties, QueueUserProperties.reason)
        if (reason !== undefined) common.reason = reason
      }
    } catch (err) {
      const refusal = err instanceof PublishRefusedError ? err : PublishRefusedError.from(err)
      this.#logger.warn(
        { ...log(), reasonCode: refusal.reasonCode, err: refusal.message },
        'queue settle refused',
      )
      throw refusal
    }
    const group = common.group
    const consumer = this.#consumerOf(client)
    if (consumer.settlesWithPuback) {
      for (const messageId of messageIds) consumer.settledExplicitly(queue, messageId)
    }
    await consumer.sessionReady
    if (messageIds.length === 1) {
      const messageId = messageIds[0] ?? ''
      common.messageId = messageId
      try {
        await this.#queues.settle(consumer, common)
      } catch (err) {
        const refusal = PublishRefusedError.from(err)
        this.#logger.warn(
          { ...log(), group, messageId, reasonCode: refusal.reasonCode, err: refusal.message },
          'queue settle refused',
        )
        throw refusal
      }
      return
    }
    // A batch: one settle per id, all issued in the order given (so the core sees them in that order
    // and can group-commit them), then one answer for all.
    const outcomes = await Promise.allSettled(
      messageIds.map((messageId) => this.#queues.settle(consumer, { ...common, messageId })),
    )
    const failures: SettleFailure[] = []
    outcomes.forEach((outcome, i) => {
      if (outcome.status === 'rejected')
        failures.push({ messageId: messageIds[i] ?? '', err: outcome.reason })
    })
    if (failures.length === 0) return
    const refusal = batchRefusal(messageIds.length, failures)
    this.#logger.warn(
      {
        ...log(),
        group,
        messageIds: failures.slice(0, LOGGED_FAILED_IDS).map((f) => f.messageId),
        failed: failures.length,
        settled: messageIds.length - failures.length,
        reasonCode: refusal.reasonCode,
        err: refusal.message,
      },
      'queue batch settle partly refused',
    )
    throw refusal
  }

  // ---- SUBSCRIBE / UNSUBSCRIBE ----

  /**
   * `SUBSCRIBE $queue/<name>` joins consumer group `consumer-group` (a SUBSCRIBE user property, which
   * aedes' patch 021 copies onto each subscription because authorizeSubscribe only sees subscriptions)
   * or, without it, the client id up to its first `-`. Joining happens before the SUBACK, so a failure
   * refuses the subscription and the connection stays up: aedes (patch 032) answers v5 clients with
   * the reason code mapped from the core's error and its message as Reason String, 3.1.1 with 0x80.
   * The core may start delivering before the SUBACK, which MQTT 5 §3.8.4 allows.
   */
  async #authorizeSubscribe(
    client: Client,
    sub: SubscriptionWithProperties,
  ): Promise<Subscription | RefusedSubscription | null | void> {
    if (this.#closed || !isQueueTopic(sub.topic)) return
    // aedes re-subscribes a restored session before CONNACK (connect.js restoreSubs); those
    // memberships come back through resumeSession (see #onConnack), so just let aedes keep the topic.
    if (!(client as Client & AedesClientInternals).connackSent) return
    const queue = sub.topic.slice(QUEUE_PREFIX.length)
    const tooLong = queueNameLimitProblem(queue)
    if (tooLong !== undefined) {
      const err = new EdgeError(EdgeErrorCodes.queueNameTooLong, tooLong)
      return this.#refuseSubscription(client, sub, queue.slice(0, 100), undefined, err)
    }
    let named: string | undefined
    try {
      named = singleUserProperty(sub.userProperties, QueueUserProperties.consumerGroup)
    } catch (err) {
      return this.#refuseSubscription(client, sub, queue, undefined, err)
    }
    const group = named ?? defaultConsumerGroup(client.id)
    const consumer = this.#consumerOf(client)
    // [MQTT-3.8.4-8] deliveries at the granted QoS (a QoS 0 subscription gets QoS 0).
    consumer.granted(queue, sub.qos)
    const persistentSession = !client.clean
    try {
      await consumer.sessionReady
      consumer.joined = true
      await this.#queues.subscribe(consumer, queue, group, {
        persistentSession,
        implicitGroup: named === undefined,
      })
      if (persistentSession) consumer.persistentSession = true
      this.#leaveIfGone(client, consumer)
    } catch (err) {
      return this.#refuseSubscription(client, sub, queue, group, err)
    }
  }

  /** Logs a refused `$queue/` subscription and hands aedes its SUBACK reason code and Reason String. */
  #refuseSubscription(
    client: Client,
    sub: Subscription,
    queue: string,
    group: string | undefined,
    err: unknown,
  ): RefusedSubscription {
    const reasonCode = subscribeReasonCode(err)
    const reasonString = err instanceof Error ? err.message : String(err)
    this.#logger.warn(
      { queue, group, clientId: client.id, reasonCode, err: reasonString, node: this.#aedes.id },
      'queue subscription refused',
    )
    return { ...sub, refused: { reasonCode, reasonString } }
  }

  #onUnsubscribe(topics: string[], client: Client): void {
    // aedes also emits 'unsubscribe' while closing a clean client; #onClientDisconnect covers that.
    if (client.closed) return
    const consumer = this.#consumers.get(client)
    if (consumer === undefined) return
    for (const topic of topics) {
      if (isQueueTopic(topic)) this.#queues.unsubscribe(consumer, topic.slice(QUEUE_PREFIX.length))
    }
  }

  // ---- Sessions and connections ----

  /**
   * CONNACK is out: the client has a session or not. With one, its stored memberships rejoin (and their
   * unsettled messages are redelivered by the core); without one ([MQTT-3.2.2-1]/[MQTT-3.2.2-3]: a clean
   * start, or nothing to resume), stored memberships of an earlier session end, as aedes' did.
   */
  #onConnack(connack: ConnackPacket, client: Client): void {
    if ((connack.reasonCode ?? connack.returnCode ?? 0) !== 0 || this.#closed) return
    const consumer = this.#consumerOf(client)
    if (connack.sessionPresent) {
      consumer.joined = true
      consumer.persistentSession = true
      consumer.sessionReady = this.#queues.resumeSession(consumer).then(
        (memberships) => {
          this.#leaveIfGone(client, consumer)
          if (memberships.length > 0) {
            this.#logger.debug(
              { clientId: client.id, memberships, node: this.#aedes.id },
              'queue session resumed',
            )
          }
        },
        (err: unknown) =>
          this.#logger.error(
            { clientId: client.id, err, node: this.#aedes.id },
            'queue session resume failed',
          ),
      )
    } else {
      consumer.sessionReady = this.#endSession(client.id)
    }
  }

  #endSession(clientId: string): Promise<void> {
    return this.#queues
      .endSession(clientId)
      .catch((err: unknown) =>
        this.#logger.error({ clientId, err, node: this.#aedes.id }, 'queue session end failed'),
      )
  }

  /** PUBACK from a client: frees the packet id; for a 3.1.1 consumer it is also the ack. */
  #onAck(client: Client, ack: { messageId?: number } | undefined): void {
    const consumer = this.#consumers.get(client)
    const inflight = consumer?.acknowledged(ack?.messageId)
    if (consumer === undefined || inflight === undefined || !consumer.settlesWithPuback) return
    if (inflight.settled === true) return
    const { queue, messageId, group } = inflight
    this.#queues
      .settle(consumer, { queue, messageId, group, action: SettleActions.ack })
      .catch((err: unknown) => {
        this.#logger.warn(
          { queue, messageId, group, clientId: client.id, node: this.#aedes.id, err },
          'queue ack (3.1.1 PUBACK) refused',
        )
      })
  }

  #onClientDisconnect(client: Client): void {
    const consumer = this.#consumers.get(client)
    if (consumer === undefined) return
    this.#forget(client, consumer)
    // A v5 client may end its session on DISCONNECT (Session Expiry Interval 0).
    if (consumer.persistentSession && client.clean) void this.#endSession(client.id)
  }

  /** The client left while the core was adding it: take it out again, or it would get deliveries. */
  #leaveIfGone(client: Client, consumer: MqttQueueConsumer): void {
    if (this.#consumers.get(client) !== consumer) this.#queues.disconnect(consumer)
  }

  #forget(client: Client, consumer: MqttQueueConsumer): void {
    this.#consumers.delete(client)
    consumer.clear()
    if (consumer.joined) this.#queues.disconnect(consumer)
  }
}
