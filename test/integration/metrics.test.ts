// GET /metrics on a real Spool (port 0) with mqtt.js clients: the figures move as messages flow, and
// the exposition passes `promtool check metrics` (Debian package `prometheus`, installed by .ci/run).
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { collect, connectClient, startTestServer, TIMEOUT_MS, waitForCount } from '../helpers/server.js'
import {
  declareQueue,
  messageIdOf,
  publishOutcome,
  settleOk,
  subscribeQueue,
  uniqueQueue,
} from '../helpers/queues.js'
import { sample, scrape } from '../helpers/metrics.js'
import { within } from '../helpers/wait.js'

void test('queue and broker figures move as messages flow: enqueue 10, ack 4', async (t) => {
  const server = await startTestServer(t)
  const queue = uniqueQueue('metrics')
  const consumer = await connectClient(t, server.mqttPort)
  const received = collect(consumer)
  await subscribeQueue(consumer, queue, 'workers')
  const producer = await connectClient(t, server.mqttPort)

  for (let i = 0; i < 10; i++) {
    const outcome = await publishOutcome(producer, `$queue/${queue}`, `job ${i}`)
    assert.equal(outcome.reasonCode, 0)
  }
  await waitForCount(consumer, received, 4)
  for (const delivery of received.slice(0, 4)) await settleOk(consumer, queue, '$ack', messageIdOf(delivery))

  const text = await scrape(server)
  const group = { queue, group: 'workers' }
  assert.equal(sample(text, 'spool_queue_enqueued_total', { queue }), 10)
  assert.equal(sample(text, 'spool_queue_depth', { queue }), 6)
  assert.equal(sample(text, 'spool_queue_acked_total', group), 4)
  assert.equal(sample(text, 'spool_queue_backlog', group), 6)
  assert.equal(sample(text, 'spool_queue_consumers', group), 1)
  assert.ok((sample(text, 'spool_queue_delivered_total', group) ?? 0) >= 4, 'delivered >= 4')
  assert.ok((sample(text, 'spool_queue_enqueue_to_delivery_seconds_count', { queue }) ?? 0) >= 4)
  assert.equal(sample(text, 'spool_queue_delivery_to_ack_seconds_count', { queue }), 4)
  assert.ok((sample(text, 'spool_storage_batch_ops_count') ?? 0) > 0, 'storage writes observed')

  assert.equal(sample(text, 'spool_mqtt_clients_connected'), 2)
  assert.equal(sample(text, 'spool_mqtt_packets_received_total', { type: 'connect' }), 2)
  assert.equal(sample(text, 'spool_mqtt_packets_sent_total', { type: 'connack' }), 2)
  // 10 jobs and 4 settles are PUBLISH packets; the consumer's PUBACKs too (one per delivery).
  assert.ok((sample(text, 'spool_mqtt_packets_received_total', { type: 'publish' }) ?? 0) >= 14)
  assert.ok((sample(text, 'spool_mqtt_packets_sent_total', { type: 'publish' }) ?? 0) >= 4)
  assert.ok((sample(text, 'spool_mqtt_sent_bytes_total', { type: 'publish' }) ?? 0) > 0)
  assert.ok((sample(text, 'spool_mqtt_subscriptions') ?? 0) >= 1)
  assert.ok((sample(text, 'spool_process_resident_memory_bytes') ?? 0) > 0, 'process defaults')
})

/** Runs `promtool check metrics` on `text`; its exit code and everything it printed. */
async function promtoolCheck(t: Parameters<typeof startTestServer>[0], text: string) {
  const child = spawn('promtool', ['check', 'metrics'], { stdio: ['pipe', 'pipe', 'pipe'] })
  t.after(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill()
  })
  let output = ''
  child.stdout.on('data', (d: Buffer) => (output += d.toString()))
  child.stderr.on('data', (d: Buffer) => (output += d.toString()))
  const exited = new Promise<number | null>((resolve, reject) => {
    child.once('error', (err) =>
      reject(new Error(`promtool did not start (apt-get install prometheus): ${err.message}`)),
    )
    child.once('exit', (code) => resolve(code))
  })
  child.stdin.end(text)
  const code = await within(exited, TIMEOUT_MS * 2, 'promtool to exit')
  return { code, output }
}

void test('the exposition passes promtool check metrics, every kind of figure present', async (t) => {
  const queue = uniqueQueue('promtool')
  const server = await startTestServer(t, { raw: declareQueue(queue, { maxDepth: 3 }) })
  const consumer = await connectClient(t, server.mqttPort)
  const received = collect(consumer)
  await subscribeQueue(consumer, queue, 'workers')
  const producer = await connectClient(t, server.mqttPort)
  for (let i = 0; i < 3; i++) {
    assert.equal((await publishOutcome(producer, `$queue/${queue}`, `job ${i}`)).reasonCode, 0)
  }
  await waitForCount(consumer, received, 3)
  // A refusal (queue full), an ack, a nack and a reject (a dead letter): every counter has a sample.
  assert.notEqual((await publishOutcome(producer, `$queue/${queue}`, 'one too many')).reasonCode, 0)
  const [first, second, third] = received.map(messageIdOf)
  await settleOk(consumer, queue, '$ack', first!)
  await settleOk(consumer, queue, '$nack', second!, { 'delay-ms': '60000' })
  await settleOk(consumer, queue, '$reject', third!, { reason: 'bad' })

  const text = await scrape(server)
  assert.equal(sample(text, 'spool_queue_publish_rejections_total', { queue, reason: 'queue_full' }), 1)
  assert.equal(sample(text, 'spool_queue_nacked_total', { queue, group: 'workers' }), 1)
  assert.equal(
    sample(text, 'spool_queue_dead_lettered_total', { queue, group: 'workers', reason: 'rejected' }),
    1,
  )
  assert.equal(sample(text, 'spool_queue_depth', { queue: `dlq/${queue}` }), 1)

  const { code, output } = await promtoolCheck(t, text)
  assert.equal(output, '', 'promtool found problems')
  assert.equal(code, 0)
})
