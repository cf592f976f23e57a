// The traffic that kills plain aedes with "RangeError: Maximum call stack size exceeded" inside
// mqemitter 7.1.0, run against plain aedes (recorded, not asserted: its death is likely, not certain)
// and against Spool (asserted: the broker lives and every message is stored and delivered).
//
// Why plain aedes dies (node_modules/mqemitter/mqemitter.js, aedes concurrency 100): every emit
// increments `current`; at `current >= concurrency` further emits wait in `_messageQueue`. When a
// running emit completes, `released()` shifts the next queued message and calls `_do()`. A message
// with no matching listener (an "ack" published to `$queue/x/$ack`, which nobody subscribes to)
// completes synchronously inside fastparallel, which calls `released()` again: the queue drains by
// recursion, 3 frames per message, so ~2,000-3,000 consecutive listener-less messages overflow the
// stack. The traffic below builds such runs: 4 publishers fire 5,000 QoS 1 messages each without
// waiting, so the 4 x 8 deliveries per tick hold `current` at 100 (each delivery completes a tick
// later, or at 'drain'); meanwhile 8 consumers answer every delivery with a QoS 0 ack, and aedes
// parses each consumer's 64 KB read in one go, emitting ~1,000 acks back to back into the backlog.
// Spool never routes `$queue/` traffic through mqemitter (src/protocol/queue-adapter.ts).
import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { MqttClient } from 'mqtt'
import {
  spawnPlainAedes,
  spawnSpoolOn,
  type ChildExit,
  type KillableBroker,
} from '../helpers/child-broker.js'
import { connectClient, tempDir, uniqueId } from '../helpers/server.js'
import { within } from '../helpers/wait.js'

const PUBLISHERS = 4
const MESSAGES_PER_PUBLISHER = 5_000
const TOTAL = PUBLISHERS * MESSAGES_PER_PUBLISHER
/** Each consumer gets every message: on plain aedes as a subscriber, on Spool as its own group. */
const CONSUMERS = 8
const TIME_LIMIT_MS = 45_000
/** The traffic counts as stalled when no delivery arrived for this long (with messages still due). */
const STALL_MS = 5_000
const STACK_OVERFLOW = /RangeError: Maximum call stack size exceeded/

interface TrafficResult {
  /** How the broker ended, if it did during the traffic. */
  exit: ChildExit | undefined
  timedOut: boolean
  /** No delivery for {@link STALL_MS} while messages were still due. */
  stalled: boolean
  pubacks: number
  publishErrors: number
  /** Distinct payloads each consumer received. */
  distinct: number[]
  deliveries: number
  acksSent: number
  elapsedMs: number
}

/**
 * Runs the traffic against `broker`: consumers subscribed to `$queue/<queue>` ack every delivery
 * with a QoS 0 publish to `$queue/<queue>/$ack` (message-id: Spool's, or on plain aedes the payload);
 * publishers fire all their QoS 1 publishes at once. Ends when every publish got its PUBACK and every
 * consumer saw every message, when the broker exits, when deliveries stall, or after {@link TIME_LIMIT_MS}.
 */
async function runTraffic(t: TestContext, broker: KillableBroker, queue: string): Promise<TrafficResult> {
  const topic = `$queue/${queue}`
  const result: TrafficResult = {
    exit: undefined,
    timedOut: false,
    stalled: false,
    pubacks: 0,
    publishErrors: 0,
    distinct: [],
    deliveries: 0,
    acksSent: 0,
    elapsedMs: 0,
  }
  let finish!: () => void
  const finished = new Promise<void>((resolve) => (finish = resolve))
  const seen: Array<Set<string>> = []
  const check = () => {
    if (result.pubacks === TOTAL && seen.every((s) => s.size === TOTAL)) finish()
  }

  const consumers: MqttClient[] = []
  for (let i = 0; i < CONSUMERS; i++) {
    const group = uniqueId('g')
    const received = new Set<string>()
    seen.push(received)
    const consumer = await connectClient(t, broker.mqttPort, { clientId: uniqueId('overflowworker') })
    consumer.on('error', () => {}) // a dying broker resets the connection; the result says why
    consumer.on('message', (_topic, payloadBuffer, packet) => {
      const payload = payloadBuffer.toString()
      const spoolId = packet.properties?.userProperties?.['message-id']
      const messageId = typeof spoolId === 'string' ? spoolId : payload
      result.deliveries++
      received.add(payload)
      result.acksSent++
      consumer.publish(`${topic}/$ack`, '', {
        qos: 0,
        properties: { userProperties: { 'message-id': messageId } },
      })
      if (received.size === TOTAL) check()
    })
    await consumer.subscribeAsync(topic, {
      qos: 1,
      properties: { userProperties: { 'consumer-group': group } },
    })
    consumers.push(consumer)
  }
  const publishers = await Promise.all(
    Array.from({ length: PUBLISHERS }, async () => {
      const publisher = await connectClient(t, broker.mqttPort)
      publisher.on('error', () => {})
      return publisher
    }),
  )

  const started = Date.now()
  for (let m = 0; m < MESSAGES_PER_PUBLISHER; m++) {
    publishers.forEach((publisher, p) =>
      publisher.publish(topic, `p${p}-m${m}`, { qos: 1 }, (err) => {
        if (err !== undefined && err !== null) result.publishErrors++
        else if (++result.pubacks === TOTAL) check()
      }),
    )
  }
  let timer: NodeJS.Timeout | undefined
  let watchdog: NodeJS.Timeout | undefined
  const timeout = new Promise<void>((resolve) => {
    timer = setTimeout(() => {
      result.timedOut = true
      resolve()
    }, TIME_LIMIT_MS)
    let lastDeliveries = -1
    let lastProgressAt = Date.now()
    watchdog = setInterval(() => {
      if (result.deliveries !== lastDeliveries) {
        lastDeliveries = result.deliveries
        lastProgressAt = Date.now()
      } else if (Date.now() - lastProgressAt >= STALL_MS) {
        result.stalled = true
        resolve()
      }
    }, 250)
  })
  await Promise.race([finished, broker.exited.then((exit) => void (result.exit = exit)), timeout])
  clearTimeout(timer)
  clearInterval(watchdog)
  result.elapsedMs = Date.now() - started
  result.distinct = seen.map((s) => s.size)
  for (const client of [...consumers, ...publishers]) client.end(true)
  return result
}

function describe(result: TrafficResult): string {
  const ended = result.exit === undefined ? 'alive' : `exited ${result.exit.code ?? result.exit.signal}`
  const cut = result.timedOut ? ' (time limit)' : result.stalled ? ` (no delivery for ${STALL_MS} ms)` : ''
  return (
    `${ended} after ${result.elapsedMs} ms${cut}: ` +
    `${result.pubacks}/${TOTAL} PUBACKs, ${result.publishErrors} refused, ${result.deliveries} deliveries ` +
    `(distinct per consumer: ${result.distinct.join(' ')}), ${result.acksSent} QoS 0 acks sent`
  )
}

void test(`plain aedes: ${PUBLISHERS} publishers x ${MESSAGES_PER_PUBLISHER}, ${CONSUMERS} consumers acking with QoS 0 (recorded)`, async (t) => {
  const broker = await spawnPlainAedes(t)
  const result = await runTraffic(t, broker, `overflow/${uniqueId('q')}`)
  const died = result.exit !== undefined
  t.diagnostic(`plain aedes ${describe(result)}`)
  if (died) {
    // It may die, but only of the mqemitter recursion this test is about.
    assert.match(broker.stderr(), STACK_OVERFLOW, `plain aedes died of something else: ${broker.stderr()}`)
    const frames = [...new Set(broker.stderr().match(/at \S+ \(\S*mqemitter\.js:\d+/g) ?? [])]
    t.diagnostic(
      `died of "Maximum call stack size exceeded"; top frames: ${frames.map((f) => f.slice(3)).join(', ')}`,
    )
  } else {
    t.diagnostic('survived this run (it dies in most runs; see the header comment)')
  }
})

/** Starts Spool with `settings` for `queue`, runs the traffic and asserts the broker took it. */
async function spoolTakesTheTraffic(t: TestContext, settings: Record<string, unknown>): Promise<void> {
  const dataDir = await tempDir(t, 'spool-overflow-')
  const queue = `overflow/${uniqueId('q')}`
  const config = join(dataDir, 'spool.json')
  await writeFile(config, JSON.stringify({ queues: { declared: { [queue]: settings } } }))
  const broker = await spawnSpoolOn(t, join(dataDir, 'data'), ['--config', config])
  const result = await runTraffic(t, broker, queue)
  t.diagnostic(`Spool ${describe(result)}`)

  assert.equal(result.exit, undefined, `Spool died: ${broker.stderr()}`)
  assert.doesNotMatch(broker.stderr(), STACK_OVERFLOW)
  assert.ok(broker.child.exitCode === null && broker.child.signalCode === null, 'Spool is still running')
  assert.equal(result.stalled || result.timedOut, false, `traffic did not complete: ${describe(result)}`)
  assert.equal(result.publishErrors, 0, 'no publish refused')
  assert.equal(result.pubacks, TOTAL, 'every message stored (PUBACKed)')
  assert.deepEqual(
    result.distinct,
    Array.from({ length: CONSUMERS }, () => TOTAL),
    'every group got every message (which also needs the QoS 0 acks to have settled: in-flight limits)',
  )
  // Still serving: a fresh client gets a PUBACK for a queue message.
  const probe = await connectClient(t, broker.mqttPort)
  await within(
    probe.publishAsync(`$queue/${queue}`, 'probe', { qos: 1 }),
    5_000,
    'a PUBACK after the traffic',
  )
}

void test('Spool, default queue settings: the same traffic, the broker lives and every group gets every message', (t) =>
  spoolTakesTheTraffic(t, {}))

// Unordered with a large window: deliveries and acks come in bursts as large as on plain aedes.
void test('Spool, ordering none and 1,000 in flight per consumer: the same traffic, in larger bursts', (t) =>
  spoolTakesTheTraffic(t, { ordering: 'none', maxInflightPerConsumer: 1_000 }))
