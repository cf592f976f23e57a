// Dead letters through the whole broker: `$reject`, exhausted retries and expiry move a message to the
// ordinary queue `dlq/<name>` with the original payload and properties plus `dlq-*` (with `dlq-delivery-count`)
// and `reason` user properties. Real mqtt.js clients, real queue core on LevelDB.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import type { IClientPublishOptions, MqttClient } from 'mqtt'
import type { QueueSettingsOverrides } from '../../src/queue/settings.js'
import {
  type Received,
  collect,
  connectClient,
  nextMessage,
  startTestServer,
  uniqueId,
} from '../helpers/server.js'
import {
  declareQueue,
  deliveryCountOf,
  messageIdOf,
  settleOk,
  subscribeQueue,
  uniqueQueue,
  userValue,
  userValues,
} from '../helpers/queues.js'

const QUIET_MS = 300

const ORIGINAL: IClientPublishOptions['properties'] = {
  contentType: 'application/json',
  responseTopic: 'replies/dlq-test',
  correlationData: Buffer.from('corr-1'),
  userProperties: { trace: 't-1', tag: ['a', 'b'] },
}
const PAYLOAD = '{"job":42}'

async function setup(t: Parameters<typeof startTestServer>[0], settings: QueueSettingsOverrides) {
  const queue = uniqueQueue('dlq')
  const server = await startTestServer(t, { raw: declareQueue(queue, settings) })
  const group = uniqueId('g')
  const publisher = await connectClient(t, server.mqttPort)
  const consumer = await connectClient(t, server.mqttPort, { clientId: uniqueId('worker') })
  const first = nextMessage(consumer)
  await subscribeQueue(consumer, queue, group)
  const deadLetters = await connectClient(t, server.mqttPort, { clientId: uniqueId('dlqreader') })
  await subscribeQueue(deadLetters, `dlq/${queue}`, uniqueId('dlq'))
  return { server, queue, group, publisher, consumer, first, deadLetters }
}

/** The original payload and properties survive into the dead letter. */
function assertOriginalKept(deadLetter: Received): void {
  assert.equal(deadLetter.payload.toString(), PAYLOAD)
  const properties = deadLetter.packet.properties ?? {}
  assert.equal(properties.contentType, 'application/json')
  assert.equal(properties.responseTopic, 'replies/dlq-test')
  assert.equal(Buffer.from(properties.correlationData ?? []).toString(), 'corr-1')
  assert.deepEqual(userValues(deadLetter.packet, 'trace'), ['t-1'])
  assert.deepEqual(userValues(deadLetter.packet, 'tag'), ['a', 'b'])
}

/** Waits for `client`'s next message and then asserts that no other one arrives shortly after. */
async function onlyMessage(client: MqttClient, received: Received[]): Promise<void> {
  await assert.rejects(nextMessage(client, undefined, QUIET_MS))
  assert.equal(received.length, 0, 'nothing more was delivered')
}

void test('$reject with a reason moves the message to $queue/dlq/<name> with its properties', async (t) => {
  const { queue, group, publisher, consumer, first, deadLetters } = await setup(t, {})
  await publisher.publishAsync(`$queue/${queue}`, PAYLOAD, { qos: 1, properties: ORIGINAL })
  const delivery = await first
  const id = messageIdOf(delivery)
  const later = collect(consumer)

  const deadLetterArrives = nextMessage(deadLetters)
  await settleOk(consumer, queue, '$reject', id, { reason: 'bad input' })
  const deadLetter = await deadLetterArrives
  assert.equal(deadLetter.topic, `$queue/dlq/${queue}`)
  assertOriginalKept(deadLetter)
  assert.equal(userValue(deadLetter.packet, 'dlq-reason'), 'rejected')
  assert.equal(userValue(deadLetter.packet, 'dlq-original-queue'), queue)
  assert.equal(userValue(deadLetter.packet, 'dlq-original-group'), group)
  assert.equal(userValue(deadLetter.packet, 'dlq-original-message-id'), id)
  assert.equal(userValue(deadLetter.packet, 'reason'), 'bad input')
  assert.equal(userValue(deadLetter.packet, 'dlq-delivery-count'), '1')
  assert.deepEqual(userValues(deadLetter.packet, 'delivery-count'), ['1'], 'its own first DLQ delivery')

  // Settled in the original queue: it does not come back there.
  await onlyMessage(consumer, later)
})

void test('a message nacked maxDeliveries times is dead-lettered with reason max-deliveries and its delivery count', async (t) => {
  const { queue, publisher, consumer, first, deadLetters } = await setup(t, {
    retry: { initialDelayMs: 20, factor: 1, maxDeliveries: 2 },
  })
  await publisher.publishAsync(`$queue/${queue}`, PAYLOAD, { qos: 1, properties: ORIGINAL })
  const delivery = await first
  const id = messageIdOf(delivery)
  const retried = nextMessage(consumer)
  await settleOk(consumer, queue, '$nack', id)
  const second = await retried
  assert.equal(deliveryCountOf(second), 2)
  const later = collect(consumer)

  const deadLetterArrives = nextMessage(deadLetters)
  await settleOk(consumer, queue, '$nack', id)
  const deadLetter = await deadLetterArrives
  assertOriginalKept(deadLetter)
  assert.equal(userValue(deadLetter.packet, 'dlq-reason'), 'max-deliveries')
  assert.equal(userValue(deadLetter.packet, 'dlq-original-queue'), queue)
  assert.equal(userValue(deadLetter.packet, 'dlq-original-message-id'), id)
  assert.deepEqual(userValues(deadLetter.packet, 'reason'), [])
  // docs/queue-protocol.md: `dlq-delivery-count` = how often it was delivered in the original queue.
  assert.equal(userValue(deadLetter.packet, 'dlq-delivery-count'), '2')
  await onlyMessage(consumer, later)
})

void test('a message that expires while waiting for its retry is dead-lettered with reason expired, not delivered', async (t) => {
  const { queue, publisher, consumer, first, deadLetters } = await setup(t, {})
  await publisher.publishAsync(`$queue/${queue}`, PAYLOAD, {
    qos: 1,
    properties: { ...ORIGINAL, messageExpiryInterval: 1 },
  })
  const delivery = await first
  assert.equal(delivery.packet.properties?.messageExpiryInterval, 1)
  const later = collect(consumer)

  // The retry comes due after the message's 1 s lifetime.
  const deadLetterArrives = nextMessage(deadLetters)
  await settleOk(consumer, queue, '$nack', messageIdOf(delivery), { 'delay-ms': '1100' })
  const deadLetter = await deadLetterArrives
  assertOriginalKept(deadLetter)
  assert.equal(userValue(deadLetter.packet, 'dlq-reason'), 'expired')
  assert.equal(userValue(deadLetter.packet, 'dlq-original-queue'), queue)
  assert.deepEqual(later, [], 'the expired message was not delivered again')
})
