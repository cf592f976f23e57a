// MQTT 5 Shared Subscriptions (§4.8.2): [MQTT-3.2.2-13] CONNACK says Shared Subscription Available;
// each message goes to one member of a group; a member's unacknowledged QoS 1/2 messages go to another
// member when its session ends with the connection (§4.8.2 "SHOULD send ... to another Client"); SUBACK
// codes are valid for the client's protocol version.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import type mqttPacket from 'mqtt-packet'
import { collect, connectClient, startTestServer, uniqueId, waitForCount } from '../helpers/server.js'
import { runMosquitto } from '../helpers/conformance.js'
import { wireConnect } from '../helpers/wire.js'

void test('[MQTT-3.2.2-13] CONNACK: Shared Subscription Available', async (t) => {
  const server = await startTestServer(t)
  const { connack } = await wireConnect(t, server.mqttPort)
  assert.equal(connack.properties?.sharedSubscriptionAvailable, true)
})

void test('§4.8.2 each message goes to one member of the group (mosquitto_sub members, mosquitto_pub)', async (t) => {
  const server = await startTestServer(t)
  const topic = `share/${uniqueId()}`
  const members = [1, 2].map(() => connectClient(t, server.mqttPort))
  const got: Array<ReturnType<typeof collect>> = []
  for (const m of await Promise.all(members)) {
    await m.subscribeAsync(`$share/g/${topic}`, { qos: 1 })
    got.push(collect(m))
  }
  for (let i = 0; i < 4; i++) {
    const run = await runMosquitto(t, 'mosquitto_pub', [
      ...['-V', 'mqttv5', '-h', '127.0.0.1', '-p', String(server.mqttPort), '-i', uniqueId('sp')],
      ...['-t', topic, '-m', String(i), '-q', '1'],
    ])
    assert.equal(run.code, 0, run.stderr)
  }
  const [a, b] = await Promise.all(members)
  assert.ok(a !== undefined && b !== undefined)
  await waitForCount(a, got[0] ?? [], 2)
  await waitForCount(b, got[1] ?? [], 2)
  const all = got
    .flat()
    .map((r) => r.payload.toString())
    .sort()
  assert.deepEqual(all, ['0', '1', '2', '3'])
})

void test('§4.8.2 a member that drops without acknowledging: its QoS 1 messages go to another member', async (t) => {
  const server = await startTestServer(t)
  const topic = `share/${uniqueId()}`
  const { client: dropper } = await wireConnect(t, server.mqttPort)
  dropper.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: `$share/g/${topic}`, qos: 1 }] })
  await dropper.next('suback')
  const keeper = await connectClient(t, server.mqttPort)
  await keeper.subscribeAsync(`$share/g/${topic}`, { qos: 1 })
  const kept = collect(keeper)
  const pub = await connectClient(t, server.mqttPort)
  for (let i = 0; i < 4; i++) await pub.publishAsync(topic, String(i), { qos: 1 })
  await dropper.waitFor(
    (ps) => ps.filter((p) => p.cmd === 'publish').length >= 2,
    'two deliveries to the dropper',
  )
  dropper.socket.destroy() // never acknowledged
  await waitForCount(keeper, kept, 4)
  assert.deepEqual(kept.map((r) => r.payload.toString()).sort(), ['0', '1', '2', '3'])
})

void test('§3.9.3 SUBACK for $share/ on 3.1.1 carries a 3.1.1 return code', async (t) => {
  const server = await startTestServer(t)
  const { client } = await wireConnect(t, server.mqttPort, { protocolVersion: 4 })
  client.send({
    cmd: 'subscribe',
    messageId: 1,
    subscriptions: [{ topic: `$share/g/${uniqueId()}`, qos: 2 }],
  })
  const suback = await client.next<mqttPacket.ISubackPacket>('suback')
  assert.ok(
    suback.granted.every((g) => [0, 1, 2, 0x80].includes(g as number)),
    JSON.stringify(suback.granted),
  )
})
