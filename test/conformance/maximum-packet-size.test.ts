// MQTT 5 Maximum Packet Size: [MQTT-3.1.2-24] the server never sends a packet larger than the
// client's Maximum Packet Size; [MQTT-3.1.2-25] such a PUBLISH is discarded for that client as if it
// had been delivered (a `$queue/` delivery is dead-lettered instead, see docs/queue-protocol.md);
// [MQTT-3.2.2-15] / §4.13 an inbound packet above the server's maximum gets DISCONNECT 0x95.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import mqttPacket from 'mqtt-packet'
import { connectClient, nextMessage, startTestServer, uniqueId } from '../helpers/server.js'
import { mqttSettings } from '../helpers/conformance.js'
import { userValue, uniqueQueue, subscribeQueue } from '../helpers/queues.js'
import { disconnectOf, openWire, wireConnect } from '../helpers/wire.js'

void test('[MQTT-3.1.2-24] [MQTT-3.1.2-25] a PUBLISH larger than the client Maximum Packet Size is not sent, and does not hold a Receive Maximum slot', async (t) => {
  const server = await startTestServer(t)
  const topic = `mps/${uniqueId()}`
  const { client } = await wireConnect(t, server.mqttPort, {
    properties: { maximumPacketSize: 128, receiveMaximum: 1 },
  })
  client.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic, qos: 1 }] })
  await client.next('suback')
  const pub = await connectClient(t, server.mqttPort)
  await pub.publishAsync(topic, Buffer.alloc(300, 'x'), { qos: 1 })
  await pub.publishAsync(topic, Buffer.alloc(300, 'y'), { qos: 0 })
  await pub.publishAsync(topic, 'small', { qos: 1 })
  const delivery = await client.next<mqttPacket.IPublishPacket>('publish')
  assert.equal(delivery.payload.toString(), 'small')
  for (const p of client.packets) {
    const bytes = mqttPacket.generate(p, { protocolVersion: 5 }).length
    assert.ok(bytes <= 128, `${p.cmd} of ${bytes} bytes`)
  }
})

void test('[MQTT-3.1.2-25] a $queue/ delivery larger than the consumer Maximum Packet Size is dead-lettered, not retried', async (t) => {
  const server = await startTestServer(t)
  const queue = uniqueQueue('mps')
  const { client } = await wireConnect(t, server.mqttPort, { properties: { maximumPacketSize: 256 } })
  client.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: `$queue/${queue}`, qos: 1 }] })
  await client.next('suback')
  const dlq = await connectClient(t, server.mqttPort)
  const deadLetter = nextMessage(dlq)
  await subscribeQueue(dlq, `dlq/${queue}`)
  const pub = await connectClient(t, server.mqttPort)
  await pub.publishAsync(`$queue/${queue}`, Buffer.alloc(1000, 'x'), { qos: 1 })
  await pub.publishAsync(`$queue/${queue}`, 'small', { qos: 1 })
  const dead = await deadLetter
  assert.equal(dead.payload.length, 1000)
  assert.equal(userValue(dead.packet, 'dlq-reason'), 'rejected')
  assert.match(userValue(dead.packet, 'reason'), /Maximum Packet Size/)
  const delivery = await client.next<mqttPacket.IPublishPacket>('publish')
  assert.equal(delivery.payload.toString(), 'small')
})

void test('[MQTT-3.2.2-15] CONNACK advertises the configured Maximum Packet Size; a larger PUBLISH gets DISCONNECT 0x95, even right after CONNACK', async (t) => {
  const server = await startTestServer(t, { raw: mqttSettings({ maximumPacketSize: 1024 }) })
  const { client, connack } = await wireConnect(t, server.mqttPort)
  assert.equal(connack.properties?.maximumPacketSize, 1024)
  client.send({
    cmd: 'publish',
    topic: 'big',
    payload: Buffer.alloc(2000),
    qos: 0,
    dup: false,
    retain: false,
  })
  assert.equal((await disconnectOf(client))?.reasonCode, 0x95)

  // CONNECT and the oversize PUBLISH in one write: the PUBLISH is handled while the session is
  // still being set up, and must get the same DISCONNECT.
  const early = await openWire(t, server.mqttPort)
  const connect = mqttPacket.generate(
    {
      cmd: 'connect',
      protocolId: 'MQTT',
      protocolVersion: 5,
      clean: true,
      keepalive: 0,
      clientId: uniqueId('early'),
    },
    { protocolVersion: 5 },
  )
  const publish = mqttPacket.generate(
    { cmd: 'publish', topic: 'big', payload: Buffer.alloc(2000), qos: 0, dup: false, retain: false },
    { protocolVersion: 5 },
  )
  early.sendRaw(Buffer.concat([connect, publish]))
  assert.equal((await early.next<mqttPacket.IConnackPacket>('connack')).reasonCode, 0)
  assert.equal((await disconnectOf(early))?.reasonCode, 0x95)
})
