// Resuming a persistent session on a plain topic while messages keep arriving: the stored queue comes
// first, in order, then what arrived during the resume; every message once, no DUP on messages never
// sent before, no packet id reused. Real brokers (in-process, and `spool start` children stopped with
// SIGTERM and kill -9), real mqtt.js clients, loopback, port 0; every wait bounded.
//
// Two causes, each with a deterministic test, and a user-like loop that hit both:
// - aedes restores the subscriptions (live deliveries start) before it reads the stored queue: a
//   message published in between went out live first, then the backlog, then again from the queue,
//   DUP=1 and the same packet id, after its PUBACK (aedes patch 034 holds live deliveries until the
//   queue has been sent).
// - aedes' packet counter restarted at 0 with a stable broker id, so packets queued before a restart
//   shared `brokerId:brokerCounter` with new ones and the persistence updated the wrong entry
//   (LevelPersistence continues the counter).
import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import type { Socket } from 'node:net'
import type { IClientOptions, IPublishPacket, MqttClient } from 'mqtt'
import { spawnSpoolOn, type KillableBroker } from '../helpers/child-broker.js'
import { connectClient, startTestServer, tempDir, uniqueId, TIMEOUT_MS } from '../helpers/server.js'
import { until, within } from '../helpers/wait.js'
import type { LevelPersistence } from '../../src/protocol/persistence/level-persistence.js'

const V5: IClientOptions = { protocolVersion: 5, clean: false, properties: { sessionExpiryInterval: 3600 } }
const V311: IClientOptions = { protocolVersion: 4, clean: false }

/** One PUBLISH as the subscriber saw it. */
interface Seen {
  payload: string
  messageId: number | undefined
  dup: boolean
}

const show = (seen: Seen[]) => seen.map((s) => `${s.payload}#${s.messageId}${s.dup ? 'D' : ''}`).join(' ')

/** Records every PUBLISH of `client` (set up before CONNECT) and turns Nagle off on its socket. */
function record(client: MqttClient, seen: Seen[]): void {
  ;(client.stream as Partial<Socket>).setNoDelay?.(true)
  client.on('message', (_topic, payload, packet: IPublishPacket) =>
    seen.push({ payload: payload.toString(), messageId: packet.messageId, dup: packet.dup }),
  )
}

function range(prefix: string, n: number): string[] {
  return Array.from({ length: n }, (_, i) => `${prefix}${i}`)
}

/** Every message exactly once, in `expected` order, none with DUP (none was sent before). */
function assertExactlyOnceInOrder(seen: Seen[], expected: string[], what: string): void {
  assert.deepEqual(
    seen.map((s) => s.payload),
    expected,
    `${what}: order or duplicates: ${show(seen)}`,
  )
  assert.deepEqual(
    seen.filter((s) => s.dup).map((s) => s.payload),
    [],
    `${what}: DUP=1 on a message not sent before: ${show(seen)}`,
  )
}

/** The packets LevelPersistence still holds for `clientId` (queued or in flight). */
async function storedFor(persistence: LevelPersistence, clientId: string): Promise<string[]> {
  const packets: string[] = []
  for await (const p of persistence.outgoingStream({ id: clientId })) {
    packets.push(String((p as { payload: Buffer }).payload))
  }
  return packets
}

/** {@link until} for an async condition. */
async function untilStored(
  persistence: LevelPersistence,
  clientId: string,
  condition: (stored: string[]) => boolean,
  what: string,
): Promise<void> {
  const deadline = Date.now() + TIMEOUT_MS
  let stored = await storedFor(persistence, clientId)
  while (!condition(stored)) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; stored: ${stored.join(' ')}`)
    await new Promise((resolve) => setTimeout(resolve, 5))
    stored = await storedFor(persistence, clientId)
  }
}

/**
 * Connects a publisher and publishes `payloads` (QoS 1) to `topic`. aedes PUBACKs a QoS 1 PUBLISH
 * before it routes it (queues it for offline sessions, then delivers it live), so the publisher also
 * subscribes, and returns once its own messages came back: by then they are queued everywhere.
 */
async function publishRouted(t: TestContext, port: number, topic: string, payloads: string[]) {
  const pub = await connectClient(t, port)
  const echoed: Seen[] = []
  record(pub, echoed)
  await pub.subscribeAsync(topic, { qos: 1 })
  for (const payload of payloads) await pub.publishAsync(topic, payload, { qos: 1 })
  await until(() => echoed.length >= payloads.length, TIMEOUT_MS, 'the publisher to get its messages back')
  return pub
}

/** Creates the session (one QoS 1 subscription) and leaves it offline. */
async function createSession(t: TestContext, port: number, clientId: string, options: IClientOptions) {
  const topic = `resume/${uniqueId()}`
  const sub = await connectClient(t, port, { clientId, ...options })
  await sub.subscribeAsync(topic, { qos: 1 })
  await sub.endAsync()
  return topic
}

for (const [name, options] of [
  ['MQTT 5', V5],
  ['MQTT 3.1.1', V311],
] as const) {
  void test(`${name}: a message published while the session resumes comes after the backlog, once`, async (t) => {
    // Forces the interleaving of the issue. aedes' connect steps are restoreSubs (live deliveries
    // start), storeWill (persistence.delWill), registerClient, CONNACK, emptyQueue (reads the stored
    // queue). The test publishes from inside delWill, so the message is queued and delivered live
    // before the queue is read, and lets the store of its live delivery (outgoingUpdate) complete
    // only after the CONNACK, as a slower disk would: the client gets the CONNACK, then the live
    // message, then the backlog, then the live message again with DUP=1 and the same packet id.
    const server = await startTestServer(t)
    const persistence = (server.aedes as unknown as { persistence: LevelPersistence }).persistence
    const clientId = uniqueId('resume')
    const topic = await createSession(t, server.mqttPort, clientId, options)
    const backlog = range('b', 10)
    const pub = await publishRouted(t, server.mqttPort, topic, backlog)

    const seen: Seen[] = []
    let armed = true
    let liveUpdated = false
    let published: Promise<unknown> = Promise.resolve()
    let connackSent = (): void => {}
    const connacked = new Promise<void>((resolve) => (connackSent = resolve))
    server.aedes.on('connackSent', (_packet, client) => {
      if (client.id === clientId) setImmediate(connackSent)
    })
    const outgoingUpdate = persistence.outgoingUpdate.bind(persistence)
    persistence.outgoingUpdate = async (client, packet) => {
      const stored = outgoingUpdate(client, packet)
      if (client.id === clientId && String(packet.payload) === 'live') {
        liveUpdated = true
        await within(connacked, TIMEOUT_MS, 'the CONNACK')
      }
      return stored
    }
    const delWill = persistence.delWill.bind(persistence)
    persistence.delWill = async (client) => {
      if (armed && client.id === clientId) {
        armed = false
        // Not awaited: before the fix the PUBACK to the publisher waited for the live delivery,
        // which here waits for the CONNACK, which waits for this delWill.
        published = pub.publishAsync(topic, 'live', { qos: 1 })
        // Before the fix its live delivery is under way soon; after it, it is held (200 ms to see).
        const deadline = Date.now() + 200
        await until(() => liveUpdated || Date.now() > deadline, TIMEOUT_MS, 'live delivery or 200 ms')
      }
      return delWill(client)
    }

    const sub = await connectClient(t, server.mqttPort, { clientId, ...options }, (c) => record(c, seen))
    assert.equal(armed, false, 'delWill was not called on resume: the interleaving was not forced')
    await within(published, TIMEOUT_MS, 'the PUBACK for the live message')
    await until(() => seen.length >= backlog.length + 1, TIMEOUT_MS, `${backlog.length + 1} messages`)
    // Anything sent twice arrives right behind; a marker published now comes after all of it.
    await pub.publishAsync(topic, 'marker', { qos: 1 })
    await until(() => seen.some((s) => s.payload === 'marker'), TIMEOUT_MS, 'the marker')
    assertExactlyOnceInOrder(seen, [...backlog, 'live', 'marker'], 'resume')
    await untilStored(persistence, clientId, (stored) => stored.length === 0, 'every message acked')
    await sub.endAsync()
  })
}

void test('after a restart, a new message does not take the identity of one queued before it', async (t) => {
  // aedes numbers packets with a counter that restarts at 0; with Spool's stable broker id (the node
  // id) a new packet had the brokerId:brokerCounter of one stored before the restart, and
  // outgoingUpdate gave the new delivery's packet id to the stored packet. Deterministic: the
  // subscriber holds its PUBACKs so the stored packets are still there when the new one arrives.
  const dataDir = await tempDir(t)
  const clientId = uniqueId('counter')
  let server = await startTestServer(t, { dataDir })
  const topic = await createSession(t, server.mqttPort, clientId, V5)
  const backlog = range('b', 30)
  let pub = await publishRouted(t, server.mqttPort, topic, backlog)
  await pub.endAsync()
  await server.close()

  server = await startTestServer(t, { dataDir })
  const persistence = (server.aedes as unknown as { persistence: LevelPersistence }).persistence
  const seen: Seen[] = []
  const heldAcks: Array<() => void> = []
  let holding = true
  const resumed = within(
    new Promise<void>((resolve) =>
      server.aedes.on('clientReady', (client) => {
        if (client.id === clientId) resolve()
      }),
    ),
    TIMEOUT_MS,
    'the resume to finish',
  )
  const sub = await connectClient(t, server.mqttPort, { clientId, ...V5 }, (c) => {
    record(c, seen)
    // mqtt.js sends the PUBACK when handleMessage calls back: hold them (mqtt.js reads no further
    // until then, so the broker's window of in-flight packets stays full of the stored ones).
    c.handleMessage = (_packet, callback) => {
      if (holding) heldAcks.push(() => callback())
      else callback()
    }
  })
  await resumed
  pub = await connectClient(t, server.mqttPort)
  const live = range('l', 10)
  for (const payload of live) await pub.publishAsync(topic, payload, { qos: 1 })
  holding = false
  for (const ack of heldAcks.splice(0)) ack()
  await until(() => seen.length >= backlog.length + live.length, TIMEOUT_MS, 'backlog and live messages')
  assertExactlyOnceInOrder(
    seen.slice(0, backlog.length + live.length),
    [...backlog, ...live],
    'after the restart',
  )
  await untilStored(persistence, clientId, (stored) => stored.length === 0, 'every message acked and removed')
  assertExactlyOnceInOrder(seen, [...backlog, ...live], 'after the restart')
  await sub.endAsync()

  // Nothing comes back on the next resume.
  const again: Seen[] = []
  await connectClient(t, server.mqttPort, { clientId, ...V5 }, (c) => record(c, again))
  await pub.publishAsync(topic, 'marker', { qos: 1 })
  await until(() => again.some((s) => s.payload === 'marker'), TIMEOUT_MS, 'the marker')
  assertExactlyOnceInOrder(again, ['marker'], 'next resume')
})

async function stop(broker: KillableBroker, how: 'SIGTERM' | 'SIGKILL'): Promise<void> {
  if (how === 'SIGKILL') await broker.kill9()
  else {
    broker.child.kill('SIGTERM')
    await within(broker.exited, TIMEOUT_MS, 'spool to exit on SIGTERM')
  }
}

const RESUMES = 5

for (const how of ['SIGTERM', 'SIGKILL'] as const) {
  void test(`user-like: ${RESUMES} resumes after ${how}, a publisher publishing throughout`, async (t) => {
    // As the issue reports it: a backlog queued while the subscriber is away, the broker restarted,
    // and a publisher that goes on publishing while the subscriber reconnects.
    const failures: string[] = []
    for (let round = 0; round < RESUMES; round++) {
      const dataDir = await tempDir(t)
      const clientId = uniqueId('user')
      const options = round % 2 === 0 ? V5 : V311
      let broker = await spawnSpoolOn(t, dataDir)
      const topic = await createSession(t, broker.mqttPort, clientId, options)
      const backlog = range('b', 20)
      let pub = await publishRouted(t, broker.mqttPort, topic, backlog)
      await pub.endAsync()
      await stop(broker, how)

      broker = await spawnSpoolOn(t, dataDir)
      pub = await connectClient(t, broker.mqttPort)
      const live = range('l', 40)
      const publishing = (async () => {
        for (const payload of live) await pub.publishAsync(topic, payload, { qos: 1 })
      })()
      const seen: Seen[] = []
      const sub = await connectClient(t, broker.mqttPort, { clientId, ...options }, (c) => record(c, seen))
      await within(publishing, TIMEOUT_MS, 'the live messages to be published')
      await pub.publishAsync(topic, 'marker', { qos: 1 })
      await until(() => seen.some((s) => s.payload === 'marker'), TIMEOUT_MS, 'the marker')
      try {
        assertExactlyOnceInOrder(seen, [...backlog, ...live, 'marker'], `round ${round}`)
      } catch (err) {
        failures.push((err as Error).message)
      }
      await sub.endAsync()
      await pub.endAsync()
      await broker.kill9()
    }
    assert.deepEqual(failures, [], `${failures.length} of ${RESUMES} resumes went wrong`)
  })
}
