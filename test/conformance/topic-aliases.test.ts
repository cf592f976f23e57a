// MQTT 5 Topic Aliases: [MQTT-3.3.2-8] .. [MQTT-3.3.2-10] an alias of 0 or above the server's Topic
// Alias Maximum is a protocol error answered with DISCONNECT 0x94 (also on the first packet after
// CONNACK); the server advertises its maximum (`mqtt.topicAliasMaximum`, default 10) and uses outbound
// aliases up to the client's Topic Alias Maximum ([MQTT-3.3.2-11]).
import { test } from 'node:test'
import assert from 'node:assert/strict'
import mqttPacket from 'mqtt-packet'
import { connectClient, nextMessage, startTestServer, uniqueId } from '../helpers/server.js'
import { mqttSettings } from '../helpers/conformance.js'
import { disconnectOf, openWire, wireConnect } from '../helpers/wire.js'

void test('[MQTT-3.2.2-17] CONNACK advertises Topic Alias Maximum 10 by default, and the configured value', async (t) => {
  const server = await startTestServer(t)
  const { connack } = await wireConnect(t, server.mqttPort)
  assert.equal(connack.properties?.topicAliasMaximum, 10)
  const other = await startTestServer(t, { raw: mqttSettings({ topicAliasMaximum: 3 }) })
  const { connack: configured } = await wireConnect(t, other.mqttPort)
  assert.equal(configured.properties?.topicAliasMaximum, 3)
})

void test('[MQTT-3.3.2-8] [MQTT-3.3.2-9] [MQTT-3.3.2-10] inbound aliases work; alias 0 or above the maximum gets DISCONNECT 0x94', async (t) => {
  const server = await startTestServer(t)
  const topic = `alias/${uniqueId()}`
  const sub = await connectClient(t, server.mqttPort)
  await sub.subscribeAsync(topic, { qos: 0 })
  const { client } = await wireConnect(t, server.mqttPort)
  const first = nextMessage(sub)
  client.send({
    cmd: 'publish',
    topic,
    payload: Buffer.from('a'),
    qos: 0,
    dup: false,
    retain: false,
    properties: { topicAlias: 10 },
  })
  assert.equal((await first).payload.toString(), 'a')
  const second = nextMessage(sub)
  client.send({
    cmd: 'publish',
    topic: '',
    payload: Buffer.from('b'),
    qos: 0,
    dup: false,
    retain: false,
    properties: { topicAlias: 10 },
  })
  assert.equal((await second).topic, topic)

  for (const alias of [0, 11]) {
    const { client: bad } = await wireConnect(t, server.mqttPort)
    bad.send({
      cmd: 'publish',
      topic,
      payload: Buffer.from('x'),
      qos: 0,
      dup: false,
      retain: false,
      properties: { topicAlias: alias },
    })
    assert.equal((await disconnectOf(bad))?.reasonCode, 0x94, `alias ${alias}`)
  }
})

void test('[MQTT-3.3.2-9] an invalid alias in the first packet after CONNACK still gets DISCONNECT 0x94', async (t) => {
  const server = await startTestServer(t)
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
    {
      cmd: 'publish',
      topic: 't',
      payload: Buffer.from('x'),
      qos: 0,
      dup: false,
      retain: false,
      properties: { topicAlias: 11 },
    },
    { protocolVersion: 5 },
  )
  early.sendRaw(Buffer.concat([connect, publish]))
  assert.equal((await early.next<mqttPacket.IConnackPacket>('connack')).reasonCode, 0)
  assert.equal((await disconnectOf(early))?.reasonCode, 0x94)
})

void test('[MQTT-3.3.2-11] outbound PUBLISH uses topic aliases up to the client Topic Alias Maximum', async (t) => {
  const server = await startTestServer(t)
  const topic = `out/${uniqueId()}`
  const queue = `it/${uniqueId('alias')}`
  const { client } = await wireConnect(t, server.mqttPort, { properties: { topicAliasMaximum: 2 } })
  client.send({
    cmd: 'subscribe',
    messageId: 1,
    subscriptions: [
      { topic: `${topic}/+`, qos: 0 },
      { topic: `$queue/${queue}`, qos: 1 },
    ],
  })
  await client.next('suback')
  const pub = await connectClient(t, server.mqttPort)
  for (const leaf of ['a', 'a', 'b', 'c', 'a']) await pub.publishAsync(`${topic}/${leaf}`, leaf, { qos: 0 })
  await pub.publishAsync(`$queue/${queue}`, 'q1', { qos: 1 })
  await client.waitFor((ps) => ps.filter((p) => p.cmd === 'publish').length >= 6, 'six deliveries')
  const seen = client
    .publishes()
    .map((p) => ({ topic: p.topic, alias: p.properties?.topicAlias, payload: p.payload.toString() }))
  // The client resolves aliases like this; every delivery must resolve to its real topic.
  const aliases = new Map<number, string>()
  for (const s of seen) {
    if (s.alias !== undefined) {
      assert.ok(s.alias >= 1 && s.alias <= 2, `alias ${s.alias} within the client maximum`)
      if (s.topic !== '') aliases.set(s.alias, s.topic)
    }
    const resolved = s.topic !== '' ? s.topic : aliases.get(s.alias ?? -1)
    const expected = s.payload === 'q1' ? `$queue/${queue}` : `${topic}/${s.payload}`
    assert.equal(resolved, expected)
  }
  assert.equal(seen[1]?.topic, '', 'the repeated topic is sent as its alias alone')
})
