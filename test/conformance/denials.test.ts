// Authorization denials: a refused SUBSCRIBE gets 0x80 on 3.1.1 (MQTT 3.1.1 §3.9.3) and 0x87 (Not
// authorized) on v5 (§3.9.3); a refused v5 PUBLISH gets its reason code in PUBACK/PUBREC and the
// connection stays up ([MQTT-3.3.5-2] allows closing only on 3.1.1, which has no negative ack).
import { test } from 'node:test'
import assert from 'node:assert/strict'
import type mqttPacket from 'mqtt-packet'
import { startTestServer, uniqueId } from '../helpers/server.js'
import { runMosquitto } from '../helpers/conformance.js'
import { NotAuthorizedError } from '../../src/protocol/hooks.js'
import { wireConnect } from '../helpers/wire.js'

void test('§3.9.3 a SUBSCRIBE refused by authorization: 0x80 on 3.1.1, 0x87 on v5; the connection stays up', async (t) => {
  const server = await startTestServer(t)
  server.hooks.authorizeSubscribe.unshift((_client, sub) =>
    sub.topic.startsWith('secret/') ? null : undefined,
  )
  for (const [protocolVersion, code] of [
    [4, 0x80],
    [5, 0x87],
  ] as const) {
    const { client } = await wireConnect(t, server.mqttPort, { protocolVersion })
    client.send({
      cmd: 'subscribe',
      messageId: 1,
      subscriptions: [
        { topic: 'secret/x', qos: 1 },
        { topic: 'open/x', qos: 1 },
      ],
    })
    const suback = await client.next<mqttPacket.ISubackPacket>('suback')
    assert.deepEqual(suback.granted, [code, 1], `v${protocolVersion}`)
    client.send({ cmd: 'pingreq' })
    await client.next('pingresp')
  }
})

void test('[MQTT-3.3.5-2] a v5 PUBLISH refused by authorization gets PUBACK/PUBREC 0x87 and the connection stays up', async (t) => {
  const server = await startTestServer(t)
  server.hooks.authorizePublish.unshift((_client, packet) => {
    if (packet.topic.startsWith('secret/')) throw new NotAuthorizedError('no publishing to secret/')
  })
  const { client } = await wireConnect(t, server.mqttPort)
  client.send({
    cmd: 'publish',
    topic: 'secret/a',
    payload: Buffer.from('x'),
    qos: 1,
    dup: false,
    retain: false,
    messageId: 1,
  })
  const puback = await client.next<mqttPacket.IPubackPacket>('puback')
  assert.equal(puback.reasonCode, 0x87)
  assert.equal(puback.properties?.reasonString, 'no publishing to secret/')
  client.send({
    cmd: 'publish',
    topic: 'secret/b',
    payload: Buffer.from('x'),
    qos: 2,
    dup: false,
    retain: false,
    messageId: 2,
  })
  assert.equal((await client.next<mqttPacket.IPubrecPacket>('pubrec')).reasonCode, 0x87)
  client.send({ cmd: 'pingreq' })
  await client.next('pingresp')
  assert.equal(client.isClosed(), false)

  // What a user sees: mosquitto_pub -q 1 on v5 reports the refusal and exits non-zero... or 0; it
  // must not see a dropped connection.
  const run = await runMosquitto(t, 'mosquitto_pub', [
    ...['-V', 'mqttv5', '-h', '127.0.0.1', '-p', String(server.mqttPort), '-i', uniqueId('deny')],
    ...['-t', 'secret/c', '-m', 'x', '-q', '1', '-d'],
  ])
  assert.match(run.stdout + run.stderr, /PUBACK.*\(rc135\)|Not authorized|rc135/i)
})
