// `kill -9` of a `spool start` child while a queue is consumed (and, in the second test, while it is
// filled), then a restart on the same data dir. Holds Spool to docs/queue-protocol.md "Restarts and
// crashes": every PUBACKed message is still there; no acked message comes back; every unsettled
// delivery comes back with its delivery-count incremented. Bounded: 10,000 messages, 60 s per test.
import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import type { IPublishPacket, MqttClient } from 'mqtt'
import { spawnSpoolOn, type KillableBroker } from '../helpers/child-broker.js'
import { connectClient, tempDir, uniqueId } from '../helpers/server.js'
import { until, within } from '../helpers/wait.js'

const MESSAGES = 10_000
const CONSUMERS = 2
/** The broker is killed once this many acks got their PUBACK (crash while consuming). */
const KILL_AFTER_ACKS = 3_000
/** The broker is killed once this many publishes got their PUBACK (crash while publishing). */
const KILL_AFTER_PUBACKS = 3_000
const TIME_LIMIT_MS = 60_000

const payloadOf = (i: number) => `m-${i}`
const MESSAGE_ID = /^\d+-\d+$/

/** One delivery as a consumer saw it. */
interface Delivery {
  payload: string
  messageId: string
  deliveryCount: number
  /** 1: before the kill, 2: after the restart. */
  phase: 1 | 2
}

function stringProperty(packet: IPublishPacket, name: string): string | undefined {
  const value = packet.properties?.userProperties?.[name]
  return typeof value === 'string' ? value : undefined
}

/** Remaining time of a test that must finish by `deadline`, for `within`. */
function left(deadline: number): number {
  return Math.max(1, deadline - Date.now())
}

/**
 * Everything the consumers of one test saw, in both phases. An ack is "confirmed" once its PUBACK
 * arrived with reason code 0; an ack sent without a PUBACK before the kill may or may not have been
 * written.
 */
class Ledger {
  readonly deliveries: Delivery[] = []
  readonly confirmedAcks = new Map<string, 1 | 2>()
  /** Acks sent before the kill (confirmed or not). */
  readonly sentAcks1 = new Set<string>()
  readonly ackErrors: string[] = []
  /** Payload -> message-id of its first delivery. */
  readonly messageIds = new Map<string, string>()
  readonly unknown: string[] = []
  readonly changes = new Set<() => void>()

  deliveredIn(phase: 1 | 2): Set<string> {
    return new Set(this.deliveries.filter((d) => d.phase === phase).map((d) => d.payload))
  }

  confirmedIn(phase: 1 | 2): Set<string> {
    const set = new Set<string>()
    for (const [payload, p] of this.confirmedAcks) if (p === phase) set.add(payload)
    return set
  }

  changed(): void {
    for (const listener of this.changes) listener()
  }
}

/**
 * Connects `CONSUMERS` MQTT 5 consumers in `group`; each acks every delivery with `$ack` and the
 * delivery's message-id. `active()` false stops acking (the broker is being killed).
 */
async function startConsumers(
  t: TestContext,
  broker: KillableBroker,
  queue: string,
  group: string,
  phase: 1 | 2,
  ledger: Ledger,
  known: ReadonlySet<string>,
  active: () => boolean,
  onConfirmedAck: () => void = () => {},
): Promise<MqttClient[]> {
  const topic = `$queue/${queue}`
  const consumers: MqttClient[] = []
  for (let i = 0; i < CONSUMERS; i++) {
    const consumer = await connectClient(t, broker.mqttPort, { clientId: uniqueId(`crashworker${phase}`) })
    consumer.on('error', () => {}) // the kill resets the connection; the ledger is what counts
    consumer.on('message', (_topic, payloadBuffer, packet) => {
      const payload = payloadBuffer.toString()
      const messageId = stringProperty(packet, 'message-id')
      const deliveryCount = Number(stringProperty(packet, 'delivery-count'))
      if (!known.has(payload) || messageId === undefined || !MESSAGE_ID.test(messageId)) {
        ledger.unknown.push(`${payload} (message-id ${messageId}, phase ${phase})`)
        return
      }
      const firstId = ledger.messageIds.get(payload)
      if (firstId === undefined) ledger.messageIds.set(payload, messageId)
      else if (firstId !== messageId) ledger.unknown.push(`${payload} came as ${firstId} and ${messageId}`)
      ledger.deliveries.push({ payload, messageId, deliveryCount, phase })
      if (!active()) return
      if (phase === 1) ledger.sentAcks1.add(payload)
      consumer.publish(
        `${topic}/$ack`,
        '',
        { qos: 1, properties: { userProperties: { 'message-id': messageId, 'group-id': group } } },
        (err) => {
          if (err !== undefined && err !== null) {
            if (active()) ledger.ackErrors.push(`${payload} (${messageId}): ${err.message}`)
            return
          }
          if (!ledger.confirmedAcks.has(payload)) ledger.confirmedAcks.set(payload, phase)
          onConfirmedAck()
          ledger.changed()
        },
      )
    })
    await consumer.subscribeAsync(topic, {
      qos: 1,
      properties: { userProperties: { 'consumer-group': group } },
    })
    consumers.push(consumer)
  }
  return consumers
}

/**
 * After the restart: consumes until every message in `mustSettle` has a confirmed ack, or was acked
 * without confirmation before the kill and not delivered again; then checks those last ones really are
 * settled (a repeated `$ack` must be refused as "already settled").
 */
async function consumeAfterRestart(
  t: TestContext,
  broker: KillableBroker,
  queue: string,
  group: string,
  ledger: Ledger,
  known: ReadonlySet<string>,
  mustSettle: ReadonlySet<string>,
  deadline: number,
): Promise<void> {
  const delivered2 = new Set<string>()
  const pending = () => {
    const open: string[] = []
    for (const payload of mustSettle) {
      if (ledger.confirmedAcks.has(payload)) continue
      if (ledger.sentAcks1.has(payload) && !delivered2.has(payload)) continue
      open.push(payload)
    }
    return open
  }
  let wake!: () => void
  const settled = new Promise<void>((resolve) => (wake = resolve))
  const check = () => {
    for (const d of ledger.deliveries) if (d.phase === 2) delivered2.add(d.payload)
    if (pending().length === 0) wake()
  }
  ledger.changes.add(check)
  const consumers = await startConsumers(t, broker, queue, group, 2, ledger, known, () => true)
  check()
  try {
    await within(settled, left(deadline), 'every PUBACKed message to be acked after the restart').catch(
      (err: unknown) => {
        const open = pending()
        throw new Error(
          `${open.length} PUBACKed messages not acked after the restart (e.g. ${open.slice(0, 5).join(', ')}); ` +
            `${ledger.deliveries.length} deliveries, ${ledger.confirmedAcks.size} confirmed acks, ` +
            `ack errors: ${ledger.ackErrors.slice(0, 3).join('; ')}`,
          { cause: err },
        )
      },
    )
  } finally {
    ledger.changes.delete(check)
  }

  // Acked before the kill without a PUBACK and not delivered since: the settle must have been written.
  const unconfirmed = [...mustSettle].filter((p) => !ledger.confirmedAcks.has(p))
  const consumer = consumers[0]!
  for (const payload of unconfirmed) {
    const messageId = ledger.messageIds.get(payload)!
    const packet = await within(
      new Promise<IPublishPacket | undefined>((resolve) =>
        consumer.publish(
          `$queue/${queue}/$ack`,
          '',
          { qos: 1, properties: { userProperties: { 'message-id': messageId, 'group-id': group } } },
          (_err, puback) => resolve(puback as IPublishPacket | undefined),
        ),
      ),
      left(deadline),
      `the PUBACK of a repeated ack of ${messageId}`,
    )
    const reason = (packet as { properties?: { reasonString?: string } } | undefined)?.properties
      ?.reasonString
    assert.match(
      reason ?? '',
      /already settled/,
      `${payload} (${messageId}) was acked without PUBACK before the kill, never redelivered, ` +
        `yet a repeated ack says "${reason}": an unsettled message was not delivered again`,
    )
  }
}

void test(`kill -9 while consuming ${MESSAGES} messages, restart on the same data dir`, async (t) => {
  const started = Date.now()
  const deadline = started + TIME_LIMIT_MS
  const dataDir = await tempDir(t, 'spool-crash-')
  const queue = `crash/${uniqueId('q')}`
  const group = uniqueId('g')
  const topic = `$queue/${queue}`
  const all = new Set(Array.from({ length: MESSAGES }, (_, i) => payloadOf(i)))

  const first = await spawnSpoolOn(t, dataDir)
  const publisher = await connectClient(t, first.mqttPort)
  const pubacked = new Set<string>()
  await within(
    Promise.all(
      [...all].map((payload) =>
        publisher.publishAsync(topic, payload, { qos: 1 }).then(() => pubacked.add(payload)),
      ),
    ),
    left(deadline),
    `${MESSAGES} PUBACKs (have ${pubacked.size})`,
  )
  await publisher.endAsync()
  const publishedMs = Date.now() - started

  const ledger = new Ledger()
  let alive = true
  let confirmed = 0
  let killed: Promise<unknown> | undefined
  await startConsumers(
    t,
    first,
    queue,
    group,
    1,
    ledger,
    all,
    () => alive,
    () => {
      if (++confirmed >= KILL_AFTER_ACKS && killed === undefined) killed = first.kill9()
    },
  )
  await until(() => killed !== undefined, left(deadline), `${KILL_AFTER_ACKS} acks before the kill`)
  const exit = await within(first.exited, left(deadline), 'the killed broker to exit')
  alive = false
  assert.equal(exit.signal, 'SIGKILL', `the broker died of ${exit.signal ?? exit.code}, not of the kill`)
  const killedMs = Date.now() - started
  const acked1 = ledger.confirmedIn(1)
  const delivered1 = ledger.deliveredIn(1)

  const second = await spawnSpoolOn(t, dataDir)
  await consumeAfterRestart(t, second, queue, group, ledger, all, pubacked, deadline)

  assert.deepEqual(ledger.unknown, [], 'only published messages, each under one message-id')
  assert.equal(pubacked.size, MESSAGES, 'every publish got its PUBACK (no kill while publishing)')
  const deliveredEver = new Set(ledger.deliveries.map((d) => d.payload))
  const neverDelivered = [...pubacked].filter((p) => !deliveredEver.has(p))
  assert.deepEqual(
    neverDelivered.slice(0, 10),
    [],
    `${neverDelivered.length} PUBACKed messages never delivered`,
  )
  const ackedCameBack = ledger.deliveries.filter((d) => d.phase === 2 && acked1.has(d.payload))
  assert.deepEqual(
    ackedCameBack.slice(0, 10),
    [],
    `${ackedCameBack.length} deliveries of messages acked before the kill`,
  )
  const deliveredBefore = new Map<string, number>()
  for (const d of ledger.deliveries) {
    if (d.phase === 1)
      deliveredBefore.set(d.payload, Math.max(deliveredBefore.get(d.payload) ?? 0, d.deliveryCount))
  }
  const redelivered = ledger.deliveries.filter((d) => d.phase === 2 && deliveredBefore.has(d.payload))
  assert.ok(redelivered.length > 0, 'the kill left unsettled deliveries to redeliver')
  // Each attempt is durable before its delivery is sent (QueueManager.deliver), so a kill never
  // makes a redelivery look like a first one.
  const notIncremented = redelivered.filter((d) => d.deliveryCount <= deliveredBefore.get(d.payload)!)
  assert.deepEqual(
    notIncremented.slice(0, 10),
    [],
    `${notIncremented.length} of ${redelivered.length} redeliveries of messages delivered before the ` +
      `kill do not carry a higher delivery-count`,
  )
  assert.ok(
    redelivered.every((d) => d.deliveryCount >= 2),
    'redelivered messages carry delivery-count >= 2',
  )
  assert.ok(
    ledger.deliveries.every((d) => Number.isSafeInteger(d.deliveryCount) && d.deliveryCount >= 1),
    'every delivery carries a delivery-count',
  )
  assert.deepEqual(ledger.ackErrors, [], 'no ack was refused')
  t.diagnostic(
    `published ${MESSAGES} in ${publishedMs} ms; killed after ${acked1.size} confirmed acks ` +
      `(${delivered1.size} delivered) at ${killedMs} ms; after the restart ${redelivered.length} redeliveries ` +
      `of ${delivered1.size - acked1.size} unconfirmed; all settled at ${Date.now() - started} ms`,
  )
})

void test(`kill -9 while publishing ${MESSAGES} messages, restart on the same data dir`, async (t) => {
  const started = Date.now()
  const deadline = started + TIME_LIMIT_MS
  const dataDir = await tempDir(t, 'spool-crash-')
  const queue = `crash/${uniqueId('q')}`
  const group = uniqueId('g')
  const topic = `$queue/${queue}`
  const all = new Set(Array.from({ length: MESSAGES }, (_, i) => payloadOf(i)))

  const first = await spawnSpoolOn(t, dataDir)
  const publisher = await connectClient(t, first.mqttPort)
  publisher.on('error', () => {}) // the kill resets the connection
  const pubacked = new Set<string>()
  let killed: Promise<unknown> | undefined
  for (const payload of all) {
    publisher.publish(topic, payload, { qos: 1 }, (err) => {
      if (err !== undefined && err !== null) return
      pubacked.add(payload)
      if (pubacked.size >= KILL_AFTER_PUBACKS && killed === undefined) killed = first.kill9()
    })
  }
  await until(() => killed !== undefined, left(deadline), `${KILL_AFTER_PUBACKS} PUBACKs before the kill`)
  const exit = await within(first.exited, left(deadline), 'the killed broker to exit')
  assert.equal(exit.signal, 'SIGKILL', `the broker died of ${exit.signal ?? exit.code}, not of the kill`)
  const pubackedAtKill = new Set(pubacked)
  publisher.end(true)
  const killedMs = Date.now() - started

  const second = await spawnSpoolOn(t, dataDir)
  const ledger = new Ledger()
  await consumeAfterRestart(t, second, queue, group, ledger, all, pubackedAtKill, deadline)

  assert.deepEqual(ledger.unknown, [], 'only published messages, each under one message-id')
  const deliveredEver = new Set(ledger.deliveries.map((d) => d.payload))
  const lost = [...pubackedAtKill].filter((p) => !deliveredEver.has(p))
  assert.deepEqual(lost.slice(0, 10), [], `${lost.length} PUBACKed messages lost in the crash`)
  assert.ok(
    ledger.deliveries.every((d) => d.deliveryCount === 1),
    'nothing was delivered before the kill, so every delivery is a first one',
  )
  assert.deepEqual(ledger.ackErrors, [], 'no ack was refused')
  const extra = deliveredEver.size - pubackedAtKill.size
  t.diagnostic(
    `killed after ${pubackedAtKill.size} PUBACKs at ${killedMs} ms; after the restart ${deliveredEver.size} ` +
      `messages delivered (${extra} stored without a PUBACK reaching the publisher); done at ${Date.now() - started} ms`,
  )
})
