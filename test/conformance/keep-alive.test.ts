// MQTT 5 Server Keep Alive: [MQTT-3.2.2-21] [MQTT-3.2.2-22] a v5 client asking for more than
// `mqtt.maxKeepAliveSeconds` (or for none) is told the server's value in CONNACK and held to it; a
// 3.1.1 client has no such property and no return code for it, so it is accepted as it asked.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { startTestServer, uniqueId } from '../helpers/server.js'
import { mqttSettings, runMosquitto } from '../helpers/conformance.js'
import { wireConnect } from '../helpers/wire.js'

void test('[MQTT-3.2.2-21] [MQTT-3.2.2-22] v5 keepalive above the maximum (or 0) gets Server Keep Alive', async (t) => {
  const server = await startTestServer(t, { raw: mqttSettings({ maxKeepAliveSeconds: 30 }) })
  const high = await wireConnect(t, server.mqttPort, { keepalive: 60 })
  assert.equal(high.connack.reasonCode, 0)
  assert.equal(high.connack.properties?.serverKeepAlive, 30)
  const none = await wireConnect(t, server.mqttPort, { keepalive: 0 })
  assert.equal(none.connack.properties?.serverKeepAlive, 30)
  const low = await wireConnect(t, server.mqttPort, { keepalive: 10 })
  assert.equal(low.connack.properties?.serverKeepAlive, undefined)
})

void test('[MQTT-3.2.2-6] a 3.1.1 client with a keepalive above the maximum is accepted (return code 0)', async (t) => {
  const server = await startTestServer(t, { raw: mqttSettings({ maxKeepAliveSeconds: 30 }) })
  for (const keepalive of [0, 60]) {
    const { connack } = await wireConnect(t, server.mqttPort, { protocolVersion: 4, keepalive })
    assert.equal(connack.returnCode, 0, `keepalive ${keepalive}`)
  }
  // What a user sees: mosquitto_pub (3.1.1, keepalive 120) publishes without an error.
  const run = await runMosquitto(t, 'mosquitto_pub', [
    ...['-V', 'mqttv311', '-h', '127.0.0.1', '-p', String(server.mqttPort), '-k', '120'],
    ...['-i', uniqueId('k'), '-t', 'ka/test', '-m', 'hi', '-q', '1'],
  ])
  assert.equal(run.code, 0, run.stderr)
})
