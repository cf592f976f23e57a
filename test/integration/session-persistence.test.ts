// Persistent sessions survive a broker restart: subscriptions and QoS 1 messages published while the
// subscriber was offline are stored under <dataDir>/sessions (LevelPersistence) and delivered after.
import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import type { IClientOptions } from 'mqtt'
import {
  type Received,
  collect,
  connackOf,
  connectClient,
  startTestServer,
  tempDir,
  uniqueId,
  waitForCount,
} from '../helpers/server.js'

async function offlineMessagesSurviveRestart(t: TestContext, sessionOptions: IClientOptions): Promise<void> {
  const dataDir = await tempDir(t)
  const clientId = uniqueId('persistent')
  const topic = `persist/${uniqueId()}`
  const n = 50

  // 1. The subscriber creates its session and goes offline.
  let server = await startTestServer(t, { dataDir })
  const first = await connectClient(t, server.mqttPort, { clientId, ...sessionOptions })
  await first.subscribeAsync(topic, { qos: 1 })
  await first.endAsync()

  // 2. Messages arrive while it is offline.
  const pub = await connectClient(t, server.mqttPort)
  for (let i = 0; i < n; i++) await pub.publishAsync(topic, String(i), { qos: 1 })
  await pub.endAsync()

  // 3. The broker restarts on the same data dir.
  await server.close()
  server = await startTestServer(t, { dataDir })

  // 4. The subscriber resumes its session and gets every message, in order, without resubscribing.
  let received: Received[] = []
  const again = await connectClient(t, server.mqttPort, { clientId, ...sessionOptions }, (c) => {
    received = collect(c)
  })
  assert.equal(connackOf(again).sessionPresent, true)
  await waitForCount(again, received, n)
  assert.deepEqual(
    received.map((r) => r.payload.toString()),
    Array.from({ length: n }, (_, i) => String(i)),
  )

  // 5. Subscriptions were restored too: a new publish still reaches it.
  const pub2 = await connectClient(t, server.mqttPort)
  await pub2.publishAsync(topic, 'after', { qos: 1 })
  await waitForCount(again, received, n + 1)
  assert.equal(received[n]?.payload.toString(), 'after')
}

void test('MQTT 3.1.1 clean=false session gets QoS 1 messages published while offline, across a restart', (t) =>
  offlineMessagesSurviveRestart(t, { protocolVersion: 4, clean: false }))

void test('MQTT 5 session expiry > 0 gets QoS 1 messages published while offline, across a restart', (t) =>
  offlineMessagesSurviveRestart(t, {
    protocolVersion: 5,
    clean: false,
    properties: { sessionExpiryInterval: 3600 },
  }))

void test('retained messages survive a restart', async (t) => {
  const dataDir = await tempDir(t)
  const topic = `retained-restart/${uniqueId()}`
  let server = await startTestServer(t, { dataDir })
  const pub = await connectClient(t, server.mqttPort)
  await pub.publishAsync(topic, 'durable', { qos: 1, retain: true })
  await pub.endAsync()
  await server.close()
  server = await startTestServer(t, { dataDir })
  const sub = await connectClient(t, server.mqttPort)
  const got = collect(sub)
  await sub.subscribeAsync(topic, { qos: 1 })
  await waitForCount(sub, got, 1)
  assert.equal(got[0]?.payload.toString(), 'durable')
})
