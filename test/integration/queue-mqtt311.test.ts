// MQTT 3.1.1 consumers (no user properties): their group is the client id up to the first `-`, their
// PUBACK settles a delivery as acked, and they may settle by putting the message-id in the payload of
// a settle publish (docs/queue-protocol.md, "MQTT 3.1.1 consumers").
import { test } from 'node:test'
import assert from 'node:assert/strict'
import type { MqttClient } from 'mqtt'
import type mqttPacket from 'mqtt-packet'
import { collect, connectClient, nextMessage, startTestServer, uniqueId } from '../helpers/server.js'
import { declareQueue, publishOutcome, subscribeQueue, uniqueQueue } from '../helpers/queues.js'
import { rawClient } from '../helpers/raw-client.js'
import { within } from '../helpers/wait.js'

function publishesOf(packets: mqttPacket.Packet[]): mqttPacket.IPublishPacket[] {
  return packets.filter((p): p is mqttPacket.IPublishPacket => p.cmd === 'publish')
}

const QUIET_MS = 300

/** A 3.1.1 client whose id starts with `legacy-`, so its group is `legacy`. */
function legacy(t: Parameters<typeof connectClient>[0], port: number): Promise<MqttClient> {
  return connectClient(t, port, { protocolVersion: 4, clientId: `legacy-${uniqueId('1')}` })
}

// `ordering: strict` is one partition, so the first message of a queue is `0-1`: a 3.1.1 delivery
// carries no properties, so the test has to know the id the way a 3.1.1 client would have to.
const FIRST_ID = '0-1'

void test('a 3.1.1 consumer legacy-1 (group legacy) settles a delivery with its PUBACK: no redelivery after the timeout', async (t) => {
  const queue = uniqueQueue('legacy')
  const server = await startTestServer(t, {
    raw: declareQueue(queue, { ordering: 'strict', deliveryTimeoutMs: 150, retry: { initialDelayMs: 0 } }),
  })
  const consumer = await legacy(t, server.mqttPort)
  const first = nextMessage(consumer)
  await subscribeQueue(consumer, queue)
  const publisher = await connectClient(t, server.mqttPort)
  await publisher.publishAsync(`$queue/${queue}`, 'job', { qos: 1 })
  const delivery = await first
  assert.equal(delivery.payload.toString(), 'job')
  assert.equal(delivery.packet.qos, 1)
  const later = collect(consumer)

  // Unsettled, it would be back 150 ms after the delivery.
  await assert.rejects(nextMessage(consumer, undefined, QUIET_MS))
  assert.deepEqual(later, [])
  // And the group `legacy` has it settled.
  const again = await publishOutcome(publisher, `$queue/${queue}/$ack`, '', {
    userProperties: { 'message-id': FIRST_ID, 'group-id': 'legacy' },
  })
  assert.equal(again.reasonCode, 0x80)
  assert.match(again.reasonString ?? '', /already settled for group legacy/)
})

void test('a 3.1.1 consumer that has not sent its PUBACK gets the message again after the timeout', async (t) => {
  const queue = uniqueQueue('legacy')
  const server = await startTestServer(t, {
    raw: declareQueue(queue, { ordering: 'strict', deliveryTimeoutMs: 150, retry: { initialDelayMs: 0 } }),
  })
  // mqtt.js always PUBACKs; a bare 3.1.1 connection holds the PUBACK back.
  const consumer = await rawClient(t, server.mqttPort, `legacy-${uniqueId('2')}`, 4)
  consumer.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: `$queue/${queue}`, qos: 1 }] })
  await consumer.next('suback')
  const publisher = await connectClient(t, server.mqttPort)
  await publisher.publishAsync(`$queue/${queue}`, 'job', { qos: 1 })
  await consumer.waitFor((packets) => publishesOf(packets).length >= 2, 'the redelivery')
  const [first, second] = publishesOf(consumer.packets)
  assert.equal(first?.payload.toString(), 'job')
  assert.equal(second?.payload.toString(), 'job')
  assert.notEqual(first?.messageId, second?.messageId, 'a new PUBLISH with a new packet id')
})

void test('a 3.1.1 consumer nacks by putting the message-id in the payload of $nack: the message is redelivered', async (t) => {
  const queue = uniqueQueue('legacy')
  const server = await startTestServer(t, {
    raw: declareQueue(queue, { ordering: 'strict', retry: { initialDelayMs: 50 } }),
  })
  const consumer = await legacy(t, server.mqttPort)
  const nackFailures: string[] = []
  let nacked = 0
  const received = collect(consumer)
  // The natural 3.1.1 handler: on failure, nack at once (mqtt.js sends the PUBACK right after).
  consumer.on('message', () => {
    if (received.length !== 1) return
    consumer.publish(`$queue/${queue}/$nack`, FIRST_ID, { qos: 1 }, (err) => {
      if (err) nackFailures.push(String(err))
      else nacked++
    })
  })
  await subscribeQueue(consumer, queue)
  const publisher = await connectClient(t, server.mqttPort)
  await publisher.publishAsync(`$queue/${queue}`, 'job', { qos: 1 })
  await within(
    new Promise<void>((resolve) => consumer.on('message', () => received.length >= 2 && resolve())),
    2_000, // the backoff is 50 ms
    'the redelivery after the nack',
  )
  assert.deepEqual(nackFailures, [])
  assert.equal(nacked, 1)
  assert.equal(consumer.connected, true, 'the nack was accepted: a 3.1.1 refusal would close the connection')
  assert.deepEqual(
    received.map((r) => r.payload.toString()),
    ['job', 'job'],
  )
})
