/**
 * Prometheus metrics (prom-client) for `GET /metrics`: the Node process defaults, broker figures
 * read from the MQTT edge at scrape time, and queue figures — counters and histograms fed by the
 * core's {@link QueueObserver} on the hot path, gauges read from `listQueues()` at scrape time.
 * Every name starts with `spool_`; docs/operations.md lists them with their meaning and alerts.
 *
 * Label cardinality is bounded: queue names (and consumer-group names) are user-chosen, so only the
 * first `maxQueueLabels` queues get a `queue` label of their own, and only the first
 * `maxQueueLabels` (queue, group) pairs a `group` label of their own; the rest are counted under
 * `"_other"` ({@link LabelBound}).
 */
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client'
import type { QueueErrorCode } from '../queue/errors.js'
import type { QueueAdmin } from '../queue/admin.js'
import type { QueueObserver } from '../queue/observer.js'
import { DeadLetterReasons, SettleActions, type DeadLetterReason, type SettleAction } from '../queue/types.js'
import { FoldedCounter, FoldedHistogram } from './folded-metrics.js'
import { LabelBound, OTHER_LABEL, QueueSeriesIndex } from './labels.js'

export const DEFAULT_MAX_QUEUE_LABELS = 1000

/** What the MQTT edge reports at scrape time (src/protocol/broker-stats.ts implements it). */
export interface BrokerFigures {
  /** Clients with a session open on this node now. */
  clientsConnected(): number
  /** Network connections accepted since start (CONNECT or not). */
  connectionsAccepted(): number
  /** Subscriptions of the connected clients. */
  subscriptions(): number
  /** Retained messages stored. */
  retainedMessages(): number
  /** Packets and their bytes on the wire, by direction and MQTT packet type (`publish`, `puback`…). */
  traffic(): Iterable<PacketTraffic>
}

export interface PacketTraffic {
  readonly direction: 'received' | 'sent'
  readonly type: string
  readonly packets: number
  readonly bytes: number
}

/** Where the queue gauges come from: the core's administration port. */
export type QueueStatsSource = Pick<QueueAdmin, 'listQueues'>

export interface SpoolMetricsOptions {
  /** Distinct `queue` label values (and (queue, group) pairs) before `"_other"`. */
  maxQueueLabels?: number
}

// Buckets: queue latencies span milliseconds (idle consumers) to minutes (a backlog).
const QUEUE_LATENCY_BUCKETS = [
  0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800,
]
const STORAGE_WRITE_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5]
const BATCH_OPS_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096]

/**
 * The process metrics (CPU, memory, event loop, GC) belong to the process, not to one server: one
 * registry for every server started in it (tests start many), created on first use.
 */
let processRegistry: Registry | undefined
function processMetrics(): Registry {
  if (processRegistry === undefined) {
    processRegistry = new Registry()
    collectDefaultMetrics({ register: processRegistry, prefix: 'spool_' })
    // Gauges named `_total`, which Prometheus' naming rules (and `promtool check metrics`) reserve
    // for counters; each is the sum of its `{type}` sibling without the suffix, which stays.
    for (const name of ['active_handles', 'active_requests', 'active_resources'])
      processRegistry.removeSingleMetric(`spool_nodejs_${name}_total`)
  }
  return processRegistry
}

/** One server's metrics: a registry, the queue observer, and the sources read at scrape time. */
export class SpoolMetrics {
  readonly registry = new Registry()
  readonly labels: LabelBound
  /** Pass to `QueueManagerOptions.observer`. */
  readonly queueObserver: QueueObserver
  private queueSource: QueueStatsSource | undefined
  private broker: BrokerFigures | undefined

  // ---- broker (filled at scrape time) ----
  private readonly clientsConnected: Gauge
  private readonly connections: Counter
  private readonly subscriptions: Gauge
  private readonly retained: Gauge
  private readonly packetsReceived: Counter<'type'>
  private readonly packetsSent: Counter<'type'>
  private readonly bytesReceived: Counter<'type'>
  private readonly bytesSent: Counter<'type'>

  // ---- queue gauges (filled at scrape time) ----
  private readonly queueCount: Gauge
  private readonly queueLabelsUsed: Gauge
  private readonly depth: Gauge<'queue'>
  private readonly inflight: Gauge<'queue' | 'group'>
  private readonly consumers: Gauge<'queue' | 'group'>
  private readonly backlog: Gauge<'queue' | 'group'>
  private readonly idleBacklog: Gauge<'queue' | 'group'>
  private readonly idleSeconds: Gauge<'queue' | 'group'>

  constructor(options: SpoolMetricsOptions = {}) {
    this.labels = new LabelBound(options.maxQueueLabels ?? DEFAULT_MAX_QUEUE_LABELS)
    const registers = [this.registry]
    const counter = <L extends string>(name: string, help: string, labelNames: readonly L[]) =>
      new Counter<L>({ name, help, labelNames, registers })
    const gauge = <L extends string>(name: string, help: string, labelNames: readonly L[]) =>
      new Gauge<L>({ name, help, labelNames, registers })

    this.clientsConnected = gauge('spool_mqtt_clients_connected', 'MQTT clients connected now.', [])
    this.connections = counter(
      'spool_mqtt_connections_total',
      'Network connections accepted (TCP and WebSocket), whether or not they sent CONNECT.',
      [],
    )
    this.subscriptions = gauge(
      'spool_mqtt_subscriptions',
      'Subscriptions of the connected MQTT clients ($queue/ and $share/ included).',
      [],
    )
    this.retained = gauge('spool_mqtt_retained_messages', 'Retained messages stored.', [])
    this.packetsReceived = counter(
      'spool_mqtt_packets_received_total',
      'MQTT packets received, by packet type.',
      ['type'],
    )
    this.packetsSent = counter('spool_mqtt_packets_sent_total', 'MQTT packets sent, by packet type.', [
      'type',
    ])
    this.bytesReceived = counter(
      'spool_mqtt_received_bytes_total',
      'Bytes of MQTT packets received (whole packets, fixed header included), by packet type.',
      ['type'],
    )
    this.bytesSent = counter(
      'spool_mqtt_sent_bytes_total',
      'Bytes of MQTT packets sent (whole packets, fixed header included), by packet type.',
      ['type'],
    )

    this.queueCount = gauge('spool_queues', 'Queues known to this node (dead-letter queues included).', [])
    this.queueLabelsUsed = gauge(
      'spool_metrics_queue_labels',
      `Queues with a queue label of their own; at metrics.maxQueueLabels further queues are counted as queue="${OTHER_LABEL}".`,
      [],
    )
    this.depth = gauge('spool_queue_depth', 'Messages stored in the queue, not yet settled by every group.', [
      'queue',
    ])
    this.inflight = gauge(
      'spool_queue_inflight',
      'Messages delivered to a consumer of the group and not settled yet.',
      ['queue', 'group'],
    )
    this.consumers = gauge('spool_queue_consumers', 'Online consumers (members) of the group.', [
      'queue',
      'group',
    ])
    this.backlog = gauge(
      'spool_queue_backlog',
      'Messages the group has not settled yet, in flight included.',
      ['queue', 'group'],
    )
    this.idleBacklog = gauge(
      'spool_queue_group_backlog',
      'Messages held by a consumer group that has no member online (0 while it has members): what an abandoned group keeps stored until it expires.',
      ['queue', 'group'],
    )
    this.idleSeconds = gauge(
      'spool_queue_group_idle_seconds',
      'Seconds since the last member of the group left (0 while it has members).',
      ['queue', 'group'],
    )

    // Per-message counters and histograms are folded (folded-metrics.ts): plain numbers on the hot
    // path, copied into prom-client at scrape time. The rare ones stay plain prom-client metrics.
    const folded = <L extends string>(name: string, help: string, labelNames: readonly L[]) =>
      new FoldedCounter<L>({ name, help, labelNames, registers })
    const foldedHistogram = <L extends string>(
      name: string,
      help: string,
      labelNames: readonly L[],
      buckets: number[],
    ) => new FoldedHistogram<L>({ name, help, labelNames, buckets, registers })

    const enqueued = folded('spool_queue_enqueued_total', 'Messages accepted by a publish.', ['queue'])
    const rejections = counter(
      'spool_queue_publish_rejections_total',
      'Publishes to a queue refused, by reason (queue_full, message_too_large, invalid_queue_name, storage_failure, closed).',
      ['queue', 'reason'],
    )
    const delivered = folded(
      'spool_queue_delivered_total',
      'Deliveries to a consumer (redeliveries included).',
      ['queue', 'group'],
    )
    const redelivered = folded(
      'spool_queue_redelivered_total',
      'Deliveries of a message the group had been delivered before (delivery count > 1).',
      ['queue', 'group'],
    )
    const acked = folded('spool_queue_acked_total', 'Deliveries settled with $ack.', ['queue', 'group'])
    const nacked = folded('spool_queue_nacked_total', 'Deliveries settled with $nack (retried later).', [
      'queue',
      'group',
    ])
    const rejected = folded(
      'spool_queue_rejected_total',
      'Deliveries settled with $reject (dead-lettered).',
      ['queue', 'group'],
    )
    const timeouts = counter(
      'spool_queue_delivery_timeouts_total',
      'Deliveries not settled within deliveryTimeoutMs (retried later).',
      ['queue', 'group'],
    )
    const deadLettered = counter(
      'spool_queue_dead_lettered_total',
      'Messages moved to dlq/<queue>, by reason (rejected, max-deliveries, timeout, expired).',
      ['queue', 'group', 'reason'],
    )
    const writeFailures = counter(
      'spool_queue_state_write_failures_total',
      'Background writes of queue state (delivery attempts, retries, group records) that failed; each is also logged.',
      ['queue'],
    )
    const groupsExpired = counter(
      'spool_queue_groups_expired_total',
      'Consumer groups deleted after groupExpiryMs (implicitGroupExpiryMs) without a member online.',
      ['queue'],
    )
    const expired = counter(
      'spool_queue_expired_total',
      'Messages whose Message Expiry Interval passed before delivery (also in dead_lettered_total{reason="expired"}).',
      ['queue', 'group'],
    )
    const firstDelivery = foldedHistogram(
      'spool_queue_enqueue_to_delivery_seconds',
      'Time from enqueue to the first delivery of a message to a group.',
      ['queue'],
      QUEUE_LATENCY_BUCKETS,
    )
    const toAck = foldedHistogram(
      'spool_queue_delivery_to_ack_seconds',
      'Time from a delivery to its $ack.',
      ['queue'],
      QUEUE_LATENCY_BUCKETS,
    )
    const batchOps = foldedHistogram(
      'spool_storage_batch_ops',
      'Operations per storage write (group commit batch).',
      [],
      BATCH_OPS_BUCKETS,
    ).series({})
    const writeSeconds = foldedHistogram(
      'spool_storage_write_seconds',
      'Duration of one storage write (group commit batch).',
      [],
      STORAGE_WRITE_BUCKETS,
    ).series({})

    const series = new QueueSeriesIndex(this.labels)
    const pair = (queue: string, group: string) => series.group(series.queue(queue), group).labels
    // Called synchronously on the hot path: counting only, nothing that throws or blocks.
    this.queueObserver = {
      enqueued: (queue) => {
        const q = series.queue(queue)
        ;(q.enqueued ??= enqueued.series(q.labels)).value++
      },
      publishRefused: (queue, code: QueueErrorCode) => {
        // An invalid name must not take one of the bounded label values.
        const label = code === 'INVALID_QUEUE_NAME' ? OTHER_LABEL : this.labels.queue(queue)
        rejections.inc({ queue: label, reason: code.toLowerCase() })
      },
      delivered: (queue, group, deliveryCount, sinceEnqueueMs) => {
        const q = series.queue(queue)
        const g = series.group(q, group)
        ;(g.delivered ??= delivered.series(g.labels)).value++
        if (deliveryCount > 1) (g.redelivered ??= redelivered.series(g.labels)).value++
        else (q.firstDelivery ??= firstDelivery.series(q.labels)).observe(sinceEnqueueMs / 1000)
      },
      settled: (queue, group, action: SettleAction, sinceDeliveryMs) => {
        const q = series.queue(queue)
        const g = series.group(q, group)
        if (action === SettleActions.ack) {
          ;(g.acked ??= acked.series(g.labels)).value++
          if (sinceDeliveryMs !== undefined)
            (q.toAck ??= toAck.series(q.labels)).observe(sinceDeliveryMs / 1000)
        } else if (action === SettleActions.nack) (g.nacked ??= nacked.series(g.labels)).value++
        else if (action === SettleActions.reject) (g.rejected ??= rejected.series(g.labels)).value++
      },
      timedOut: (queue, group) => timeouts.inc(pair(queue, group)),
      deadLettered: (queue, group, reason: DeadLetterReason) => {
        const l = pair(queue, group)
        deadLettered.inc({ ...l, reason })
        if (reason === DeadLetterReasons.expired) expired.inc(l)
      },
      groupExpired: (queue) => groupsExpired.inc({ queue: this.labels.queue(queue) }),
      writeFailed: (queue) => writeFailures.inc({ queue: this.labels.queue(queue) }),
      batchWritten: (ops, durationMs) => {
        batchOps.observe(ops)
        writeSeconds.observe(durationMs / 1000)
      },
    }
  }

  /** The queue manager whose `listQueues()` fills the queue gauges at each scrape. */
  watchQueues(source: QueueStatsSource): void {
    this.queueSource = source
  }

  /** The MQTT edge whose figures fill the broker metrics at each scrape. */
  watchBroker(figures: BrokerFigures): void {
    this.broker = figures
  }

  /** `Content-Type` of {@link exposition}: Prometheus text format 0.0.4. */
  get contentType(): string {
    return this.registry.contentType
  }

  /** The text exposition: process metrics, then this server's, read fresh. */
  async exposition(): Promise<string> {
    this.refreshBroker()
    this.refreshQueues()
    const [process, own] = await Promise.all([processMetrics().metrics(), this.registry.metrics()])
    // prom-client separates metrics with a blank line; keep that between the two registries.
    return `${process}\n${own}`
  }

  private refreshBroker(): void {
    const broker = this.broker
    if (broker === undefined) return
    this.clientsConnected.set(broker.clientsConnected())
    this.subscriptions.set(broker.subscriptions())
    this.retained.set(broker.retainedMessages())
    // The edge keeps plain totals (cheaper per packet than prom-client); copy them over.
    this.connections.reset()
    this.connections.inc(broker.connectionsAccepted())
    for (const counter of [this.packetsReceived, this.packetsSent, this.bytesReceived, this.bytesSent]) {
      counter.reset()
    }
    for (const { direction, type, packets, bytes } of broker.traffic()) {
      const received = direction === 'received'
      ;(received ? this.packetsReceived : this.packetsSent).inc({ type }, packets)
      ;(received ? this.bytesReceived : this.bytesSent).inc({ type }, bytes)
    }
  }

  private refreshQueues(): void {
    const source = this.queueSource
    if (source === undefined) return
    const queues = source.listQueues()
    const depth = new Map<string, number>()
    const now = Date.now()
    const groups = new Map<
      string,
      {
        queue: string
        group: string
        inflight: number
        consumers: number
        backlog: number
        idleBacklog: number
        idleSeconds: number
      }
    >()
    for (const stats of queues) {
      const queue = this.labels.queue(stats.name)
      depth.set(queue, (depth.get(queue) ?? 0) + stats.depth)
      for (const g of stats.groups) {
        const group = this.labels.group(queue, g.name)
        const key = `${queue}\u0000${group}`
        const sum = groups.get(key) ?? {
          queue,
          group,
          inflight: 0,
          consumers: 0,
          backlog: 0,
          idleBacklog: 0,
          idleSeconds: 0,
        }
        sum.inflight += g.inflight
        sum.consumers += g.consumers.length
        sum.backlog += g.backlog
        if (g.consumers.length === 0) {
          sum.idleBacklog += g.backlog
          sum.idleSeconds = Math.max(sum.idleSeconds, Math.max(0, now - g.lastActiveAtMs) / 1000)
        }
        groups.set(key, sum)
      }
    }
    this.queueCount.set(queues.length)
    this.queueLabelsUsed.set(this.labels.queueLabels)
    // Reset first: a deleted queue or group must disappear, not keep its last value.
    const gauges = [
      this.depth,
      this.inflight,
      this.consumers,
      this.backlog,
      this.idleBacklog,
      this.idleSeconds,
    ]
    for (const gauge of gauges) gauge.reset()
    for (const [queue, value] of depth) this.depth.set({ queue }, value)
    for (const g of groups.values()) {
      const labels = { queue: g.queue, group: g.group }
      this.inflight.set(labels, g.inflight)
      this.consumers.set(labels, g.consumers)
      this.backlog.set(labels, g.backlog)
      this.idleBacklog.set(labels, g.idleBacklog)
      this.idleSeconds.set(labels, g.idleSeconds)
    }
  }
}
