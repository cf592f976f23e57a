/**
 * Counters and histograms for the hot path: each series is a plain object the caller keeps and bumps
 * (a number, or bucket counts), and the totals are copied into a prom-client metric when it is scraped
 * (its `collect()`). prom-client's own `inc` / `observe` validate and hash the label object on every
 * call, which showed up as 3-4 % of the broker's CPU per message; here a message costs an increment.
 *
 * The exposition is prom-client's: the same metric classes print the same HELP, TYPE, label and value
 * lines. Series appear in the order they were created, as prom-client lists series in the order of
 * their first `inc` / `observe`, so create a series on its first use, not ahead of it.
 */
import { Counter, Histogram, type Registry } from 'prom-client'

/** One label set of a {@link FoldedCounter}. */
export class CounterSeries {
  value = 0

  constructor(readonly labels: Readonly<Record<string, string>>) {}
}

/** A prom-client Counter fed from plain numbers, one {@link CounterSeries} per label set. */
export class FoldedCounter<L extends string> {
  private readonly all: CounterSeries[] = []

  constructor(config: { name: string; help: string; labelNames: readonly L[]; registers: Registry[] }) {
    const all = this.all
    new Counter<L>({
      ...config,
      collect(this: Counter<L>) {
        this.reset()
        for (const series of all) this.inc(series.labels as Partial<Record<L, string>>, series.value)
      },
    })
  }

  /** A new series (it shows from the next scrape on); keep it and bump `value`. */
  series(labels: Readonly<Record<L, string>>): CounterSeries {
    const series = new CounterSeries(labels)
    this.all.push(series)
    return series
  }
}

/** One label set of a {@link FoldedHistogram}. */
export class HistogramSeries {
  /** Observations per bucket (not cumulative), by index of the upper bound. */
  readonly counts: number[]
  sum = 0
  count = 0

  constructor(
    readonly labels: Readonly<Record<string, string>>,
    private readonly bounds: readonly number[],
  ) {
    this.counts = bounds.map(() => 0)
  }

  /** Same bucketing as prom-client: the first upper bound >= value, or only `+Inf` above them all. */
  observe(value: number): void {
    // prom-client throws on these; an observer on the hot path must not throw, so they are dropped.
    if (!Number.isFinite(value)) return
    const bounds = this.bounds
    for (let i = 0; i < bounds.length; i++) {
      if (value <= bounds[i]!) {
        this.counts[i]!++
        break
      }
    }
    this.sum += value
    this.count += 1
  }
}

/**
 * One series as prom-client 15's Histogram keeps it in `hashMap` (lib/histogram.js,
 * `createBaseValues`): bucket counts by upper bound, not cumulative. test/unit/metrics.test.ts
 * compares the exposition with prom-client's own, so a change of this layout fails there.
 */
interface PromHistogramEntry {
  labels: Readonly<Record<string, string>>
  bucketValues: Record<number, number>
  sum: number
  count: number
}

/**
 * A prom-client Histogram fed from {@link HistogramSeries}. Without label names it has its single
 * series from the start, as prom-client's has (its buckets print as 0 before any observation).
 */
export class FoldedHistogram<L extends string> {
  private readonly all: HistogramSeries[] = []
  private readonly buckets: readonly number[]

  constructor(config: {
    name: string
    help: string
    labelNames: readonly L[]
    buckets: readonly number[]
    registers: Registry[]
  }) {
    const all = this.all
    const buckets = [...config.buckets]
    this.buckets = buckets
    new Histogram<L>({
      ...config,
      buckets,
      collect(this: Histogram<L>) {
        this.reset()
        const entries = (this as unknown as { hashMap: Record<string, PromHistogramEntry> }).hashMap
        all.forEach((series, index) => {
          const bucketValues: Record<number, number> = {}
          buckets.forEach((bound, i) => (bucketValues[bound] = series.counts[i]!))
          // Any key unique per series will do; a non-numeric one keeps the insertion order.
          entries[`s${index}`] = { labels: series.labels, bucketValues, sum: series.sum, count: series.count }
        })
      },
    })
  }

  /** A new series (it shows from the next scrape on); keep it and call `observe`. */
  series(labels: Readonly<Record<L, string>>): HistogramSeries {
    const series = new HistogramSeries(labels, this.buckets)
    this.all.push(series)
    return series
  }
}
