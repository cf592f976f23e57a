// Load on one queue through the whole edge: 4 MQTT 5 publishers x N messages to `$queue/<q>` while 4
// consumers ack every delivery by publishing to `$queue/<q>/$ack`. This is the traffic that killed
// aedes with "RangeError: Maximum call stack size exceeded" inside mqemitter 7.1.0 (6 of 11 runs) when
// queue publishes and settles were routed: settles go to a topic with no subscriber, and mqemitter
// drains such a backlog recursively. The adapter keeps queue traffic out of mqemitter; this test holds
// it to that with a bounded message count and time.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import type { MqttClient } from 'mqtt'
import { connectClient, startTestServer, uniqueId } from '../helpers/server.js'
import { within } from '../helpers/wait.js'

const PUBLISHERS = 4
const CONSUMERS = 4
const MESSAGES_PER_PUBLISHER = 1_000
const TOTAL = PUBLISHERS * MESSAGES_PER_PUBLISHER
const TIME_LIMIT_MS = 60_000

void test(`${PUBLISHERS} publishers x ${MESSAGES_PER_PUBLISHER} messages, ${CONSUMERS} acking consumers`, async (t) => {
  const server = await startTestServer(t)
  // The structural guarantee behind the fix: not one queue packet enters mqemitter.
  const mq = (
    server.aedes as unknown as { mq: { emit: (packet: { topic: string }, cb?: () => void) => unknown } }
  ).mq
  const emit = mq.emit.bind(mq)
  let queuePacketsInMqemitter = 0
  mq.emit = (packet, cb) => {
    if (packet.topic.startsWith('$queue/')) queuePacketsInMqemitter++
    return emit(packet, cb)
  }
  const queue = `load/${uniqueId('q')}`
  const group = uniqueId('g')
  const topic = `$queue/${queue}`

  const delivered = new Set<string>()
  let acked = 0
  let ackFailures = 0
  let allAcked!: () => void
  const done = new Promise<void>((resolve) => (allAcked = resolve))
  const consumers: MqttClient[] = []
  for (let i = 0; i < CONSUMERS; i++) {
    const consumer = await connectClient(t, server.mqttPort, { clientId: uniqueId('loadworker') })
    consumer.on('message', (_topic, _payload, packet) => {
      const messageId = packet.properties?.userProperties?.['message-id']
      if (typeof messageId !== 'string') return
      delivered.add(messageId)
      consumer.publish(
        `${topic}/$ack`,
        '',
        { qos: 1, properties: { userProperties: { 'message-id': messageId, 'group-id': group } } },
        (err) => {
          if (err) ackFailures++
          else if (++acked === TOTAL) allAcked()
        },
      )
    })
    await consumer.subscribeAsync(topic, {
      qos: 1,
      properties: { userProperties: { 'consumer-group': group } },
    })
    consumers.push(consumer)
  }

  const started = Date.now()
  const publishers = await Promise.all(
    Array.from({ length: PUBLISHERS }, () => connectClient(t, server.mqttPort)),
  )
  await within(
    Promise.all(
      publishers.flatMap((publisher, p) =>
        Array.from({ length: MESSAGES_PER_PUBLISHER }, (_, m) =>
          publisher.publishAsync(topic, `p${p}-m${m}`, { qos: 1 }),
        ),
      ),
    ),
    TIME_LIMIT_MS,
    `${TOTAL} PUBACKs`,
  )
  await within(done, TIME_LIMIT_MS, `${TOTAL} acks (have ${acked}, ${ackFailures} failed)`)
  const elapsedMs = Date.now() - started

  assert.equal(ackFailures, 0)
  assert.equal(queuePacketsInMqemitter, 0)
  assert.equal(delivered.size, TOTAL, 'every message delivered')
  assert.ok(consumers.every((c) => c.connected) && publishers.every((c) => c.connected), 'nobody was dropped')
  t.diagnostic(`${TOTAL} messages published, delivered and acked in ${elapsedMs} ms`)
})
