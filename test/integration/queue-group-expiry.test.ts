// Group lifecycle through the whole broker (real mqtt.js clients, LevelDB, the admin HTTP API and the
// metrics endpoint): short-lived consumers without `consumer-group` no longer pin a queue's messages
// for ever, and `queues.implicitGroups: false` refuses them with a SUBACK reason code.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import type { IClientOptions } from 'mqtt'
import { callApi, seg, TEST_ADMIN_TOKEN } from '../helpers/admin.js'
import { sample } from '../helpers/metrics.js'
import { connectClient, startTestServer, TIMEOUT_MS, uniqueId } from '../helpers/server.js'
import { messageIdOf, settleOk, subscribeQueue, uniqueQueue } from '../helpers/queues.js'
import { eventually, until } from '../helpers/wait.js'

interface GroupView {
  name: string
  consumers: string[]
  backlog: number
  implicit: boolean
  lastActiveAtMs: number
  expiresAtMs: number | null
}

void test('implicit groups of mqtt.js default client ids expire: the queue drains to depth 0 once the real group acked', async (t) => {
  const queue = uniqueQueue('implicit')
  const expiryMs = 600
  const server = await startTestServer(t, {
    raw: {
      admin: { token: TEST_ADMIN_TOKEN },
      queues: { declared: { [queue]: { implicitGroupExpiryMs: expiryMs, partitions: 2 } } },
    },
  })
  const api = <T>(method: string, path: string) =>
    callApi<T>(`http://127.0.0.1:${server.httpPort}`, method, path, { token: TEST_ADMIN_TOKEN })
  const worker = await connectClient(t, server.mqttPort)
  let acked = 0
  worker.on('message', (topic, payload, packet) => {
    void settleOk(worker, queue, '$ack', messageIdOf({ topic, payload, packet })).then(() => acked++)
  })
  await subscribeQueue(worker, queue, 'workers')

  // Three short-lived consumers with mqtt.js' own client ids and no consumer-group.
  for (let i = 0; i < 3; i++) {
    const options: IClientOptions = { clientId: `mqttjs_${uniqueId('x').slice(2)}` }
    const passer = await connectClient(t, server.mqttPort, options)
    await subscribeQueue(passer, queue)
    await passer.endAsync()
  }
  const publisher = await connectClient(t, server.mqttPort)
  for (let i = 0; i < 8; i++) await publisher.publishAsync(`$queue/${queue}`, `m${i}`, { qos: 1 })
  await until(() => acked === 8, TIMEOUT_MS, 'the real group acked all 8')

  const groups = await api<{ groups: GroupView[] }>('GET', `/queues/${seg(queue)}/groups`)
  const implicit = groups.body.groups.filter((group) => group.implicit)
  assert.equal(implicit.length, 3, JSON.stringify(groups.body))
  for (const group of implicit) {
    assert.deepEqual(group.consumers, [])
    assert.equal(group.backlog, 8)
    assert.equal(group.expiresAtMs, group.lastActiveAtMs + expiryMs)
  }
  const named = groups.body.groups.find((group) => group.name === 'workers')!
  assert.equal(named.implicit, false)
  assert.equal(named.expiresAtMs, null, 'a group with a member online does not expire')
  const before = await (await fetch(`http://127.0.0.1:${server.httpPort}/metrics`)).text()
  const held = { queue, group: implicit[0]!.name }
  assert.equal(sample(before, 'spool_queue_group_backlog', held), 8)
  assert.equal(sample(before, 'spool_queue_group_backlog', { queue, group: 'workers' }), 0)

  await eventually(
    async () => (await api<{ depth: number }>('GET', `/queues/${seg(queue)}`)).body.depth === 0,
    TIMEOUT_MS,
    'depth back to 0 after the implicit groups expired',
  )
  const after = await api<{ groups: GroupView[] }>('GET', `/queues/${seg(queue)}/groups`)
  assert.deepEqual(
    after.body.groups.map((group) => group.name),
    ['workers'],
  )
  const metrics = await (await fetch(`http://127.0.0.1:${server.httpPort}/metrics`)).text()
  assert.equal(sample(metrics, 'spool_queue_groups_expired_total', { queue }), 3)
})

void test('queues.implicitGroups false: a SUBSCRIBE without consumer-group gets 0x83 with a Reason String; with one it works', async (t) => {
  const queue = uniqueQueue('named-only')
  const server = await startTestServer(t, { raw: { queues: { implicitGroups: false } } })
  const client = await connectClient(t, server.mqttPort)
  // mqtt.js rejects subscribeAsync on a failure code: the SUBACK is on the error.
  const refused = await client.subscribeAsync(`$queue/${queue}`, { qos: 1 }).then(
    () => undefined,
    (err: { packet?: { granted?: number[]; properties?: { reasonString?: string } } }) => err.packet,
  )
  assert.deepEqual(refused?.granted, [0x83])
  assert.match(refused?.properties?.reasonString ?? '', /consumer-group/)
  await subscribeQueue(client, queue, 'named')
  assert.equal(client.connected, true)
})
