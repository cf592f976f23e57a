// SpoolMetrics without a server: the label-cardinality bound (metrics.maxQueueLabels) and the
// collect-time queue gauges, fed through the QueueObserver port and a stand-in for listQueues().
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { OTHER_LABEL } from '../../src/observability/labels.js'
import { SpoolMetrics } from '../../src/observability/metrics.js'
import type { QueueStats } from '../../src/queue/admin.js'
import { DEFAULT_QUEUE_SETTINGS } from '../../src/queue/settings.js'
import { sample } from '../helpers/metrics.js'

function stats(name: string, depth: number, groups: Array<[string, number]>): QueueStats {
  return {
    name,
    settings: DEFAULT_QUEUE_SETTINGS,
    depth,
    inflight: 0,
    consumers: groups.length,
    groups: groups.map(([group, backlog]) => ({
      name: group,
      consumers: ['c'],
      backlog,
      inflight: 1,
      implicit: false,
      lastActiveAtMs: Date.now(),
      expiresAtMs: null,
    })),
  }
}

void test('a group without members shows its held backlog and idle time; one with members shows 0', async () => {
  const metrics = new SpoolMetrics()
  const idleSince = Date.now() - 90_000
  const queue = stats('q', 8, [['live', 3]])
  queue.groups.push({
    name: 'gone',
    consumers: [],
    backlog: 8,
    inflight: 0,
    implicit: true,
    lastActiveAtMs: idleSince,
    expiresAtMs: idleSince + 3_600_000,
  })
  metrics.watchQueues({ listQueues: () => [queue] })
  metrics.queueObserver.groupExpired('q', 'older')
  metrics.queueObserver.writeFailed('q')
  const text = await metrics.exposition()
  assert.equal(sample(text, 'spool_queue_group_backlog', { queue: 'q', group: 'gone' }), 8)
  assert.equal(sample(text, 'spool_queue_group_backlog', { queue: 'q', group: 'live' }), 0)
  const idle = sample(text, 'spool_queue_group_idle_seconds', { queue: 'q', group: 'gone' }) ?? 0
  assert.ok(idle >= 90 && idle < 120, `idle seconds ${idle}`)
  assert.equal(sample(text, 'spool_queue_group_idle_seconds', { queue: 'q', group: 'live' }), 0)
  assert.equal(sample(text, 'spool_queue_groups_expired_total', { queue: 'q' }), 1)
  assert.equal(sample(text, 'spool_queue_state_write_failures_total', { queue: 'q' }), 1)
})

void test('queues beyond maxQueueLabels are counted under queue="_other"', async () => {
  const metrics = new SpoolMetrics({ maxQueueLabels: 2 })
  for (const queue of ['a', 'b', 'c', 'd', 'a']) metrics.queueObserver.enqueued(queue)
  metrics.queueObserver.publishRefused('no+wildcards', 'INVALID_QUEUE_NAME')
  metrics.watchQueues({
    listQueues: () => [stats('a', 1, [['g', 1]]), stats('c', 5, [['g', 5]]), stats('d', 7, [['h', 7]])],
  })
  const text = await metrics.exposition()
  assert.equal(sample(text, 'spool_queue_enqueued_total', { queue: 'a' }), 2)
  assert.equal(sample(text, 'spool_queue_enqueued_total', { queue: 'b' }), 1)
  assert.equal(sample(text, 'spool_queue_enqueued_total', { queue: OTHER_LABEL }), 2)
  assert.equal(sample(text, 'spool_queue_enqueued_total', { queue: 'c' }), undefined)
  // An invalid name never takes a label of its own.
  assert.equal(
    sample(text, 'spool_queue_publish_rejections_total', {
      queue: OTHER_LABEL,
      reason: 'invalid_queue_name',
    }),
    1,
  )
  assert.equal(sample(text, 'spool_queue_depth', { queue: 'a' }), 1)
  assert.equal(sample(text, 'spool_queue_depth', { queue: OTHER_LABEL }), 12)
  assert.equal(sample(text, 'spool_queue_backlog', { queue: OTHER_LABEL, group: OTHER_LABEL }), 12)
  assert.equal(sample(text, 'spool_queue_inflight', { queue: OTHER_LABEL, group: OTHER_LABEL }), 2)
  assert.equal(sample(text, 'spool_queues'), 3)
  assert.equal(sample(text, 'spool_metrics_queue_labels'), 2)
})

void test('(queue, group) pairs beyond maxQueueLabels are counted under group="_other"', async () => {
  const metrics = new SpoolMetrics({ maxQueueLabels: 2 })
  for (const group of ['g1', 'g2', 'g3', 'g4']) metrics.queueObserver.delivered('q', group, 1, 5)
  metrics.queueObserver.delivered('q', 'g1', 2, 5)
  const text = await metrics.exposition()
  assert.equal(sample(text, 'spool_queue_delivered_total', { queue: 'q', group: 'g1' }), 2)
  assert.equal(sample(text, 'spool_queue_redelivered_total', { queue: 'q', group: 'g1' }), 1)
  assert.equal(sample(text, 'spool_queue_delivered_total', { queue: 'q', group: 'g2' }), 1)
  assert.equal(sample(text, 'spool_queue_delivered_total', { queue: 'q', group: OTHER_LABEL }), 2)
  // First deliveries only: the redelivery is not an enqueue-to-delivery latency.
  assert.equal(sample(text, 'spool_queue_enqueue_to_delivery_seconds_count', { queue: 'q' }), 4)
})

void test('a deleted queue leaves the gauges at the next scrape; its counters stay', async () => {
  const metrics = new SpoolMetrics()
  let queues = [stats('gone', 4, [['g', 4]])]
  metrics.watchQueues({ listQueues: () => queues })
  metrics.queueObserver.enqueued('gone')
  assert.equal(sample(await metrics.exposition(), 'spool_queue_depth', { queue: 'gone' }), 4)
  queues = []
  const text = await metrics.exposition()
  assert.equal(sample(text, 'spool_queue_depth', { queue: 'gone' }), undefined)
  assert.equal(sample(text, 'spool_queue_backlog', { queue: 'gone', group: 'g' }), undefined)
  assert.equal(sample(text, 'spool_queue_enqueued_total', { queue: 'gone' }), 1)
})
