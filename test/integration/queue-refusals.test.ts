// What Spool refuses, and how: depth and size limits answer PUBACK 0x97, settles of unknown, already
// settled or someone else's deliveries answer 0x80, each with a Reason String; the connection stays up
// and nothing refused is stored or changed. Real mqtt.js clients, real queue core on LevelDB.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { connectClient, nextMessage, startTestServer, TIMEOUT_MS, uniqueId } from '../helpers/server.js'
import { within } from '../helpers/wait.js'
import {
  declareQueue,
  messageIdOf,
  publishOutcome,
  settle,
  settleOk,
  subscribeQueue,
  uniqueQueue,
} from '../helpers/queues.js'

const QUIET_MS = 300

void test('maxDepth and maxMessageBytes answer 0x97 with a Reason String; the refused message is not stored', async (t) => {
  const queue = uniqueQueue('limits')
  // maxMessageBytes counts the queue name as well as the payload: room for 16 payload bytes here.
  const maxMessageBytes = 16 + Buffer.byteLength(queue)
  const server = await startTestServer(t, { raw: declareQueue(queue, { maxDepth: 3, maxMessageBytes }) })
  const topic = `$queue/${queue}`
  const publisher = await connectClient(t, server.mqttPort)

  assert.equal((await publishOutcome(publisher, topic, 'a')).reasonCode, 0)
  assert.equal((await publishOutcome(publisher, topic, 'b')).reasonCode, 0)
  const tooLarge = await publishOutcome(publisher, topic, 'x'.repeat(17))
  assert.equal(tooLarge.reasonCode, 0x97)
  assert.match(tooLarge.reasonString ?? '', new RegExp(`payload 17.*maxMessageBytes ${maxMessageBytes}`))
  assert.equal(publisher.connected, true)
  assert.equal((await publishOutcome(publisher, topic, 'c'.repeat(16))).reasonCode, 0, '16 bytes fit')
  const full = await publishOutcome(publisher, topic, 'd')
  assert.equal(full.reasonCode, 0x97)
  assert.match(full.reasonString ?? '', /full.*maxDepth 3/)
  assert.equal(publisher.connected, true)

  // A consumer gets the three stored messages and nothing else.
  const consumer = await connectClient(t, server.mqttPort, { clientId: uniqueId('drain') })
  const got: string[] = []
  const ids: string[] = []
  consumer.on('message', (topic, payload, packet) => {
    got.push(payload.toString())
    ids.push(messageIdOf({ topic, payload, packet }))
  })
  const third = new Promise<void>((resolve) => consumer.on('message', () => got.length === 3 && resolve()))
  await subscribeQueue(consumer, queue, uniqueId('g'))
  await third
  await assert.rejects(nextMessage(consumer, undefined, QUIET_MS))
  assert.deepEqual([...got].sort(), ['a', 'b', 'c'.repeat(16)])

  // Once settled by every group the messages are gone and the queue takes new ones.
  for (const id of ids) await settleOk(consumer, queue, '$ack', id)
  const next = nextMessage(consumer)
  assert.equal((await publishOutcome(publisher, topic, 'e')).reasonCode, 0)
  assert.equal((await next).payload.toString(), 'e')
})

void test('maxMessageBytes counts user properties: 10 x 60 kB of them on a 4-byte payload get 0x97 from a 1,000-byte queue; 8 MB of them hit the 1 MiB Maximum Packet Size', async (t) => {
  const queue = uniqueQueue('fat-properties')
  const server = await startTestServer(t, { raw: declareQueue(queue, { maxMessageBytes: 1000 }) })
  const publisher = await connectClient(t, server.mqttPort)
  const userProperties: Record<string, string> = {}
  for (let i = 0; i < 10; i++) userProperties[`k${i}`] = 'v'.repeat(60_000)
  const refused = await publishOutcome(publisher, `$queue/${queue}`, 'tiny', { userProperties })
  assert.equal(refused.reasonCode, 0x97)
  assert.match(
    refused.reasonString ?? '',
    /payload 4, queue name and properties \d+\) exceeds maxMessageBytes 1000/,
  )
  assert.equal(publisher.connected, true)
  assert.equal((await publishOutcome(publisher, `$queue/${queue}`, 'tiny')).reasonCode, 0, 'a small one fits')

  // Above the broker's default Maximum Packet Size (1 MiB, advertised in CONNACK) the packet never
  // reaches the queue: mqtt.js refuses to send it, a client that sends it anyway is disconnected (0x95).
  const huge: Record<string, string> = {}
  for (let i = 0; i < 140; i++) huge[`k${i}`] = 'v'.repeat(60_000)
  const other = await connectClient(t, server.mqttPort)
  const gone = new Promise<string>((resolve) => other.once('close', () => resolve('closed')))
  const tooBig = await within(
    Promise.race([
      other.publishAsync(`$queue/${queue}`, 'tiny', { qos: 1, properties: { userProperties: huge } }).then(
        () => 'sent',
        (err: Error) => `refused: ${err.message}`,
      ),
      gone,
    ]),
    TIMEOUT_MS,
    'the oversized publish refused or the connection closed',
  )
  assert.notEqual(tooBig, 'sent')
  const consumer = await connectClient(t, server.mqttPort, { clientId: uniqueId('drain') })
  // The backlog may arrive before the SUBACK: listen first.
  const first = nextMessage(consumer)
  await subscribeQueue(consumer, queue, uniqueId('g'))
  const only = await first
  assert.equal(only.payload.toString(), 'tiny')
  assert.equal(only.packet.properties?.userProperties?.['k0'], undefined, 'the refused one was not stored')
})

void test('an invalid queue name answers 0x90 with a Reason String; the connection stays up', async (t) => {
  const server = await startTestServer(t)
  const publisher = await connectClient(t, server.mqttPort)
  const outcome = await publishOutcome(publisher, '$queue/a//b', 'x')
  assert.equal(outcome.reasonCode, 0x90)
  assert.match(outcome.reasonString ?? '', /empty level/)
  assert.equal(publisher.connected, true)
  assert.equal((await publishOutcome(publisher, `$queue/${uniqueQueue()}`, 'x')).reasonCode, 0)
})

void test('settling an unknown, already settled or foreign message-id answers 0x80 and changes nothing', async (t) => {
  // One partition, so the second consumer of the group gets nothing while the first holds the message.
  const queue = uniqueQueue('settle')
  const server = await startTestServer(t, { raw: declareQueue(queue, { ordering: 'strict' }) })
  const group = uniqueId('g')
  const publisher = await connectClient(t, server.mqttPort)
  await publisher.publishAsync(`$queue/${queue}`, 'one', { qos: 1 })
  await publisher.publishAsync(`$queue/${queue}`, 'two', { qos: 1 })

  const owner = await connectClient(t, server.mqttPort, { clientId: uniqueId('owner') })
  const first = nextMessage(owner)
  await subscribeQueue(owner, queue, group)
  const delivery = await first
  const id = messageIdOf(delivery)
  const other = await connectClient(t, server.mqttPort, { clientId: uniqueId('other') })
  await subscribeQueue(other, queue, group)

  const refusals = [
    ['unknown seq', await settle(owner, queue, '$ack', '0-999'), /unknown/],
    ['malformed id', await settle(owner, queue, '$ack', 'not-an-id'), /not a message id/],
    ['unknown queue', await settle(owner, uniqueQueue('nowhere'), '$ack', id), /does not exist/],
    ['unknown group', await settle(owner, queue, '$ack', id, { 'group-id': 'nobody' }), /group nobody/],
    ['foreign ack', await settle(other, queue, '$ack', id), /in flight to another consumer/],
    ['foreign nack', await settle(other, queue, '$nack', id), /in flight to another consumer/],
    ['missing id', await publishOutcome(owner, `$queue/${queue}/$ack`, ''), /message-id/],
  ] as const
  for (const [what, outcome, reason] of refusals) {
    assert.equal(outcome.reasonCode, 0x80, `${what}: reason code`)
    assert.match(outcome.reasonString ?? '', reason, `${what}: Reason String`)
  }
  assert.equal(owner.connected, true)
  assert.equal(other.connected, true)

  // Nothing changed: the owner still holds the delivery and can ack it, once.
  const secondReceived = new Promise<string>((resolve) => {
    owner.once('message', (_topic, payload) => resolve(payload.toString()))
    other.once('message', (_topic, payload) => resolve(payload.toString()))
  })
  await settleOk(owner, queue, '$ack', id)
  const again = await settle(owner, queue, '$ack', id)
  assert.equal(again.reasonCode, 0x80)
  assert.match(again.reasonString ?? '', /already settled/)
  const nackAgain = await settle(owner, queue, '$nack', id)
  assert.equal(nackAgain.reasonCode, 0x80)
  assert.match(nackAgain.reasonString ?? '', /already settled/)
  assert.equal(owner.connected, true)

  // And the queue goes on: the second message is delivered to the group.
  assert.equal(await within(secondReceived, TIMEOUT_MS, 'the second message'), 'two')
})
