// One settle PUBLISH may name several deliveries: the user property `message-id` repeated (MQTT 5
// allows repeated user properties). Every id is settled, and the PUBACK is 0x00 only when all were;
// otherwise it carries the first failure's reason code and says which ids failed. Real core on LevelDB.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import type { MqttClient } from 'mqtt'
import { connectClient, startTestServer, TIMEOUT_MS, uniqueId, type Received } from '../helpers/server.js'
import { within } from '../helpers/wait.js'
import {
  declareQueue,
  messageIdOf,
  publishOutcome,
  settle,
  subscribeQueue,
  uniqueQueue,
} from '../helpers/queues.js'

/** Resolves with the first `count` deliveries `client` receives. */
function deliveries(client: MqttClient, count: number): Promise<Received[]> {
  const got: Received[] = []
  return within(
    new Promise((resolve) => {
      client.on('message', (topic, payload, packet) => {
        got.push({ topic, payload, packet })
        if (got.length === count) resolve(got)
      })
    }),
    TIMEOUT_MS,
    `${count} deliveries`,
  )
}

void test('$ack with message-id repeated settles every id; a partial failure is never a success', async (t) => {
  const queue = uniqueQueue('batch')
  const server = await startTestServer(t, { raw: declareQueue(queue, { ordering: 'none' }) })
  const publisher = await connectClient(t, server.mqttPort)
  for (const body of ['a', 'b', 'c', 'd', 'e'])
    await publisher.publishAsync(`$queue/${queue}`, body, { qos: 1 })
  const consumer = await connectClient(t, server.mqttPort, { clientId: uniqueId('batch') })
  const received = deliveries(consumer, 5)
  await subscribeQueue(consumer, queue, uniqueId('g'))
  const ids = (await received).map(messageIdOf)
  const [a, b, c, d, e] = ids as [string, string, string, string, string]

  const topic = `$queue/${queue}/$ack`
  const all = await publishOutcome(consumer, topic, '', { userProperties: { 'message-id': [a, b, c] } })
  assert.deepEqual(all, { reasonCode: 0, reasonString: undefined })
  for (const id of [a, b, c]) {
    const again = await settle(consumer, queue, '$ack', id)
    assert.equal(again.reasonCode, 0x80, `${id} was settled by the batch`)
    assert.match(again.reasonString ?? '', /already settled/)
  }

  // d is settled, a (already settled) and 0-999 (unknown) fail: PUBACK names them, e is settled too.
  const partial = await publishOutcome(consumer, topic, '', {
    userProperties: { 'message-id': [d, a, '0-999', e] },
  })
  assert.equal(partial.reasonCode, 0x80)
  assert.match(
    partial.reasonString ?? '',
    new RegExp(`^2 of 4 message-ids settled; failed: ${a} \\(.*already settled.*\\); 0-999 \\(.*unknown`),
  )
  for (const id of [d, e]) assert.equal((await settle(consumer, queue, '$ack', id)).reasonCode, 0x80)
  assert.equal(consumer.connected, true)
})

void test('a settle naming more than 1000 message-ids, or one id twice, is refused with 0x83 and settles nothing', async (t) => {
  const queue = uniqueQueue('batch-cap')
  const server = await startTestServer(t)
  const publisher = await connectClient(t, server.mqttPort)
  await publisher.publishAsync(`$queue/${queue}`, 'only', { qos: 1 })
  const consumer = await connectClient(t, server.mqttPort, { clientId: uniqueId('cap') })
  const received = deliveries(consumer, 1)
  await subscribeQueue(consumer, queue, uniqueId('g'))
  const [id] = (await received).map(messageIdOf) as [string]

  const topic = `$queue/${queue}/$ack`
  const filler = Array.from({ length: 1000 }, (_, i) => `0-${i + 100000}`)
  const tooMany = await publishOutcome(consumer, topic, '', {
    userProperties: { 'message-id': [id, ...filler] },
  })
  assert.equal(tooMany.reasonCode, 0x83)
  assert.match(tooMany.reasonString ?? '', /1001 message-ids, at most 1000 per settle; nothing was settled/)
  const twice = await publishOutcome(consumer, topic, '', { userProperties: { 'message-id': [id, id] } })
  assert.equal(twice.reasonCode, 0x83)
  assert.match(twice.reasonString ?? '', /given twice/)
  // Still unsettled: the plain ack succeeds.
  assert.equal((await settle(consumer, queue, '$ack', id)).reasonCode, 0)
})
