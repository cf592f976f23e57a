// MQTT 5 Will Messages: [MQTT-3.1.3-9] the will is published at the earlier of its Will Delay Interval
// and the end of the session, and the Will Delay Interval is a will property, not a PUBLISH property;
// [MQTT-3.1.2-8] with Session Expiry 0 it is published at once when the connection drops abnormally.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import type mqttPacket from 'mqtt-packet'
import { startTestServer, uniqueId } from '../helpers/server.js'
import { wireConnect, type WireClient } from '../helpers/wire.js'

async function watcher(
  t: Parameters<typeof wireConnect>[0],
  port: number,
  topic: string,
): Promise<WireClient> {
  const { client } = await wireConnect(t, port)
  client.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic, qos: 1 }] })
  await client.next('suback')
  return client
}

void test('[MQTT-3.1.2-8] [MQTT-3.1.3-9] Session Expiry 0: the will goes out at once on an abnormal disconnect, without Will Delay Interval', async (t) => {
  const server = await startTestServer(t)
  const topic = `will/${uniqueId()}`
  const watch = await watcher(t, server.mqttPort, topic)
  const { client } = await wireConnect(t, server.mqttPort, {
    will: {
      topic,
      payload: Buffer.from('gone'),
      qos: 1,
      retain: false,
      properties: { willDelayInterval: 60, contentType: 'text/plain' },
    },
  })
  client.socket.destroy()
  const will = await watch.next<mqttPacket.IPublishPacket>('publish')
  assert.equal(will.payload.toString(), 'gone')
  assert.equal(will.properties?.contentType, 'text/plain')
  assert.equal((will.properties as Record<string, unknown> | undefined)?.['willDelayInterval'], undefined)
})

void test('[MQTT-3.1.3-9] the will goes out when the session ends before the Will Delay', async (t) => {
  const server = await startTestServer(t)
  const topic = `will/${uniqueId()}`
  const watch = await watcher(t, server.mqttPort, topic)
  const { client } = await wireConnect(t, server.mqttPort, {
    properties: { sessionExpiryInterval: 1 },
    will: {
      topic,
      payload: Buffer.from('late'),
      qos: 1,
      retain: false,
      properties: { willDelayInterval: 3600 },
    },
  })
  const droppedAt = Date.now()
  client.socket.destroy()
  const will = await watch.next<mqttPacket.IPublishPacket>('publish', 'the will at session end (1 s)')
  const elapsedMs = Date.now() - droppedAt
  assert.equal(will.payload.toString(), 'late')
  assert.ok(elapsedMs >= 900, `published after ${elapsedMs} ms, the session lasts 1 s`)
  assert.equal((will.properties as Record<string, unknown> | undefined)?.['willDelayInterval'], undefined)
})
