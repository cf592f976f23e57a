// Persistent sessions and queues: a consumer with an MQTT 5 session (Clean Start 0, Session Expiry
// Interval 300) rejoins its groups when it reconnects, without subscribing again, and gets its
// unsettled deliveries again with `delivery-count` incremented; across a broker restart too.
import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import type { IClientOptions, MqttClient } from 'mqtt'
import {
  type Received,
  collect,
  connackOf,
  connectClient,
  nextMessage,
  startTestServer,
  tempDir,
  uniqueId,
  waitForCount,
} from '../helpers/server.js'
import { deliveryCountOf, messageIdOf, settleOk, subscribeQueue, uniqueQueue } from '../helpers/queues.js'

function sessionOptions(clientId: string): IClientOptions {
  return { clientId, clean: false, properties: { sessionExpiryInterval: 300 } }
}

/** Connects with the stored session; `received` collects from before CONNECT (resumes deliver at once). */
async function resume(
  t: TestContext,
  port: number,
  clientId: string,
): Promise<{ client: MqttClient; received: Received[] }> {
  let received: Received[] = []
  const client = await connectClient(t, port, sessionOptions(clientId), (c) => {
    received = collect(c)
  })
  assert.equal(connackOf(client).sessionPresent, true, 'the session was resumed')
  return { client, received }
}

void test('a consumer with a persistent session gets its unsettled delivery again after reconnecting, without subscribing', async (t) => {
  const server = await startTestServer(t)
  const queue = uniqueQueue('session')
  const clientId = uniqueId('sticky')
  const first = await connectClient(t, server.mqttPort, sessionOptions(clientId))
  const firstDelivery = nextMessage(first)
  await subscribeQueue(first, queue, uniqueId('g'))
  const publisher = await connectClient(t, server.mqttPort)
  await publisher.publishAsync(`$queue/${queue}`, 'job', { qos: 1 })
  const delivery = await firstDelivery
  assert.equal(deliveryCountOf(delivery), 1)
  await first.endAsync() // DISCONNECT with the delivery unsettled; the session stays (expiry 300 s)

  const { client, received } = await resume(t, server.mqttPort, clientId)
  await waitForCount(client, received, 1)
  const [again] = received
  assert.ok(again)
  assert.equal(again.payload.toString(), 'job')
  assert.equal(messageIdOf(again), messageIdOf(delivery))
  assert.equal(deliveryCountOf(again), 2)
  await settleOk(client, queue, '$ack', messageIdOf(again))

  // Still a member: new messages reach it too.
  await publisher.publishAsync(`$queue/${queue}`, 'next', { qos: 1 })
  await waitForCount(client, received, 2)
  const next = received[1]
  assert.ok(next)
  assert.equal(next.payload.toString(), 'next')
  assert.equal(deliveryCountOf(next), 1)
})

void test('a consumer with a persistent session gets its unsettled deliveries again after a broker restart', async (t) => {
  const dataDir = await tempDir(t)
  let server = await startTestServer(t, { dataDir })
  const queue = uniqueQueue('restart')
  const clientId = uniqueId('sticky')
  const consumer = await connectClient(t, server.mqttPort, sessionOptions(clientId))
  const before = collect(consumer)
  await subscribeQueue(consumer, queue, uniqueId('g'))
  const publisher = await connectClient(t, server.mqttPort)
  for (const payload of ['a', 'b', 'c']) await publisher.publishAsync(`$queue/${queue}`, payload, { qos: 1 })
  await waitForCount(consumer, before, 3)
  // One acked, two left unsettled.
  const acked = before.find((r) => r.payload.toString() === 'b')!
  await settleOk(consumer, queue, '$ack', messageIdOf(acked))

  await server.close()
  server = await startTestServer(t, { dataDir })

  const { client, received } = await resume(t, server.mqttPort, clientId)
  await waitForCount(client, received, 2)
  await assert.rejects(nextMessage(client, undefined, 300), 'nothing else comes back')
  assert.deepEqual(received.map((r) => r.payload.toString()).sort(), ['a', 'c'])
  for (const again of received) {
    assert.equal(deliveryCountOf(again), 2, `delivery-count of ${again.payload.toString()}`)
    const original = before.find((r) => r.payload.toString() === again.payload.toString())!
    assert.equal(messageIdOf(again), messageIdOf(original))
    await settleOk(client, queue, '$ack', messageIdOf(again))
  }

  // The membership survived the restart: a new message is delivered without a SUBSCRIBE.
  const publisher2 = await connectClient(t, server.mqttPort)
  await publisher2.publishAsync(`$queue/${queue}`, 'd', { qos: 1 })
  await waitForCount(client, received, 3)
  assert.equal(received[2]?.payload.toString(), 'd')
})
