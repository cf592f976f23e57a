/**
 * The queue core's public vocabulary. The MQTT adapter (src/protocol) talks to the core only through
 * these types; storage implements {@link QueueStore} from ./store.ts. Nothing here knows about MQTT
 * packets, aedes or LevelDB.
 */

/** MQTT 5 publish properties that a queue keeps and hands back on delivery. */
export interface MessageProperties {
  contentType?: string
  responseTopic?: string
  correlationData?: Uint8Array
  payloadFormatIndicator?: boolean
  /** Publisher user properties, in order; a key may repeat. */
  userProperties?: Array<[string, string]>
}

/** A message as stored in a queue partition. */
export interface QueueMessage {
  /** `<partition>-<seq>`: unique within the queue, parseable back to its partition. */
  readonly id: string
  readonly queue: string
  readonly partition: number
  /** Per-partition sequence number, starting at 1, strictly increasing. */
  readonly seq: number
  readonly payload: Uint8Array
  readonly properties: MessageProperties
  readonly enqueuedAtMs: number
  /** From the MQTT 5 Message Expiry Interval; absent means no TTL. */
  readonly expiresAtMs?: number
}

/** What the adapter passes in for a `$queue/<name>` PUBLISH. */
export interface PublishInput {
  /** Queue name without the `$queue/` prefix, e.g. `tasks/image-processing`. */
  queue: string
  payload: Uint8Array
  properties: MessageProperties
  /** Value of the `partition-key` user property, if any. */
  partitionKey?: string
  /** Message Expiry Interval in seconds, if the publisher set one. */
  messageExpirySeconds?: number
  /**
   * The partition, when the node where the message arrived already chose it (cluster forwarding);
   * otherwise the partition follows from {@link partitionKey}.
   */
  partition?: number
}

/** One delivery of a message to one consumer of one group. */
export interface Delivery {
  readonly message: QueueMessage
  readonly group: string
  /** 1 on first delivery, incremented on every redelivery (survives restarts). */
  readonly deliveryCount: number
}

/**
 * A connected consumer, implemented by the adapter. The core calls {@link deliver} only while the
 * consumer has capacity (in-flight deliveries below {@link receiveMaximum} and the queue's limits).
 */
export interface ConsumerConnection {
  /** MQTT client id; unique among connected clients. */
  readonly clientId: string
  /** The client's MQTT 5 Receive Maximum (65535 for 3.1.1 clients). */
  readonly receiveMaximum: number
  /** Sends the delivery to the client (a QoS 1 PUBLISH on `$queue/<name>`). */
  deliver(delivery: Delivery): void
}

export const SettleActions = {
  ack: 'ack',
  nack: 'nack',
  reject: 'reject',
  extend: 'extend',
} as const
export type SettleAction = (typeof SettleActions)[keyof typeof SettleActions]

export interface SettleInput {
  queue: string
  messageId: string
  action: SettleAction
  /** Optional when the consumer is in exactly one group of the queue. */
  group?: string
  /** `$nack` only: retry after this delay instead of the backoff policy. */
  delayMs?: number
  /** `$reject` only: carried into the dead letter as user property `reason`. */
  reason?: string
}

export const Orderings = { partition: 'partition', strict: 'strict', none: 'none' } as const
export type Ordering = (typeof Orderings)[keyof typeof Orderings]

/**
 * Per-queue settings, like NATS's ConsumerConfig: one documented set. Their kinds, limits, defaults
 * and these docs are the table `QUEUE_SETTING_FIELDS` in ./settings.ts (which also holds
 * `DEFAULT_QUEUE_SETTINGS`); config may change the defaults, and queues may override any of them.
 */
export interface QueueSettings {
  /**
   * Partitions of the queue; a message goes to one, by its `partition-key` or round robin. May grow,
   * never shrink, and change only while the queue is empty.
   */
  partitions: number
  /**
   * `partition`: FIFO per partition; `strict`: one partition, global FIFO; `none`: any consumer takes
   * any message.
   */
  ordering: Ordering
  /** Unsettled deliveries per partition and group in the ordered modes. */
  maxInflightPerPartition: number
  /** Unsettled deliveries per consumer and group. */
  maxInflightPerConsumer: number
  /** Time a consumer has to settle a delivery before it is retried. */
  deliveryTimeoutMs: number
  durability: {
    /** `true` fsyncs every group commit (survives power loss); `false` survives a killed process. */
    sync: boolean
  }
  retry: {
    /** Backoff before the second delivery; 0 retries at once. */
    initialDelayMs: number
    /** Growth of the backoff per earlier delivery; 1 keeps it constant. */
    factor: number
    /** Cap of the backoff. */
    maxDelayMs: number
    /** Deliveries to a group before the message is dead-lettered (`max-deliveries`). */
    maxDeliveries: number
    /** Age (since publish) past which a message is dead-lettered (`timeout`) instead of retried. */
    totalTimeoutMs: number
  }
  /** Largest message accepted, counting payload, queue name and properties. */
  maxMessageBytes: number
  /** Most messages stored in the queue (per node in a cluster). */
  maxDepth: number
  /**
   * A consumer group with no member online for this long is deleted, releasing what it held; 0:
   * never.
   */
  groupExpiryMs: number
  /** The same for implicit groups (a SUBSCRIBE without `consumer-group`); 0: never. */
  implicitGroupExpiryMs: number
}

export const DeadLetterReasons = {
  rejected: 'rejected',
  maxDeliveries: 'max-deliveries',
  timeout: 'timeout',
  expired: 'expired',
} as const
export type DeadLetterReason = (typeof DeadLetterReasons)[keyof typeof DeadLetterReasons]

export interface SubscribeOptions {
  /** Store the membership for {@link QueueService.resumeSession}. */
  persistentSession?: boolean
  /**
   * The group was not named by the consumer (no `consumer-group`; the adapter derived it from the
   * client id). Such a group expires after `implicitGroupExpiryMs`, and may be refused altogether.
   */
  implicitGroup?: boolean
}

/** What the core does; the adapter holds one of these. */
export interface QueueService {
  /**
   * Resolves once the message is durably written (group-committed); rejects with a QueueError.
   * Resolves with the stored message, or undefined when a cluster node durably accepted it for a
   * partition another node stores (forwarded, or buffered until its owner takes it).
   */
  publish(input: PublishInput): Promise<QueueMessage | undefined>
  /**
   * Adds the consumer to `group` of `queue` (creating queue and group on first use). With
   * `persistentSession`, the membership is stored so that {@link resumeSession} can restore it.
   */
  subscribe(
    consumer: ConsumerConnection,
    queue: string,
    group: string,
    options?: SubscribeOptions,
  ): Promise<void>
  /**
   * Rejoins every stored membership of `consumer.clientId` (a client that reconnected with its MQTT
   * session) and returns them.
   */
  resumeSession(consumer: ConsumerConnection): Promise<Array<{ queue: string; group: string }>>
  /** Forgets the stored memberships of a client whose MQTT session ended (clean start or expiry). */
  endSession(clientId: string): Promise<void>
  /** Removes the consumer from its groups of `queue`; its in-flight deliveries return at once. */
  unsubscribe(consumer: ConsumerConnection, queue: string): void
  /** Removes the consumer everywhere; its in-flight deliveries return at once. */
  disconnect(consumer: ConsumerConnection): void
  /** Settles a delivery made to `consumer`; rejects with a QueueError for unknown/settled ids. */
  settle(consumer: ConsumerConnection, input: SettleInput): Promise<void>
}
