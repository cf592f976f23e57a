/**
 * Bounded label values for the per-queue and per-group metrics, and the index that finds a queue's or
 * (queue, group)'s hot-path series per message without building label strings.
 */
import type { CounterSeries, HistogramSeries } from './folded-metrics.js'

/** The label value of queues and groups beyond the cardinality bound. */
export const OTHER_LABEL = '_other'

/**
 * Keeps label values bounded: the first `max` queues seen keep their name as `queue` label, later
 * ones become `"_other"`; likewise the first `max` (queue, group) pairs keep their group name. Worst
 * case per metric: `max + 1` queue series, `2 * max + 1` (queue, group) series.
 */
export class LabelBound {
  private readonly queues = new Set<string>()
  private readonly pairs = new Set<string>()

  constructor(readonly max: number) {}

  queue(name: string): string {
    if (this.queues.has(name)) return name
    if (this.queues.size >= this.max) return OTHER_LABEL
    this.queues.add(name)
    return name
  }

  /** The group label under an already bounded queue label. */
  group(queueLabel: string, group: string): string {
    if (queueLabel === OTHER_LABEL) return OTHER_LABEL
    const key = `${queueLabel}\u0000${group}`
    if (this.pairs.has(key)) return group
    if (this.pairs.size >= this.max) return OTHER_LABEL
    this.pairs.add(key)
    return group
  }

  /** Queues with a label of their own so far. */
  get queueLabels(): number {
    return this.queues.size
  }
}

/** The hot-path series of one `queue` label value, each created on its first use. */
export interface QueueSeries {
  readonly labels: { readonly queue: string }
  enqueued?: CounterSeries
  firstDelivery?: HistogramSeries
  toAck?: HistogramSeries
  /** By group name, for the groups with a label of their own (at most the pair bound). */
  readonly groupsByName: Map<string, GroupSeries>
  /** By `group` label value. */
  readonly groupsByLabel: Map<string, GroupSeries>
}

/** The hot-path series of one (`queue`, `group`) label pair. */
export interface GroupSeries {
  readonly labels: { readonly queue: string; readonly group: string }
  delivered?: CounterSeries
  redelivered?: CounterSeries
  acked?: CounterSeries
  nacked?: CounterSeries
  rejected?: CounterSeries
}

/**
 * Finds the series of a queue / (queue, group) per message without building label strings. The label
 * a name gets from {@link LabelBound} never changes once asked (its sets only grow), so names with a
 * label of their own are remembered (bounded like the labels); names counted under `"_other"` ask the
 * bound again each time, which is as cheap and keeps this index bounded.
 */
export class QueueSeriesIndex {
  private readonly byName = new Map<string, QueueSeries>()
  private readonly byLabel = new Map<string, QueueSeries>()

  constructor(private readonly bound: LabelBound) {}

  queue(name: string): QueueSeries {
    const known = this.byName.get(name)
    if (known !== undefined) return known
    const label = this.bound.queue(name)
    let series = this.byLabel.get(label)
    if (series === undefined) {
      series = { labels: { queue: label }, groupsByName: new Map(), groupsByLabel: new Map() }
      this.byLabel.set(label, series)
    }
    if (label === name) this.byName.set(name, series)
    return series
  }

  group(queue: QueueSeries, name: string): GroupSeries {
    const known = queue.groupsByName.get(name)
    if (known !== undefined) return known
    const label = this.bound.group(queue.labels.queue, name)
    let series = queue.groupsByLabel.get(label)
    if (series === undefined) {
      series = { labels: { queue: queue.labels.queue, group: label } }
      queue.groupsByLabel.set(label, series)
    }
    if (label === name) queue.groupsByName.set(name, series)
    return series
  }
}
