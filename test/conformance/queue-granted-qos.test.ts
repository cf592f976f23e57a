// [MQTT-3.8.4-8] / [MQTT-3.3.5-1] a message is never delivered at a QoS above the one granted: a QoS 0
// `$queue/` subscription gets QoS 0 deliveries. A v5 consumer still settles them explicitly; a 3.1.1
// QoS 0 consumer's delivery is settled as acked when written (at most once: what it asked for).
import { test } from 'node:test'
import assert from 'node:assert/strict'
import type mqttPacket from 'mqtt-packet'
import { startTestServer, connectClient } from '../helpers/server.js'
import { declareQueue, uniqueQueue } from '../helpers/queues.js'
import { wireConnect } from '../helpers/wire.js'

void test('[MQTT-3.8.4-8] a QoS 0 $queue/ subscription (v5) gets QoS 0 deliveries and settles them with $ack', async (t) => {
  const queue = uniqueQueue('q0')
  const server = await startTestServer(t, { raw: declareQueue(queue, { ordering: 'strict' }) })
  const { client } = await wireConnect(t, server.mqttPort)
  client.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: `$queue/${queue}`, qos: 0 }] })
  assert.deepEqual((await client.next<mqttPacket.ISubackPacket>('suback')).granted, [0])
  const pub = await connectClient(t, server.mqttPort)
  await pub.publishAsync(`$queue/${queue}`, 'one', { qos: 1 })
  await pub.publishAsync(`$queue/${queue}`, 'two', { qos: 1 })
  const first = await client.next<mqttPacket.IPublishPacket>('publish')
  assert.equal(first.qos, 0)
  assert.equal(first.payload.toString(), 'one')
  const messageId = first.properties?.userProperties?.['message-id']
  assert.equal(typeof messageId, 'string')
  client.send({
    cmd: 'publish',
    topic: `$queue/${queue}/$ack`,
    payload: Buffer.alloc(0),
    qos: 1,
    dup: false,
    retain: false,
    messageId: 7,
    properties: { userProperties: { 'message-id': messageId as string } },
  })
  assert.equal((await client.next<mqttPacket.IPubackPacket>('puback')).reasonCode, 0)
  const second = await client.next<mqttPacket.IPublishPacket>('publish')
  assert.equal(second.payload.toString(), 'two')
  assert.equal(second.qos, 0)
})

void test('[MQTT-3.8.4-8] a QoS 0 $queue/ subscription (3.1.1) gets QoS 0 deliveries, settled as acked when written', async (t) => {
  const queue = uniqueQueue('q0v4')
  const server = await startTestServer(t, { raw: declareQueue(queue, { ordering: 'strict' }) })
  const { client } = await wireConnect(t, server.mqttPort, { protocolVersion: 4 })
  client.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: `$queue/${queue}`, qos: 0 }] })
  assert.deepEqual((await client.next<mqttPacket.ISubackPacket>('suback')).granted, [0])
  const pub = await connectClient(t, server.mqttPort)
  await pub.publishAsync(`$queue/${queue}`, 'one', { qos: 1 })
  await pub.publishAsync(`$queue/${queue}`, 'two', { qos: 1 })
  // One partition, one delivery in flight at a time: the second arrives only because the first was
  // settled without any PUBACK or settle publish.
  await client.waitFor((ps) => ps.filter((p) => p.cmd === 'publish').length >= 2, 'both deliveries')
  assert.deepEqual(
    client.publishes().map((p) => [p.payload.toString(), p.qos]),
    [
      ['one', 0],
      ['two', 0],
    ],
  )
})
