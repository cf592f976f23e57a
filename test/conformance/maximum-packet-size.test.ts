// MQTT 5 Maximum Packet Size: [MQTT-3.1.2-24] the server never sends a packet larger than the
// client's Maximum Packet Size; [MQTT-3.1.2-25] such a PUBLISH is discarded for that client as if it
// had been delivered (a `$queue/` delivery is dead-lettered instead, see docs/queue-protocol.md);
// [MQTT-3.2.2-15] / §4.13 an inbound packet above the server's maximum gets DISCONNECT 0x95.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import mqttPacket from 'mqtt-packet'
import { pino } from 'pino'
import { connectClient, nextMessage, startTestServer, TIMEOUT_MS, uniqueId } from '../helpers/server.js'
import { within } from '../helpers/wait.js'
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

void test('[MQTT-3.2.2-15] by default Maximum Packet Size is 1 MiB: advertised, a larger PUBLISH gets DISCONNECT 0x95 (3.1.1: closed), each logged', async (t) => {
  const records: Array<{ msg: string; clientId?: string; bytes?: number; max?: number }> = []
  const logger = pino({ level: 'warn' }, { write: (line: string) => records.push(JSON.parse(line) as never) })
  const server = await startTestServer(t, { start: { logger } })
  const clientId = uniqueId('mps-default')
  const { client, connack } = await wireConnect(t, server.mqttPort, { clientId })
  assert.equal(connack.properties?.maximumPacketSize, 1_048_576)
  const big = { cmd: 'publish', topic: 'big', qos: 0, dup: false, retain: false } as const
  // Just fits: 1 MiB on the wire in all.
  const fixedAndTopic = mqttPacket.generate(
    { ...big, payload: Buffer.alloc(0) },
    { protocolVersion: 5 },
  ).length
  const fitting = Buffer.alloc(1_048_576 - fixedAndTopic - 2)
  assert.equal(mqttPacket.generate({ ...big, payload: fitting }, { protocolVersion: 5 }).length, 1_048_576)
  client.send({ ...big, payload: fitting })
  client.send({ cmd: 'pingreq' })
  await client.next('pingresp')
  client.send({ ...big, payload: Buffer.alloc(1_048_576) })
  assert.equal((await disconnectOf(client))?.reasonCode, 0x95)
  const v5Lines = records.filter((r) => r.clientId === clientId)
  assert.deepEqual(
    v5Lines.map((r) => [r.msg, r.max]),
    [['packet too large: DISCONNECT 0x95 [MQTT-3.2.2-15]', 1_048_576]],
  )

  const oldId = uniqueId('mps-311')
  const { client: old } = await wireConnect(t, server.mqttPort, { protocolVersion: 4, clientId: oldId })
  old.send({ ...big, payload: Buffer.alloc(1_048_576) })
  await within(old.closed, TIMEOUT_MS, 'the 3.1.1 connection to close')
  assert.deepEqual(
    records.filter((r) => r.clientId === oldId).map((r) => r.msg),
    ['packet too large: connection closed [MQTT-3.2.2-15]'],
  )
})
