// Request Problem Information [MQTT-3.1.2-29]: a v5 client that sets it to 0 gets no Reason String
// (nor User Properties) on any packet but PUBLISH, CONNACK and DISCONNECT. A refused SUBSCRIBE still
// gets its reason code; only the Reason String goes. (The fork's SUBACK used to build its properties
// itself instead of going through aedes' ackProperties() gate, as PUBACK/PUBREC do.)
import { test } from 'node:test'
import assert from 'node:assert/strict'
import type mqttPacket from 'mqtt-packet'
import { startTestServer } from '../helpers/server.js'
import { wireConnect } from '../helpers/wire.js'

const refusedSubscriptions: ReadonlyArray<{
  what: string
  subscription: mqttPacket.ISubscription
  code: number
}> = [
  {
    what: 'a topic filter over 100 levels',
    subscription: { topic: 'a/'.repeat(100) + 'a', qos: 1 },
    code: 0x8f,
  },
  {
    what: 'a $queue/ subscription with an invalid consumer group',
    subscription: { topic: '$queue/jobs', qos: 1 },
    code: 0x8f,
  },
]

void test('[MQTT-3.1.2-29] a refused SUBSCRIBE carries a Reason String only when Request Problem Information is not 0', async (t) => {
  const server = await startTestServer(t)
  for (const { what, subscription, code } of refusedSubscriptions) {
    const properties = subscription.topic.startsWith('$queue/')
      ? { userProperties: { 'consumer-group': '$bad' } }
      : undefined
    for (const requestProblemInformation of [true, false]) {
      const { client } = await wireConnect(t, server.mqttPort, { properties: { requestProblemInformation } })
      client.send({
        cmd: 'subscribe',
        messageId: 1,
        subscriptions: [subscription],
        ...(properties === undefined ? {} : { properties }),
      })
      const suback = await client.next<mqttPacket.ISubackPacket>('suback')
      const label = `${what}, Request Problem Information ${requestProblemInformation ? 1 : 0}`
      assert.deepEqual(suback.granted, [code], label)
      if (requestProblemInformation) assert.equal(typeof suback.properties?.reasonString, 'string', label)
      else assert.equal(suback.properties?.reasonString, undefined, label)
      client.end()
    }
  }
})
