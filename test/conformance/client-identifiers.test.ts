// Client identifiers: [MQTT-3.1.3-6] a v5 CONNECT with an empty Client Identifier is given one in
// CONNACK (Assigned Client Identifier); [MQTT-3.1.3-7] [MQTT-3.1.3-8] a 3.1.1 CONNECT with an empty
// id and Clean Session 0 is refused with return code 2 (Identifier rejected).
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { startTestServer } from '../helpers/server.js'
import type mqttPacket from 'mqtt-packet'
import { openWire, wireConnect } from '../helpers/wire.js'

void test('[MQTT-3.1.3-6] empty Client Identifier on v5 gets an Assigned Client Identifier', async (t) => {
  const server = await startTestServer(t)
  const { connack } = await wireConnect(t, server.mqttPort, { clientId: '' })
  assert.equal(connack.reasonCode, 0)
  const assigned = connack.properties?.assignedClientIdentifier
  assert.ok(typeof assigned === 'string' && assigned.length > 0)
})

void test('[MQTT-3.1.3-7] [MQTT-3.1.3-8] empty Client Identifier on 3.1.1: accepted with Clean Session 1, refused with return code 2 otherwise', async (t) => {
  const server = await startTestServer(t)
  const clean = await wireConnect(t, server.mqttPort, { protocolVersion: 4, clientId: '', clean: true })
  assert.equal(clean.connack.returnCode, 0)
  // mqtt-packet will not build this CONNECT, so here are its bytes: MQTT 3.1.1, flags 0 (Clean
  // Session 0), keepalive 0, zero-length Client Identifier.
  const persistent = await openWire(t, server.mqttPort, 4)
  persistent.sendRaw(Buffer.from([0x10, 12, 0, 4, 0x4d, 0x51, 0x54, 0x54, 4, 0, 0, 0, 0, 0]))
  assert.equal((await persistent.next<mqttPacket.IConnackPacket>('connack')).returnCode, 2)
  await persistent.closed
})
