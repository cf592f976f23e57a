// Consumer groups through the whole broker: real mqtt.js clients, the real queue core on LevelDB.
// Competing consumers split a queue, every group gets every message, per-key order holds across
// nacks and retries, and a consumer never has more unsettled deliveries than its Receive Maximum.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import type { MqttClient } from 'mqtt'
import { type Received, connectClient, nextMessage, startTestServer, uniqueId } from '../helpers/server.js'
import {
  declareQueue,
  deliveryCountOf,
  messageIdOf,
  settle,
  settleOk,
  subscribeQueue,
  uniqueQueue,
  userValue,
} from '../helpers/queues.js'
import { until } from '../helpers/wait.js'

/** Long enough for any of these tests; a bounded wait for "nothing more arrives". */
const QUIET_MS = 300

interface Delivery {
  consumer: number
  received: Received
}

/** Consumers that ack every delivery at once; `failures` collects refused or failed acks. */
async function ackingConsumers(
  t: Parameters<typeof connectClient>[0],
  port: number,
  queue: string,
  group: string,
  count: number,
) {
  const deliveries: Delivery[] = []
  const failures: string[] = []
  let acked = 0
  const clients: MqttClient[] = []
  for (let i = 0; i < count; i++) {
    const client = await connectClient(t, port, { clientId: uniqueId('worker') })
    client.on('message', (topic, payload, packet) => {
      const received = { topic, payload, packet }
      deliveries.push({ consumer: i, received })
      settle(client, queue, '$ack', messageIdOf(received)).then(
        (outcome) => {
          if (outcome.reasonCode === 0) acked++
          else failures.push(`0x${outcome.reasonCode.toString(16)} ${outcome.reasonString ?? ''}`)
        },
        (err: unknown) => failures.push(String(err)),
      )
    })
    await subscribeQueue(client, queue, group)
    clients.push(client)
  }
  return { clients, deliveries, failures, acked: () => acked }
}

void test('3 competing consumers in one group split 200 messages; each is delivered exactly once', async (t) => {
  const server = await startTestServer(t)
  const queue = uniqueQueue('compete')
  const group = uniqueId('g')
  const n = 200
  const workers = await ackingConsumers(t, server.mqttPort, queue, group, 3)

  const publisher = await connectClient(t, server.mqttPort)
  const payloads = Array.from({ length: n }, (_, i) => `job-${i}`)
  await Promise.all(payloads.map((payload) => publisher.publishAsync(`$queue/${queue}`, payload, { qos: 1 })))
  await until(() => workers.acked() + workers.failures.length >= n, 10_000, `${n} acks`)
  assert.deepEqual(workers.failures, [])
  // Nothing comes back once everything is acked.
  await assert.rejects(nextMessage(workers.clients[0]!, undefined, QUIET_MS))

  const { deliveries } = workers
  assert.equal(deliveries.length, n, 'one delivery per message')
  assert.deepEqual(deliveries.map((d) => d.received.payload.toString()).sort(), [...payloads].sort())
  assert.equal(new Set(deliveries.map((d) => messageIdOf(d.received))).size, n, 'distinct message-ids')
  for (const { received } of deliveries) {
    assert.equal(deliveryCountOf(received), 1)
    assert.equal(userValue(received.packet, 'group-id'), group)
  }
  const perConsumer = [0, 1, 2].map((i) => deliveries.filter((d) => d.consumer === i).length)
  t.diagnostic(`deliveries per consumer: ${perConsumer.join(', ')}`)
  assert.ok(
    perConsumer.every((count) => count > 0),
    `each consumer got some: ${perConsumer.join(', ')}`,
  )
})

void test('two groups each get every message, each once', async (t) => {
  const server = await startTestServer(t)
  const queue = uniqueQueue('fanout')
  const billing = uniqueId('billing')
  const shipping = uniqueId('shipping')
  const n = 60
  const a = await ackingConsumers(t, server.mqttPort, queue, billing, 2)
  const b = await ackingConsumers(t, server.mqttPort, queue, shipping, 1)

  const publisher = await connectClient(t, server.mqttPort)
  const payloads = Array.from({ length: n }, (_, i) => `order-${i}`)
  await Promise.all(payloads.map((payload) => publisher.publishAsync(`$queue/${queue}`, payload, { qos: 1 })))
  await until(() => a.acked() + a.failures.length >= n, 10_000, `${n} acks in ${billing}`)
  await until(() => b.acked() + b.failures.length >= n, 10_000, `${n} acks in ${shipping}`)
  assert.deepEqual([...a.failures, ...b.failures], [])
  await assert.rejects(nextMessage(b.clients[0]!, undefined, QUIET_MS))

  for (const [workers, group] of [
    [a, billing],
    [b, shipping],
  ] as const) {
    assert.deepEqual(
      workers.deliveries.map((d) => d.received.payload.toString()).sort(),
      [...payloads].sort(),
      `${group} got every message once`,
    )
    for (const { received } of workers.deliveries) {
      assert.equal(userValue(received.packet, 'group-id'), group)
      assert.equal(deliveryCountOf(received), 1)
    }
  }
})

void test('per-key order holds with 3 consumers while deliveries are nacked and retried', async (t) => {
  const queue = uniqueQueue('ordered')
  const server = await startTestServer(t, {
    raw: declareQueue(queue, { retry: { initialDelayMs: 50, factor: 1, maxDeliveries: 5 } }),
  })
  const group = uniqueId('g')
  const keys = ['alpha', 'bravo', 'charlie', 'delta', 'echo', 'foxtrot']
  const perKey = 15

  /** Processed (acked) indexes per key, in processing order. */
  const processed = new Map<string, number[]>(keys.map((key) => [key, []]))
  const violations: string[] = []
  const failures: string[] = []
  const workedBy = new Set<number>()
  let nacks = 0
  let done = 0
  for (let i = 0; i < 3; i++) {
    const client = await connectClient(t, server.mqttPort, { clientId: uniqueId('ordered') })
    client.on('message', (topic, payload, packet) => {
      const received = { topic, payload, packet }
      const [key = '', text = ''] = payload.toString().split(':')
      const index = Number(text)
      const count = deliveryCountOf(received)
      const seen = processed.get(key) ?? []
      // Everything before this message of the same key must have been processed already.
      if (seen.length !== index) {
        violations.push(`${key}:${index} (delivery ${count}) delivered after ${key}:[${seen.join(',')}]`)
      }
      workedBy.add(i)
      const id = messageIdOf(received)
      const nackFirst = index % 3 === 1 && count === 1
      const nackSecond = index % 5 === 4 && count <= 2
      let outcome
      if (nackFirst || nackSecond) {
        nacks++
        // Half the retries follow the backoff policy, half ask for their own delay.
        outcome = settle(client, queue, '$nack', id, index % 2 === 0 ? { 'delay-ms': '20' } : {})
      } else {
        seen.push(index)
        outcome = settle(client, queue, '$ack', id)
      }
      outcome.then(
        (o) => {
          if (o.reasonCode !== 0) failures.push(`${key}:${index} 0x${o.reasonCode.toString(16)}`)
          else if (!(nackFirst || nackSecond)) done++
        },
        (err: unknown) => failures.push(String(err)),
      )
    })
    await subscribeQueue(client, queue, group)
  }

  const publisher = await connectClient(t, server.mqttPort)
  for (let index = 0; index < perKey; index++) {
    for (const key of keys) {
      await publisher.publishAsync(`$queue/${queue}`, `${key}:${index}`, {
        qos: 1,
        properties: { userProperties: { 'partition-key': key } },
      })
    }
  }
  const total = keys.length * perKey
  await until(() => done + failures.length >= total, 15_000, `${total} messages processed`)
  assert.deepEqual(failures, [])
  assert.deepEqual(violations, [])
  const expected = Array.from({ length: perKey }, (_, i) => i)
  for (const key of keys) assert.deepEqual(processed.get(key), expected, `processing order of ${key}`)
  assert.ok(nacks >= keys.length * 5, `deliveries were nacked (${nacks})`)
  assert.ok(workedBy.size >= 2, `the keys were spread over consumers (${workedBy.size} worked)`)
})

for (const ordering of ['none', 'partition'] as const) {
  void test(`a consumer with Receive Maximum 2 never has more than 2 unsettled deliveries (ordering ${ordering})`, async (t) => {
    const queue = uniqueQueue('recvmax')
    const server = await startTestServer(t, { raw: declareQueue(queue, { ordering }) })
    const n = 12
    const publisher = await connectClient(t, server.mqttPort)
    for (let i = 0; i < n; i++) await publisher.publishAsync(`$queue/${queue}`, `m${i}`, { qos: 1 })

    const consumer = await connectClient(t, server.mqttPort, {
      clientId: uniqueId('narrow'),
      properties: { receiveMaximum: 2 },
    })
    const unsettled: string[] = []
    let maxUnsettled = 0
    let received = 0
    consumer.on('message', (topic, payload, packet) => {
      received++
      unsettled.push(messageIdOf({ topic, payload, packet }))
      maxUnsettled = Math.max(maxUnsettled, unsettled.length)
    })
    await subscribeQueue(consumer, queue, uniqueId('g'))
    await until(() => unsettled.length >= 2, 5_000, 'the first 2 deliveries')
    // The queue holds 10 more, but the consumer's window is full.
    await assert.rejects(nextMessage(consumer, undefined, QUIET_MS))
    assert.equal(unsettled.length, 2)

    for (let acked = 0; acked < n; acked++) {
      await until(
        () => unsettled.length === Math.min(2, n - acked),
        5_000,
        `window refilled after ${acked} acks`,
      )
      const id = unsettled.shift()!
      await settleOk(consumer, queue, '$ack', id)
    }
    assert.equal(received, n)
    assert.equal(maxUnsettled, 2)
  })
}
