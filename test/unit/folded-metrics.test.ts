// The folded counters and histograms (plain numbers on the hot path, copied into prom-client at
// scrape time) print exactly what prom-client's own inc / observe would have printed. The histogram
// writes prom-client's internal series layout, so a prom-client upgrade that changes it fails here.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Counter, Histogram, Registry } from 'prom-client'
import { FoldedCounter, FoldedHistogram } from '../../src/observability/folded-metrics.js'

const BUCKETS = [0.001, 0.01, 0.1, 1, 10]

void test('a folded counter prints what prom-client counts, series in order of first use', async () => {
  const folded = new Registry()
  const plain = new Registry()
  const counter = new FoldedCounter({
    name: 'c_total',
    help: 'h',
    labelNames: ['q', 'g'],
    registers: [folded],
  })
  const reference = new Counter({ name: 'c_total', help: 'h', labelNames: ['q', 'g'], registers: [plain] })
  assert.equal(await folded.metrics(), await plain.metrics())
  const series = new Map<string, ReturnType<typeof counter.series>>()
  for (const [q, g] of [
    ['b', 'x'],
    ['a', 'y'],
    ['b', 'x'],
    ['a', 'x'],
    ['b', 'x'],
  ] as const) {
    const key = `${q}/${g}`
    let s = series.get(key)
    if (s === undefined) series.set(key, (s = counter.series({ q, g })))
    s.value++
    reference.inc({ q, g })
    assert.equal(await folded.metrics(), await plain.metrics())
  }
})

void test('a folded histogram prints what prom-client observes, with and without labels', async () => {
  const folded = new Registry()
  const plain = new Registry()
  const labelled = new FoldedHistogram({
    name: 'l_seconds',
    help: 'h',
    labelNames: ['queue'],
    buckets: BUCKETS,
    registers: [folded],
  })
  const bare = new FoldedHistogram({
    name: 'b_ops',
    help: 'h',
    labelNames: [],
    buckets: BUCKETS,
    registers: [folded],
  })
  const labelledRef = new Histogram({
    name: 'l_seconds',
    help: 'h',
    labelNames: ['queue'],
    buckets: BUCKETS,
    registers: [plain],
  })
  const bareRef = new Histogram({
    name: 'b_ops',
    help: 'h',
    labelNames: [],
    buckets: BUCKETS,
    registers: [plain],
  })
  // Without labels the single series shows before any observation, as prom-client's does.
  const bareSeries = bare.series({})
  assert.equal(await folded.metrics(), await plain.metrics())
  const byQueue = new Map<string, ReturnType<typeof labelled.series>>()
  // Below, on and above bounds, negative, above every bound (only +Inf), fractions that add up unevenly.
  const values = [0.0005, 0.001, 0.3, -2, 50, 0.1, 0.7, 1e-9, 10, 10.000001, 0.1 + 0.2]
  values.forEach((value, i) => {
    const queue = i % 3 === 0 ? 'jobs' : 'mail'
    let s = byQueue.get(queue)
    if (s === undefined) byQueue.set(queue, (s = labelled.series({ queue })))
    s.observe(value)
    labelledRef.observe({ queue }, value)
    bareSeries.observe(value * 1000)
    bareRef.observe(value * 1000)
  })
  assert.equal(await folded.metrics(), await plain.metrics())
  // Scraping twice changes nothing.
  assert.equal(await folded.metrics(), await plain.metrics())
})
