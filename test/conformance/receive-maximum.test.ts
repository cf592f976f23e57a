// MQTT 5 Receive Maximum, both directions: [MQTT-3.3.4-9] the server never has more unacknowledged
// QoS 1/2 PUBLISH packets in flight to a client than the client's Receive Maximum (plain and
// `$queue/` deliveries share that budget), and [MQTT-3.3.4-8] / §3.2.2.3.3 it advertises its own
// Receive Maximum and disconnects (0x93) a client that sends more.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { collect, connectClient, startTestServer, uniqueId, waitForCount } from '../helpers/server.js'
import { mqttSettings } from '../helpers/conformance.js'
import { disconnectOf, wireConnect, type WireClient } from '../helpers/wire.js'

/** Fails the test as soon as more than `max` QoS 1/2 PUBLISH packets are unacknowledged. */
function watchInflight(client: WireClient, max: number, acked: () => number): () => void {
  let worst = 0
  client.socket.on('data', () => {
    // runs after the parser's handler (registered first), so `packets` is current
    const unacked = client.publishes().filter((p) => p.qos > 0).length - acked()
    worst = Math.max(worst, unacked)
  })
  return () => assert.ok(worst <= max, `${worst} unacknowledged PUBLISH in flight, Receive Maximum ${max}`)
}

void test('[MQTT-3.3.4-9] no more unacknowledged QoS 1 PUBLISH than the client Receive Maximum; the rest follow in order', async (t) => {
  const server = await startTestServer(t)
  const topic = `rm/${uniqueId()}`
  const { client } = await wireConnect(t, server.mqttPort, { properties: { receiveMaximum: 2 } })
  let acked = 0
  const check = watchInflight(client, 2, () => acked)
  client.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic, qos: 1 }] })
  await client.next('suback')

  const pub = await connectClient(t, server.mqttPort)
  for (let i = 0; i < 5; i++) await pub.publishAsync(topic, String(i), { qos: 1 })
  // A QoS 0 message published after them overtakes the held-back QoS 1 ones: once it is here, every
  // QoS 1 message the broker would send without a window has been sent.
  await pub.publishAsync(topic, 'marker', { qos: 0 })
  await client.waitFor((ps) => ps.some((p) => p.cmd === 'publish' && p.qos === 0), 'the QoS 0 marker')
  assert.equal(client.publishes().filter((p) => p.qos === 1).length, 2)

  for (let i = 0; i < 5; i++) {
    const delivery = client.publishes().filter((p) => p.qos === 1)[i]
    assert.ok(delivery !== undefined)
    assert.equal(delivery.payload.toString(), String(i), 'in publish order')
    acked++
    client.send({ cmd: 'puback', messageId: delivery.messageId ?? 0 })
    if (i < 4)
      await client.waitFor(
        (ps) => ps.filter((p) => p.cmd === 'publish' && p.qos === 1).length >= Math.min(5, i + 3),
        `delivery ${i + 3}`,
      )
  }
  check()
})

void test('[MQTT-3.3.4-9] $queue/ and plain deliveries to one client share its Receive Maximum', async (t) => {
  const server = await startTestServer(t)
  const topic = `rm/${uniqueId()}`
  const queue = `it/${uniqueId('rmq')}`
  const { client } = await wireConnect(t, server.mqttPort, { properties: { receiveMaximum: 2 } })
  let acked = 0
  const check = watchInflight(client, 2, () => acked)
  client.send({
    cmd: 'subscribe',
    messageId: 1,
    subscriptions: [
      { topic, qos: 1 },
      { topic: `$queue/${queue}`, qos: 1 },
    ],
  })
  await client.next('suback')
  const pub = await connectClient(t, server.mqttPort)
  await pub.publishAsync(topic, 'p1', { qos: 1 })
  await pub.publishAsync(topic, 'p2', { qos: 1 })
  await client.waitFor((ps) => ps.filter((p) => p.cmd === 'publish').length >= 2, 'two plain deliveries')
  await pub.publishAsync(`$queue/${queue}`, 'job', { qos: 1 })
  await pub.publishAsync(topic, 'marker', { qos: 0 })
  await client.waitFor((ps) => ps.some((p) => p.cmd === 'publish' && p.qos === 0), 'the QoS 0 marker')
  assert.equal(client.publishes().filter((p) => p.topic.startsWith('$queue/')).length, 0, 'window full')

  const first = client.publishes()[0]
  acked++
  client.send({ cmd: 'puback', messageId: first?.messageId ?? 0 })
  await client.waitFor(
    (ps) => ps.some((p) => p.cmd === 'publish' && p.topic === `$queue/${queue}`),
    'the queue delivery once a slot is free',
  )
  check()
})

void test('[MQTT-3.3.4-8] CONNACK advertises the configured Receive Maximum; one QoS 2 PUBLISH too many gets DISCONNECT 0x93', async (t) => {
  const server = await startTestServer(t, { raw: mqttSettings({ receiveMaximum: 3 }) })
  const topic = `flood/${uniqueId()}`
  // A bystander with a subscription and a retained message: the flood must not disturb it.
  const bystander = await connectClient(t, server.mqttPort)
  await bystander.publishAsync(`${topic}/retained`, 'kept', { qos: 1, retain: true })
  await bystander.subscribeAsync(`${topic}/#`, { qos: 2 })
  const got = collect(bystander)

  const { client, connack } = await wireConnect(t, server.mqttPort)
  assert.equal(connack.properties?.receiveMaximum, 3)
  for (let id = 1; id <= 4; id++) {
    client.send({
      cmd: 'publish',
      topic,
      payload: Buffer.from(String(id)),
      qos: 2,
      dup: false,
      retain: false,
      messageId: id,
    })
  }
  const disconnect = await disconnectOf(client)
  assert.equal(disconnect?.reasonCode, 0x93)
  assert.equal(client.publishes().length, 0)

  // The bystander got the three accepted messages, keeps its subscription and its retained message.
  await waitForCount(bystander, got, 3)
  await bystander.publishAsync(topic, 'after', { qos: 2 })
  await waitForCount(bystander, got, 4)
  const again = await connectClient(t, server.mqttPort)
  const retained = collect(again)
  await again.subscribeAsync(`${topic}/retained`, { qos: 1 })
  await waitForCount(again, retained, 1)
  assert.equal(retained[0]?.payload.toString(), 'kept')
})
