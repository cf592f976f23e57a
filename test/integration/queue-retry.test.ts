// Retries through the whole broker: `$nack` with the backoff policy or its own `delay-ms`, the delivery
// timeout, and `$extend` keeping a slow delivery alive. Real mqtt.js clients, real queue core on LevelDB.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { setTimeout as pace } from 'node:timers/promises'
import { collect, connectClient, nextMessage, startTestServer, uniqueId } from '../helpers/server.js'
import {
  declareQueue,
  deliveryCountOf,
  messageIdOf,
  settleOk,
  subscribeQueue,
  uniqueQueue,
} from '../helpers/queues.js'
import type { QueueSettingsOverrides } from '../../src/queue/settings.js'

const QUIET_MS = 300

/** A server declaring `queue`, a publisher that put `payload` in it, and a consumer of it. */
async function oneMessage(
  t: Parameters<typeof startTestServer>[0],
  settings: QueueSettingsOverrides,
  payload = 'work',
) {
  const queue = uniqueQueue('retry')
  const server = await startTestServer(t, { raw: declareQueue(queue, settings) })
  const publisher = await connectClient(t, server.mqttPort)
  await publisher.publishAsync(`$queue/${queue}`, payload, { qos: 1 })
  const consumer = await connectClient(t, server.mqttPort, { clientId: uniqueId('retrier') })
  const first = nextMessage(consumer)
  await subscribeQueue(consumer, queue, uniqueId('g'))
  return { server, queue, consumer, first: await first }
}

void test('$nack redelivers after the backoff: initialDelayMs, then times factor; delivery-count counts up', async (t) => {
  const { queue, consumer, first } = await oneMessage(t, {
    retry: { initialDelayMs: 250, factor: 2, maxDelayMs: 10_000 },
  })
  const id = messageIdOf(first)
  assert.equal(deliveryCountOf(first), 1)

  let nackedAt = Date.now()
  let next = nextMessage(consumer)
  await settleOk(consumer, queue, '$nack', id)
  const second = await next
  const firstBackoffMs = Date.now() - nackedAt
  assert.ok(firstBackoffMs >= 250, `redelivered ${firstBackoffMs} ms after the nack, before initialDelayMs`)
  assert.equal(messageIdOf(second), id)
  assert.equal(deliveryCountOf(second), 2)
  assert.equal(second.payload.toString(), 'work')

  nackedAt = Date.now()
  next = nextMessage(consumer)
  await settleOk(consumer, queue, '$nack', id)
  const third = await next
  const secondBackoffMs = Date.now() - nackedAt
  assert.ok(secondBackoffMs >= 500, `second backoff ${secondBackoffMs} ms, expected >= 250 x 2`)
  assert.equal(deliveryCountOf(third), 3)
  t.diagnostic(`backoffs: ${firstBackoffMs} ms, ${secondBackoffMs} ms`)

  await settleOk(consumer, queue, '$ack', id)
  await assert.rejects(nextMessage(consumer, undefined, QUIET_MS))
})

void test('$nack with delay-ms redelivers after that delay instead of the backoff', async (t) => {
  const { queue, consumer, first } = await oneMessage(t, { retry: { initialDelayMs: 50 } })
  const id = messageIdOf(first)

  const nackedAt = Date.now()
  let next = nextMessage(consumer)
  await settleOk(consumer, queue, '$nack', id, { 'delay-ms': '400' })
  const second = await next
  const waitedMs = Date.now() - nackedAt
  assert.ok(waitedMs >= 400, `redelivered ${waitedMs} ms after a nack with delay-ms 400`)
  assert.equal(messageIdOf(second), id)
  assert.equal(deliveryCountOf(second), 2)

  // delay-ms 0: due again at once.
  next = nextMessage(consumer, undefined, QUIET_MS)
  await settleOk(consumer, queue, '$nack', id, { 'delay-ms': '0' })
  assert.equal(deliveryCountOf(await next), 3)
  await settleOk(consumer, queue, '$ack', id)
})

void test('an unsettled delivery is redelivered after deliveryTimeoutMs with delivery-count 2', async (t) => {
  const { consumer, first, queue } = await oneMessage(t, {
    deliveryTimeoutMs: 300,
    retry: { initialDelayMs: 50 },
  })
  const deliveredAt = Date.now()
  const second = await nextMessage(consumer)
  const elapsedMs = Date.now() - deliveredAt
  assert.ok(elapsedMs >= 300, `redelivered after ${elapsedMs} ms, before deliveryTimeoutMs`)
  assert.equal(messageIdOf(second), messageIdOf(first))
  assert.equal(deliveryCountOf(second), 2)
  await settleOk(consumer, queue, '$ack', messageIdOf(second))
})

void test('$extend keeps a delivery alive past deliveryTimeoutMs', async (t) => {
  const { consumer, first, queue } = await oneMessage(t, {
    deliveryTimeoutMs: 400,
    retry: { initialDelayMs: 50 },
  })
  const id = messageIdOf(first)
  const received = collect(consumer)
  const deliveredAt = Date.now()
  // Still working: extend every 100 ms for 800 ms, twice the delivery timeout. A delivery that had
  // timed out would refuse the extend (0x80, not in flight) and come back with delivery-count 2.
  for (let i = 0; i < 8; i++) {
    await pace(100)
    await settleOk(consumer, queue, '$extend', id)
  }
  assert.ok(Date.now() - deliveredAt >= 800)
  await settleOk(consumer, queue, '$ack', id)
  await assert.rejects(nextMessage(consumer, undefined, QUIET_MS))
  assert.deepEqual(received, [], 'no redelivery while extended, none after the ack')
})
