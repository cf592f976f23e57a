// MQTT 5 and 3.1.1 basics through a real in-process Spool on port 0: QoS 0/1/2, retained, wills,
// v5 properties, $SYS refusal, malformed input, WebSocket, health endpoints.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { connect as netConnect } from 'node:net'
import { once } from 'node:events'
import type { MqttClient } from 'mqtt'
import {
  collect,
  connectClient,
  nextMessage,
  startTestServer,
  uniqueId,
  waitForCount,
} from '../helpers/server.js'
import { within } from '../helpers/wait.js'

for (const protocolVersion of [5, 4] as const) {
  const label = protocolVersion === 5 ? 'MQTT 5' : 'MQTT 3.1.1'

  void test(`${label}: subscribe and publish at QoS 0, 1 and 2`, async (t) => {
    const server = await startTestServer(t)
    const sub = await connectClient(t, server.mqttPort, { protocolVersion })
    const pub = await connectClient(t, server.mqttPort, { protocolVersion })
    const topic = `basics/${uniqueId()}`
    await sub.subscribeAsync(topic, { qos: 2 })
    const received = collect(sub)
    for (const qos of [0, 1, 2] as const) {
      await pub.publishAsync(topic, `m${qos}`, { qos })
    }
    await waitForCount(sub, received, 3)
    assert.deepEqual(
      received.map((r) => [r.payload.toString(), r.packet.qos]),
      [
        ['m0', 0],
        ['m1', 1],
        ['m2', 2],
      ],
    )
  })

  void test(`${label}: retained message is delivered to a later subscriber`, async (t) => {
    const server = await startTestServer(t)
    const pub = await connectClient(t, server.mqttPort, { protocolVersion })
    const topic = `retained/${uniqueId()}`
    await pub.publishAsync(topic, 'kept', { qos: 1, retain: true })
    const sub = await connectClient(t, server.mqttPort, { protocolVersion })
    const message = nextMessage(sub, topic)
    await sub.subscribeAsync(topic, { qos: 1 })
    const { payload, packet } = await message
    assert.equal(payload.toString(), 'kept')
    assert.equal(packet.retain, true)
  })

  void test(`${label}: last will is published when a client drops`, async (t) => {
    const server = await startTestServer(t)
    const willTopic = `will/${uniqueId()}`
    const watcher = await connectClient(t, server.mqttPort, { protocolVersion })
    await watcher.subscribeAsync(willTopic, { qos: 1 })
    const dying = await connectClient(t, server.mqttPort, {
      protocolVersion,
      will: { topic: willTopic, payload: Buffer.from('gone'), qos: 1, retain: false },
    })
    const will = nextMessage(watcher, willTopic)
    // Drop the TCP connection without DISCONNECT: the broker must publish the will.
    ;(dying.stream as unknown as { destroy(): void }).destroy()
    assert.equal((await will).payload.toString(), 'gone')
  })

  void test(`${label}: publishing to $SYS/ is refused`, async (t) => {
    const server = await startTestServer(t)
    const client = await connectClient(t, server.mqttPort, { protocolVersion })
    const sysSeen: string[] = []
    server.aedes.on('publish', (packet, c) => {
      if (c !== null && packet.topic.startsWith('$SYS/')) sysSeen.push(packet.topic)
    })
    if (protocolVersion === 5) {
      // v5: PUBACK 0x87 Not authorized, connection stays up.
      await assert.rejects(client.publishAsync('$SYS/x', 'nope', { qos: 1 }), /not allowed|Not authorized/i)
      assert.equal(client.connected, true)
    } else {
      // 3.1.1 has no negative PUBACK: the broker closes the connection [MQTT-3.3.5-2].
      const closed = within(
        new Promise<void>((resolve) => client.once('close', () => resolve())),
        5_000,
        'connection close',
      )
      client.publish('$SYS/x', 'nope', { qos: 1 })
      await closed
    }
    assert.deepEqual(sysSeen, [])
  })
}

void test('MQTT 5: user properties, content type, response topic, correlation data, message expiry pass through', async (t) => {
  const server = await startTestServer(t)
  const sub = await connectClient(t, server.mqttPort)
  const pub = await connectClient(t, server.mqttPort)
  const topic = `props/${uniqueId()}`
  await sub.subscribeAsync(topic, { qos: 1 })
  const message = nextMessage(sub, topic)
  await pub.publishAsync(topic, '{"a":1}', {
    qos: 1,
    properties: {
      userProperties: { k: 'v', trace: ['1', '2'] },
      contentType: 'application/json',
      responseTopic: 'reply/here',
      correlationData: Buffer.from('corr-1'),
      messageExpiryInterval: 60,
      payloadFormatIndicator: true,
    },
  })
  const { packet } = await message
  const p = packet.properties ?? {}
  assert.deepEqual({ ...p.userProperties }, { k: 'v', trace: ['1', '2'] })
  assert.equal(p.contentType, 'application/json')
  assert.equal(p.responseTopic, 'reply/here')
  assert.equal(Buffer.from(p.correlationData ?? []).toString(), 'corr-1')
  assert.ok(
    p.messageExpiryInterval !== undefined && p.messageExpiryInterval > 0 && p.messageExpiryInterval <= 60,
  )
  assert.equal(p.payloadFormatIndicator, true)
})

void test('a malformed packet closes only that connection', async (t) => {
  const server = await startTestServer(t)
  const healthy = await connectClient(t, server.mqttPort)
  const topic = `malformed/${uniqueId()}`
  await healthy.subscribeAsync(topic, { qos: 1 })

  const raw = netConnect(server.mqttPort, '127.0.0.1')
  t.after(() => raw.destroy())
  await once(raw, 'connect')
  raw.write(Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0x00, 0x13, 0x37]))
  await within(once(raw, 'close'), 5_000, 'the broker to close the garbage connection')

  const message = nextMessage(healthy, topic)
  const other = await connectClient(t, server.mqttPort)
  await other.publishAsync(topic, 'still here', { qos: 1 })
  assert.equal((await message).payload.toString(), 'still here')
  assert.equal(healthy.connected, true)
})

void test('MQTT over WebSocket at /mqtt', async (t) => {
  const server = await startTestServer(t, { raw: { ws: { port: 0 } } })
  assert.ok(server.wsPort !== null && server.wsPort > 0)
  const wsClient: MqttClient = await connectClient(t, `ws://127.0.0.1:${server.wsPort}/mqtt`)
  const tcpClient = await connectClient(t, server.mqttPort)
  const topic = `ws/${uniqueId()}`
  await wsClient.subscribeAsync(topic, { qos: 1 })
  const message = nextMessage(wsClient, topic)
  await tcpClient.publishAsync(topic, 'over ws', { qos: 1 })
  assert.equal((await message).payload.toString(), 'over ws')
})

void test('GET /healthz and /readyz', async (t) => {
  const server = await startTestServer(t)
  const base = `http://127.0.0.1:${server.httpPort}`
  const health = await fetch(`${base}/healthz`)
  assert.equal(health.status, 200)
  assert.deepEqual(await health.json(), { status: 'ok' })
  const ready = await fetch(`${base}/readyz`)
  assert.equal(ready.status, 200)
  assert.deepEqual(await ready.json(), { status: 'ready', checks: { listeners: true, storage: true } })
  assert.equal((await fetch(`${base}/nope`)).status, 404)
  await server.close()
  // After close the HTTP server is gone too; readiness 503 is covered by the unit test of http.ts.
})
