// MQTT 5 session resumption: [MQTT-3.1.2-4] [MQTT-3.1.2-5] a CONNECT with Clean Start 0 resumes the
// stored session even without a Session Expiry Interval of its own (Session Present 1, the QoS 1/2
// messages stored while offline are delivered); [MQTT-3.3.2-5] an expired stored message is not sent,
// [MQTT-3.3.2-6] the others carry the remaining interval.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import type mqttPacket from 'mqtt-packet'
import { connectClient, startTestServer, uniqueId } from '../helpers/server.js'
import { uniqueQueue } from '../helpers/queues.js'
import { until } from '../helpers/wait.js'
import { wireConnect } from '../helpers/wire.js'

/** aedes' connected clients by id (not in its typings). */
function clientsOf(server: { aedes: unknown }): Record<string, unknown> {
  return (server.aedes as { clients: Record<string, unknown> }).clients
}

void test('[MQTT-3.1.2-4] [MQTT-3.1.2-5] [MQTT-3.3.2-5] [MQTT-3.3.2-6] Clean Start 0 without Session Expiry resumes: Session Present, stored messages, expiry honoured', async (t) => {
  const server = await startTestServer(t)
  const clientId = uniqueId('resume')
  const topic = `resume/${uniqueId()}`
  const first = await wireConnect(t, server.mqttPort, {
    clientId,
    properties: { sessionExpiryInterval: 300 },
  })
  first.client.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic, qos: 1 }] })
  await first.client.next('suback')
  first.client.send({ cmd: 'disconnect', reasonCode: 0 })
  await first.client.closed
  await until(() => clientsOf(server)[clientId] === undefined, 5_000, 'the session to go offline')

  const pub = await connectClient(t, server.mqttPort)
  const publishedAt = Date.now()
  await pub.publishAsync(topic, 'short', { qos: 1, properties: { messageExpiryInterval: 1 } })
  await pub.publishAsync(topic, 'long', { qos: 1, properties: { messageExpiryInterval: 100 } })
  await pub.publishAsync(topic, 'forever', { qos: 1 })
  // The 1 s message must have expired before the session resumes (waiting on the clock, not on an event).
  await until(() => Date.now() > publishedAt + 1_100, 3_000, 'the 1 s message to expire')

  const second = await wireConnect(t, server.mqttPort, { clientId, clean: false })
  assert.equal(second.connack.sessionPresent, true)
  await second.client.waitFor(
    (ps) => ps.filter((p) => p.cmd === 'publish').length >= 2,
    'the stored messages',
  )
  const got = second.client.publishes()
  assert.deepEqual(
    got.map((p) => p.payload.toString()),
    ['long', 'forever'],
  )
  const remaining = (got[0] as mqttPacket.IPublishPacket).properties?.messageExpiryInterval ?? 0
  assert.ok(remaining > 0 && remaining < 100, `remaining interval ${remaining} s`)
  assert.equal(got[1]?.properties?.messageExpiryInterval, undefined)
})

void test('[MQTT-3.1.2-5] a $queue/ consumer that resumes with Clean Start 0 and no Session Expiry gets its backlog', async (t) => {
  const server = await startTestServer(t)
  const clientId = uniqueId('qresume')
  const queue = uniqueQueue('resume')
  const first = await wireConnect(t, server.mqttPort, {
    clientId,
    properties: { sessionExpiryInterval: 300 },
  })
  first.client.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: `$queue/${queue}`, qos: 1 }] })
  await first.client.next('suback')
  first.client.send({ cmd: 'disconnect', reasonCode: 0 })
  await first.client.closed
  await until(() => clientsOf(server)[clientId] === undefined, 5_000, 'the session to go offline')
  const pub = await connectClient(t, server.mqttPort)
  await pub.publishAsync(`$queue/${queue}`, 'job', { qos: 1 })

  const second = await wireConnect(t, server.mqttPort, { clientId, clean: false })
  assert.equal(second.connack.sessionPresent, true)
  const delivery = await second.client.next<mqttPacket.IPublishPacket>('publish')
  assert.equal(delivery.payload.toString(), 'job')
})
