// MQTT 5 overlapping subscriptions: [MQTT-3.3.4-2] a message matching several subscriptions of one
// client is delivered at the highest QoS granted among them (never above it, [MQTT-3.8.4-8]); the one
// copy sent carries the Subscription Identifier of every matching subscription ([MQTT-3.3.4-3],
// [MQTT-3.3.4-4], [MQTT-3.3.4-5]); a copy never exceeds the granted QoS ([MQTT-3.3.5-1]).
import { test } from 'node:test'
import assert from 'node:assert/strict'
import type mqttPacket from 'mqtt-packet'
import { connectClient, startTestServer, uniqueId } from '../helpers/server.js'
import { wireConnect } from '../helpers/wire.js'

void test('[MQTT-3.3.4-2] [MQTT-3.3.4-3] [MQTT-3.3.4-4] one copy at the highest matching QoS, carrying every Subscription Identifier', async (t) => {
  const server = await startTestServer(t)
  const base = `ov/${uniqueId()}`
  const { client } = await wireConnect(t, server.mqttPort)
  client.send({
    cmd: 'subscribe',
    messageId: 1,
    subscriptions: [{ topic: `${base}/+`, qos: 0 }],
    properties: { subscriptionIdentifier: 1 },
  })
  await client.next('suback')
  client.send({
    cmd: 'subscribe',
    messageId: 2,
    subscriptions: [{ topic: `${base}/x`, qos: 2 }],
    properties: { subscriptionIdentifier: 2 },
  })
  await client.next('suback')
  client.send({ cmd: 'subscribe', messageId: 3, subscriptions: [{ topic: `${base}/#`, qos: 1 }] })
  await client.next('suback')

  const pub = await connectClient(t, server.mqttPort)
  await pub.publishAsync(`${base}/x`, 'both', { qos: 2 })
  await pub.publishAsync(`${base}/y`, 'wild', { qos: 2 })
  await pub.publishAsync(`${base}/y`, 'marker', { qos: 0 })
  await client.waitFor(
    (ps) => ps.some((p) => p.cmd === 'publish' && p.payload.toString() === 'marker'),
    'the marker',
  )
  const got = client.publishes()
  const both = got.filter((p) => p.payload.toString() === 'both')
  assert.equal(both.length, 1, 'one copy')
  assert.equal(both[0]?.qos, 2)
  const ids = [both[0]?.properties?.subscriptionIdentifier].flat().sort()
  assert.deepEqual(ids, [1, 2])
  const wild = got.filter((p) => p.payload.toString() === 'wild')
  assert.equal(wild.length, 1)
  assert.equal(wild[0]?.qos, 1, `${base}/y matches +(0) and #(1): QoS 1`)
  assert.deepEqual([wild[0]?.properties?.subscriptionIdentifier].flat(), [1])
})

void test('[MQTT-3.3.5-1] a wildcard subscription granted QoS 1 gets a QoS 2 publish at QoS 1', async (t) => {
  const server = await startTestServer(t)
  const base = `dg/${uniqueId()}`
  const { client } = await wireConnect(t, server.mqttPort, { protocolVersion: 4 })
  client.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: `${base}/#`, qos: 1 }] })
  await client.next('suback')
  const pub = await connectClient(t, server.mqttPort)
  await pub.publishAsync(`${base}/a`, 'x', { qos: 2 })
  const got = await client.next<mqttPacket.IPublishPacket>('publish')
  assert.equal(got.qos, 1)
})
