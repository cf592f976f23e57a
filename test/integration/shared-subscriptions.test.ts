// MQTT 5 Shared Subscriptions (§4.8.2) through aedes patch 001 + src/protocol/shared-subscriptions.ts.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import {
  type Received,
  collect,
  TIMEOUT_MS,
  connackOf,
  connectClient,
  startTestServer,
  uniqueId,
  waitForCount,
} from '../helpers/server.js'
import { until, within } from '../helpers/wait.js'

void test('CONNACK advertises Shared Subscription Available', async (t) => {
  const server = await startTestServer(t)
  const client = await connectClient(t, server.mqttPort)
  assert.equal(connackOf(client).properties?.sharedSubscriptionAvailable, true)
})

void test('$share/<group>/<filter> spreads messages round robin; every group gets each message once', async (t) => {
  const server = await startTestServer(t)
  const topic = `jobs/${uniqueId()}`
  const members = await Promise.all([1, 2, 3].map(() => connectClient(t, server.mqttPort)))
  const other = await connectClient(t, server.mqttPort) // a second group with one member
  const plain = await connectClient(t, server.mqttPort) // a normal subscriber
  for (const m of members) {
    const granted = await m.subscribeAsync(`$share/workers/${topic.split('/')[0]}/+`, { qos: 1 })
    assert.equal(granted[0]?.qos, 1)
  }
  await other.subscribeAsync(`$share/audit/${topic}`, { qos: 1 })
  await plain.subscribeAsync(topic, { qos: 1 })
  const got = members.map((m) => collect(m))
  const audit = collect(other)
  const all = collect(plain)

  const pub = await connectClient(t, server.mqttPort)
  const n = 30
  for (let i = 0; i < n; i++) await pub.publishAsync(topic, String(i), { qos: 1 })

  await waitForCount(plain, all, n)
  await waitForCount(other, audit, n)
  await until(() => got.reduce((s, g) => s + g.length, 0) >= n, 5_000, 'workers to receive all')
  const counts = got.map((g) => g.length)
  assert.deepEqual(counts, [10, 10, 10], `round robin over 3 members, got ${counts.join(',')}`)
  const seen = got.flatMap((g) => g.map((r) => Number(r.payload.toString()))).sort((a, b) => a - b)
  assert.deepEqual(
    seen,
    Array.from({ length: n }, (_, i) => i),
    'each message exactly once in the group',
  )
})

void test('a member that unsubscribes or disconnects stops receiving; the rest take over', async (t) => {
  const server = await startTestServer(t)
  const topic = `rr/${uniqueId()}`
  const share = `$share/g/${topic}`
  const a = await connectClient(t, server.mqttPort)
  const b = await connectClient(t, server.mqttPort)
  await a.subscribeAsync(share, { qos: 1 })
  await b.subscribeAsync(share, { qos: 1 })
  assert.equal(server.broker.shared.memberCount(share), 2)
  await a.unsubscribeAsync(share)
  assert.equal(server.broker.shared.memberCount(share), 1)
  const gotA = collect(a)
  const gotB = collect(b)
  const pub = await connectClient(t, server.mqttPort)
  for (let i = 0; i < 4; i++) await pub.publishAsync(topic, String(i), { qos: 1 })
  await waitForCount(b, gotB, 4)
  assert.equal(gotA.length, 0)
  await b.endAsync()
  await until(() => server.broker.shared.memberCount(share) === 0, 5_000, 'group to empty')
})

void test('retained messages are not sent to a new shared subscription', async (t) => {
  const server = await startTestServer(t)
  const topic = `ret/${uniqueId()}`
  const pub = await connectClient(t, server.mqttPort)
  await pub.publishAsync(topic, 'old', { qos: 1, retain: true })
  const member = await connectClient(t, server.mqttPort)
  const got = collect(member)
  await member.subscribeAsync(`$share/g/${topic}`, { qos: 1 })
  await pub.publishAsync(topic, 'new', { qos: 1 })
  await waitForCount(member, got, 1)
  assert.deepEqual(
    got.map((r) => r.payload.toString()),
    ['new'],
  )
})

void test('MQTT 3.1.1 clients can use $share/ too', async (t) => {
  const server = await startTestServer(t)
  const topic = `v4share/${uniqueId()}`
  const a = await connectClient(t, server.mqttPort, { protocolVersion: 4 })
  const b = await connectClient(t, server.mqttPort, { protocolVersion: 4 })
  // A plain (not shared) barrier topic both members subscribe to: it reaches each of them after every
  // shared delivery published before it, so the counts below are final, not "at least".
  const barrier = `${topic}-barrier`
  for (const member of [a, b]) {
    await member.subscribeAsync(`$share/g/${topic}`, { qos: 1 })
    await member.subscribeAsync(barrier, { qos: 1 })
  }
  const gotA = collect(a)
  const gotB = collect(b)
  const pub = await connectClient(t, server.mqttPort)
  for (let i = 0; i < 4; i++) await pub.publishAsync(topic, String(i), { qos: 1 })
  await pub.publishAsync(barrier, 'end', { qos: 1 })
  await waitForCount(a, gotA, 1)
  await waitForCount(b, gotB, 1)
  const barrierSeen = (got: Received[]) => got.some((m) => m.topic === barrier)
  await until(() => barrierSeen(gotA) && barrierSeen(gotB), TIMEOUT_MS, 'the barrier on both members')
  const shared = (got: Received[]) => got.filter((m) => m.topic === topic).map((m) => m.payload.toString())
  const [sharedA, sharedB] = [shared(gotA), shared(gotB)]
  assert.equal(sharedA.length, 2, `member a got ${JSON.stringify(sharedA)}`)
  assert.equal(sharedB.length, 2, `member b got ${JSON.stringify(sharedB)}`)
  assert.deepEqual(
    [...sharedA, ...sharedB].sort(),
    ['0', '1', '2', '3'],
    'each message to exactly one member',
  )
})

void test('an unacknowledged shared delivery to a persistent member is redelivered to it on reconnect', async (t) => {
  const server = await startTestServer(t)
  const topic = `unacked/${uniqueId()}`
  const clientId = uniqueId('member')
  const session = { clientId, clean: false, properties: { sessionExpiryInterval: 600 } }
  // Never PUBACK (mqtt.js then does not emit 'message' either): the delivery stays in flight.
  let firstDelivery: (payload: string) => void = () => undefined
  const first = within(
    new Promise<string>((resolve) => (firstDelivery = resolve)),
    TIMEOUT_MS,
    'the first delivery',
  )
  const member = await connectClient(t, server.mqttPort, {
    ...session,
    customHandleAcks: (_topic, message) => firstDelivery(message.toString()),
  })
  await member.subscribeAsync(`$share/g/${topic}`, { qos: 1 })
  const pub = await connectClient(t, server.mqttPort)
  await pub.publishAsync(topic, 'work', { qos: 1 })
  assert.equal(await first, 'work')
  await member.endAsync(true)

  let again: Received[] = []
  const back = await connectClient(t, server.mqttPort, session, (c) => {
    again = collect(c)
  })
  await waitForCount(back, again, 1)
  assert.equal(again[0]?.payload.toString(), 'work')
  assert.equal(again[0]?.packet.dup, true)
})

void test('publishing to a $share/ topic is refused', async (t) => {
  const server = await startTestServer(t)
  const client = await connectClient(t, server.mqttPort)
  await assert.rejects(client.publishAsync('$share/g/x', 'nope', { qos: 1 }), /not allowed|Not authorized/i)
  assert.equal(client.connected, true)
})
