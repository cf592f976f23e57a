// Name and size limits on topics are refused with a reason code, a Reason String and one log line,
// never a silent close. aedes' router takes at most 100 topic levels (qlobber's `max_words`); beyond
// that aedes used to close the connection with nothing said (patch 033). `$queue/` names have their
// own, lower limits (docs/queue-protocol.md): 32 levels, 1024 bytes. Raw mqtt-packet sockets.
import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import mqttPacket from 'mqtt-packet'
import { pino } from 'pino'
import { startTestServer, TIMEOUT_MS, uniqueId } from '../helpers/server.js'
import { uniqueQueue } from '../helpers/queues.js'
import { wireConnect, type WireClient } from '../helpers/wire.js'
import { until, within } from '../helpers/wait.js'

interface LogRecord {
  level: number
  msg: string
  clientId?: string
}

async function startLogged(t: TestContext) {
  const records: LogRecord[] = []
  const logger = pino(
    { level: 'warn' },
    { write: (line: string) => records.push(JSON.parse(line) as LogRecord) },
  )
  const server = await startTestServer(t, { start: { logger } })
  return { server, records }
}

/** `prefix` followed by levels `l1/l2/…` up to a topic of `levels` levels in all. */
function deepTopic(prefix: string, levels: number): string {
  const prefixLevels = prefix === '' ? 0 : prefix.split('/').length - 1
  const rest = Array.from({ length: levels - prefixLevels }, (_, i) => `l${i}`).join('/')
  return prefix + rest
}

let nextPacketId = 1

async function puback(client: WireClient, topic: string, qos: 1 | 2 = 1) {
  const messageId = nextPacketId++
  client.send({ cmd: 'publish', topic, payload: Buffer.from('x'), qos, messageId, dup: false, retain: false })
  await client.waitFor(
    (packets) => packets.some((p) => (p.cmd === 'puback' || p.cmd === 'pubrec') && p.messageId === messageId),
    `the ack of ${messageId}`,
  )
  return client.packets.find(
    (p): p is mqttPacket.IPubackPacket | mqttPacket.IPubrecPacket =>
      (p.cmd === 'puback' || p.cmd === 'pubrec') && p.messageId === messageId,
  )!
}

async function suback(client: WireClient, topic: string) {
  const messageId = nextPacketId++
  client.send({ cmd: 'subscribe', messageId, subscriptions: [{ topic, qos: 1 }] })
  await client.waitFor(
    (packets) => packets.some((p) => p.cmd === 'suback' && p.messageId === messageId),
    `the SUBACK of ${messageId}`,
  )
  return client.packets.find(
    (p): p is mqttPacket.ISubackPacket => p.cmd === 'suback' && p.messageId === messageId,
  )!
}

const logged = (records: LogRecord[], clientId: string) => records.filter((r) => r.clientId === clientId)

void test('a topic of more than 100 levels gets PUBACK/PUBREC 0x90 and SUBACK 0x8F with a Reason String and a log line; 100 levels work', async (t) => {
  const { server, records } = await startLogged(t)
  const clientId = uniqueId('deep')
  const { client } = await wireConnect(t, server.mqttPort, { clientId })
  const prefix = `deep-${uniqueId()}/`

  assert.equal((await puback(client, deepTopic(prefix, 100))).reasonCode, 0)
  assert.equal((await suback(client, deepTopic(prefix, 100))).granted[0], 1)
  assert.equal(logged(records, clientId).length, 0)

  for (const qos of [1, 2] as const) {
    const ack = await puback(client, deepTopic(prefix, 101), qos)
    assert.equal(ack.reasonCode, 0x90, `QoS ${qos}`)
    assert.equal(ack.properties?.reasonString, 'topic has 101 levels, more than the 100 this server accepts')
  }
  const refused = await suback(client, deepTopic(prefix, 150) + '/#')
  assert.deepEqual(refused.granted, [0x8f])
  assert.match(refused.properties?.reasonString ?? '', /topic filter has 151 levels, more than the 100/)
  assert.equal(client.isClosed(), false)
  assert.deepEqual(
    logged(records, clientId).map((r) => r.msg),
    [
      'publish refused: topic has more than 100 levels',
      'publish refused: topic has more than 100 levels',
      'subscribe refused: topic has more than 100 levels',
    ],
  )
  // Still served.
  assert.equal((await puback(client, `${prefix}fine`)).reasonCode, 0)
})

void test('a $queue/ name of 100 levels (a 101-level topic) is refused with 0x90, not a silent close', async (t) => {
  const { server, records } = await startLogged(t)
  const clientId = uniqueId('deepq')
  const { client } = await wireConnect(t, server.mqttPort, { clientId })
  const ack = await puback(client, deepTopic(`$queue/`, 101))
  assert.equal(ack.reasonCode, 0x90)
  assert.match(ack.properties?.reasonString ?? '', /levels/)
  assert.equal(client.isClosed(), false)
  assert.equal(logged(records, clientId).length, 1)
})

void test('$queue/ names: at most 32 levels and 1024 bytes; over that PUBLISH, settle and SUBSCRIBE are refused (0x90 / 0x8F) with one log line each', async (t) => {
  const { server, records } = await startLogged(t)
  const clientId = uniqueId('qlimits')
  const { client } = await wireConnect(t, server.mqttPort, { clientId })
  const base = uniqueQueue('limits')
  const name32 = deepTopic(`${base}/`, 32)
  const name33 = deepTopic(`${base}/`, 33)

  assert.equal((await puback(client, `$queue/${name32}`)).reasonCode, 0)
  assert.equal((await suback(client, `$queue/${name32}`)).granted[0], 1)
  assert.equal((await suback(client, `$queue/dlq/${name32}`)).granted[0], 1, 'its dead-letter queue too')
  assert.equal(logged(records, clientId).length, 0)

  const tooDeep = await puback(client, `$queue/${name33}`)
  assert.equal(tooDeep.reasonCode, 0x90)
  assert.equal(tooDeep.properties?.reasonString, 'queue name has 33 levels, at most 32 allowed')
  const settle = await puback(client, `$queue/${name33}/$ack`)
  assert.equal(settle.reasonCode, 0x90)
  const sub = await suback(client, `$queue/${name33}`)
  assert.deepEqual(sub.granted, [0x8f])
  assert.equal(sub.properties?.reasonString, 'queue name has 33 levels, at most 32 allowed')

  const long = `${base}/${'x'.repeat(1025 - base.length - 1)}`
  assert.equal((await puback(client, `$queue/${long.slice(0, 1024)}`)).reasonCode, 0)
  const tooLong = await puback(client, `$queue/${long}`)
  assert.equal(tooLong.reasonCode, 0x90)
  assert.equal(tooLong.properties?.reasonString, 'queue name has 1025 bytes, at most 1024 allowed')
  assert.equal(client.isClosed(), false)
  await until(() => logged(records, clientId).length >= 4, TIMEOUT_MS, 'four log lines')
  assert.deepEqual(
    logged(records, clientId).map((r) => r.msg),
    ['queue publish refused', 'queue settle refused', 'queue subscription refused', 'queue publish refused'],
  )
})

void test('3.1.1: a PUBLISH over 100 levels closes the connection with a log line; a SUBSCRIBE gets 0x80', async (t) => {
  const { server, records } = await startLogged(t)
  const subscriberId = uniqueId('deep311')
  const { client: subscriber } = await wireConnect(t, server.mqttPort, {
    protocolVersion: 4,
    clientId: subscriberId,
  })
  assert.deepEqual((await suback(subscriber, deepTopic('a/', 101))).granted, [0x80])
  assert.equal(subscriber.isClosed(), false)
  assert.equal(logged(records, subscriberId).length, 1)

  const publisherId = uniqueId('deep311')
  const { client } = await wireConnect(t, server.mqttPort, { protocolVersion: 4, clientId: publisherId })
  client.send({
    cmd: 'publish',
    topic: deepTopic('a/', 101),
    payload: Buffer.from('x'),
    qos: 1,
    messageId: 1,
    dup: false,
    retain: false,
  })
  await within(client.closed, TIMEOUT_MS, 'the 3.1.1 connection to close')
  assert.deepEqual(
    logged(records, publisherId).map((r) => r.msg),
    ['publish refused: topic has more than 100 levels'],
  )
})
