// What a consumer receives, and who does not: `$queue/` publishes and settles never reach plain
// subscribers, and a delivery carries the publisher's properties (content type, response topic,
// correlation data, user properties in order, the remaining message expiry). Real broker and clients.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { collect, connectClient, nextMessage, startTestServer, uniqueId } from '../helpers/server.js'
import {
  deliveryCountOf,
  messageIdOf,
  settleOk,
  subscribeQueue,
  uniqueQueue,
  userValue,
} from '../helpers/queues.js'

void test('$queue/ publishes and settles never reach a plain # subscriber (MQTT 5 or 3.1.1)', async (t) => {
  const server = await startTestServer(t)
  const queue = uniqueQueue('hidden')
  const marker = `plain/${uniqueId('marker')}`
  const snoopV5 = await connectClient(t, server.mqttPort)
  const snoopV4 = await connectClient(t, server.mqttPort, { protocolVersion: 4 })
  const seenV5 = collect(snoopV5)
  const seenV4 = collect(snoopV4)
  await snoopV5.subscribeAsync('#', { qos: 1 })
  await snoopV4.subscribeAsync('#', { qos: 1 })

  const consumer = await connectClient(t, server.mqttPort, { clientId: uniqueId('worker') })
  const delivery = nextMessage(consumer)
  await subscribeQueue(consumer, queue, uniqueId('g'))
  const publisher = await connectClient(t, server.mqttPort)
  await publisher.publishAsync(`$queue/${queue}`, 'secret', { qos: 1 })
  await publisher.publishAsync(`$queue/${queue}`, 'secret qos 0', { qos: 0 })
  await settleOk(consumer, queue, '$ack', messageIdOf(await delivery))

  // A plain publish after all that: once it arrives, anything routed before it would have too.
  const markerV5 = nextMessage(snoopV5, marker)
  const markerV4 = nextMessage(snoopV4, marker)
  await publisher.publishAsync(marker, 'after', { qos: 1 })
  await Promise.all([markerV5, markerV4])
  assert.deepEqual(
    seenV5.map((r) => r.topic),
    [marker],
  )
  assert.deepEqual(
    seenV4.map((r) => r.topic),
    [marker],
  )
})

void test('a delivery carries content type, response topic, correlation data, user properties in order and the remaining expiry', async (t) => {
  const server = await startTestServer(t)
  const queue = uniqueQueue('props')
  const group = uniqueId('g')
  const publisher = await connectClient(t, server.mqttPort)
  const payload = Buffer.from([0x00, 0xff, 0x10, 0x80])
  await publisher.publishAsync(`$queue/${queue}`, payload, {
    qos: 1,
    properties: {
      contentType: 'application/octet-stream',
      responseTopic: 'replies/props',
      correlationData: Buffer.from([1, 2, 3]),
      payloadFormatIndicator: false,
      messageExpiryInterval: 60,
      userProperties: { first: '1', multi: ['x', 'y', 'z'], last: '9' },
    },
  })

  const consumer = await connectClient(t, server.mqttPort, { clientId: uniqueId('reader') })
  const first = nextMessage(consumer)
  await subscribeQueue(consumer, queue, group)
  const delivery = await first
  assert.equal(delivery.topic, `$queue/${queue}`)
  assert.deepEqual(delivery.payload, payload)
  assert.equal(delivery.packet.qos, 1)
  const properties = delivery.packet.properties ?? {}
  assert.equal(properties.contentType, 'application/octet-stream')
  assert.equal(properties.responseTopic, 'replies/props')
  assert.deepEqual(properties.correlationData, Buffer.from([1, 2, 3]))
  // The publisher's user properties first, in their order with repeats, then the queue's own.
  assert.deepEqual(Object.entries(properties.userProperties ?? {}), [
    ['first', '1'],
    ['multi', ['x', 'y', 'z']],
    ['last', '9'],
    ['message-id', messageIdOf(delivery)],
    ['group-id', group],
    ['partition', userValue(delivery.packet, 'partition')],
    ['delivery-count', '1'],
  ])
  assert.match(messageIdOf(delivery), new RegExp(`^${userValue(delivery.packet, 'partition')}-\\d+$`))
  const expiry = properties.messageExpiryInterval
  assert.ok(expiry !== undefined && expiry >= 59 && expiry <= 60, `remaining expiry ${expiry}`)

  // Delivered again 1.1 s later: the interval is what remains of the 60 s, not 60 again.
  const again = nextMessage(consumer)
  await settleOk(consumer, queue, '$nack', messageIdOf(delivery), { 'delay-ms': '1100' })
  const redelivery = await again
  assert.equal(deliveryCountOf(redelivery), 2)
  const remaining = redelivery.packet.properties?.messageExpiryInterval
  assert.ok(remaining !== undefined && remaining >= 57 && remaining <= 59, `remaining expiry ${remaining}`)
  assert.equal(redelivery.packet.properties?.contentType, 'application/octet-stream')
  await settleOk(consumer, queue, '$ack', messageIdOf(redelivery))
})

void test('a message published without a Message Expiry Interval is delivered without one', async (t) => {
  const server = await startTestServer(t)
  const queue = uniqueQueue('noexpiry')
  const publisher = await connectClient(t, server.mqttPort)
  await publisher.publishAsync(`$queue/${queue}`, 'plain', { qos: 1 })
  const consumer = await connectClient(t, server.mqttPort, { clientId: uniqueId('reader') })
  const first = nextMessage(consumer)
  await subscribeQueue(consumer, queue, uniqueId('g'))
  const delivery = await first
  assert.equal(delivery.packet.properties?.messageExpiryInterval, undefined)
  assert.equal(delivery.packet.properties?.contentType, undefined)
  await settleOk(consumer, queue, '$ack', messageIdOf(delivery))
})
