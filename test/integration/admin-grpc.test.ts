// The admin gRPC service against a real broker on port 0: every rpc in one queue's life (with messages
// published, rejected and redriven over MQTT by mqtt.js), the token rule, and the status codes for bad
// input and unknown queues. Real @grpc/grpc-js clients built from proto/spool/admin/v1/admin.proto.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { status } from '@grpc/grpc-js'
import { TEST_ADMIN_TOKEN as TOKEN } from '../helpers/admin.js'
import { adminGrpcClient, rpcError } from '../helpers/admin-grpc.js'
import {
  collect,
  connectClient,
  startTestServer,
  uniqueId,
  waitForCount,
  type Received,
} from '../helpers/server.js'
import { messageIdOf, settleOk, subscribeQueue, uniqueQueue } from '../helpers/queues.js'

interface Group {
  name: string
  consumers: string[]
  backlog: number
  inflight: number
  implicit: boolean
  lastActiveAtMs: number
  expiresAtMs: number
}
interface Queue {
  name: string
  settingsJson: string
  depth: number
  inflight: number
  consumers: number
  deadLetters: number
  groups: Group[]
}
interface Message {
  id: string
  partition: number
  payload: Buffer
  userProperties: Array<{ key: string; value: string }>
  enqueuedAt: string
  expiresAt: string
}
interface DeadLetter {
  message: Message
  reason: string
  originalQueue: string
  originalGroup: string
  originalMessageId: string
  deliveryCount: number
  rejectReason: string
}

async function grpcServer(t: Parameters<typeof startTestServer>[0], token?: string) {
  const server = await startTestServer(t, {
    raw: { grpc: { port: 0 }, ...(token === undefined ? {} : { admin: { token } }) },
  })
  assert.ok(server.grpcPort !== null && server.grpcPort > 0)
  return { server, rpc: adminGrpcClient(t, server.grpcPort, token) }
}

void test('every rpc in one queue life: create, get, update, list, peek, dead letters, redrive, groups, purge, delete, cluster', async (t) => {
  const { server, rpc } = await grpcServer(t)
  const queue = uniqueQueue('grpc')
  const group = uniqueId('g')

  const created = await rpc<Queue>('CreateQueue', {
    name: queue,
    settingsJson: JSON.stringify({ partitions: 2, retry: { maxDeliveries: 3 } }),
  })
  assert.equal(created.name, queue)
  const settings = JSON.parse(created.settingsJson) as {
    partitions: number
    retry: { maxDeliveries: number }
  }
  assert.equal(settings.partitions, 2)
  assert.equal(settings.retry.maxDeliveries, 3)
  assert.equal(created.depth, 0)
  const exists = await rpcError(rpc('CreateQueue', { name: queue }))
  assert.deepEqual([exists.status, exists.code], [status.ALREADY_EXISTS, 'QUEUE_EXISTS'])

  assert.deepEqual(await rpc<Queue>('GetQueue', { name: queue }), created)
  const updated = await rpc<Queue>('UpdateQueue', {
    name: queue,
    settingsJson: JSON.stringify({ maxInflightPerPartition: 10 }),
  })
  assert.equal(
    (JSON.parse(updated.settingsJson) as { maxInflightPerPartition: number }).maxInflightPerPartition,
    10,
  )
  const listed = await rpc<{ queues: Queue[] }>('ListQueues')
  assert.ok(listed.queues.some((q) => q.name === queue))

  // Three messages over MQTT to a consumer group (all in flight at once: maxInflightPerPartition 10);
  // peek sees them while they are in flight.
  const publisher = await connectClient(t, server.mqttPort)
  const consumerId = uniqueId('worker')
  const consumer = await connectClient(t, server.mqttPort, { clientId: consumerId })
  const received = collect(consumer)
  await subscribeQueue(consumer, queue, group)
  const payloads = ['job-1', 'job-2', 'job-3']
  for (const payload of payloads) await publisher.publishAsync(`$queue/${queue}`, payload, { qos: 1 })
  await waitForCount(consumer, received, 3)
  const peeked = await rpc<{ messages: Message[] }>('PeekMessages', { name: queue })
  assert.deepEqual(peeked.messages.map((m) => m.payload.toString()).sort(), payloads)
  for (const message of peeked.messages) assert.match(message.id, /^\d+-\d+$/)
  assert.equal(
    (await rpc<{ messages: Message[] }>('PeekMessages', { name: queue, limit: 2 })).messages.length,
    2,
  )

  const groups = await rpc<{ groups: Group[] }>('ListGroups', { name: queue })
  const view = groups.groups.find((g) => g.name === group)
  assert.ok(view !== undefined && Math.abs(view.lastActiveAtMs - Date.now()) < 60_000, 'active now')
  assert.deepEqual(view, {
    name: group,
    consumers: [consumerId],
    backlog: 3,
    inflight: 3,
    implicit: false,
    lastActiveAtMs: view.lastActiveAtMs,
    expiresAtMs: 0,
  })

  // One rejected, two acknowledged.
  const [poison, ...good] = received
  assert.ok(poison)
  await settleOk(consumer, queue, '$reject', messageIdOf(poison), { reason: 'poison' })
  for (const delivery of good) await settleOk(consumer, queue, '$ack', messageIdOf(delivery))
  const letters = await rpc<{ deadLetters: DeadLetter[] }>('ListDeadLetters', { name: queue })
  assert.equal(letters.deadLetters.length, 1)
  const [letter] = letters.deadLetters
  assert.ok(letter)
  assert.equal(letter.message.payload.toString(), poison.payload.toString())
  assert.equal(letter.reason, 'rejected')
  assert.equal(letter.rejectReason, 'poison')
  assert.equal(letter.originalQueue, queue)
  assert.equal(letter.originalGroup, group)
  assert.equal(letter.originalMessageId, messageIdOf(poison))
  assert.equal(letter.deliveryCount, 1)
  assert.equal((await rpc<Queue>('GetQueue', { name: queue })).deadLetters, 1)

  // Redriven by id: the consumer gets it again.
  const again: Received[] = []
  consumer.on('message', (topic, payload, packet) => again.push({ topic, payload, packet }))
  assert.deepEqual(await rpc('RedriveDeadLetters', { name: queue, messageId: letter.message.id }), {
    redriven: 1,
  })
  await waitForCount(consumer, again, 1)
  const [redelivered] = again
  assert.ok(redelivered)
  assert.equal(redelivered.payload.toString(), poison.payload.toString())
  await settleOk(consumer, queue, '$ack', messageIdOf(redelivered))
  assert.deepEqual(await rpc('ListDeadLetters', { name: queue }), { deadLetters: [] })
  assert.deepEqual(await rpc('RedriveDeadLetters', { name: queue }), { redriven: 0 })

  // With the consumer gone: two more messages, purged; the group deleted; the queue deleted.
  await consumer.endAsync()
  for (const payload of ['left-1', 'left-2'])
    await publisher.publishAsync(`$queue/${queue}`, payload, { qos: 1 })
  const { depth } = await rpc<Queue>('GetQueue', { name: queue })
  assert.ok(depth >= 2, `depth ${depth}`)
  assert.deepEqual(await rpc('PurgeQueue', { name: queue }), { purged: depth })
  assert.deepEqual(await rpc('PeekMessages', { name: queue }), { messages: [] })
  assert.deepEqual(await rpc('DeleteGroup', { name: queue, group }), {})
  assert.ok(
    !(await rpc<{ groups: Group[] }>('ListGroups', { name: queue })).groups.some((g) => g.name === group),
  )
  assert.deepEqual(await rpc('DeleteQueue', { name: queue }), {})
  const gone = await rpcError(rpc('GetQueue', { name: queue }))
  assert.deepEqual([gone.status, gone.code], [status.NOT_FOUND, 'QUEUE_NOT_FOUND'])

  // A single node: proto3 fills the cluster-only fields with their defaults.
  assert.deepEqual(await rpc('GetCluster'), {
    mode: 'single',
    nodes: [{ id: 'test-node', self: true, alive: false, mqtt: '', grpc: '', partitions: 0 }],
    routing: '',
    healthy: false,
    queues: [],
    forwardBuffer: 0,
  })
})

void test('with admin.token: UNAUTHENTICATED without a token or with a wrong one, served with the right one', async (t) => {
  const { server, rpc } = await grpcServer(t, TOKEN)
  const anonymous = adminGrpcClient(t, server.grpcPort!)
  const wrong = adminGrpcClient(t, server.grpcPort!, `${TOKEN}x`)
  for (const call of [anonymous, wrong]) {
    for (const [method, request] of [
      ['ListQueues', {}],
      ['CreateQueue', { name: uniqueQueue('never') }],
      ['DeleteQueue', { name: 'no/such' }],
    ] as const) {
      const refused = await rpcError(call(method, request))
      assert.deepEqual([refused.status, refused.code], [status.UNAUTHENTICATED, 'UNAUTHORIZED'], method)
    }
  }
  assert.ok(Array.isArray((await rpc<{ queues: Queue[] }>('ListQueues')).queues))
})

void test('INVALID_ARGUMENT for bad input, NOT_FOUND for unknown queues, nothing changed', async (t) => {
  const { rpc } = await grpcServer(t)
  const queue = uniqueQueue('bad')
  await rpc('CreateQueue', { name: queue })
  const cases: Array<[string, object, number, string]> = [
    ['CreateQueue', { name: '' }, status.INVALID_ARGUMENT, 'INVALID_QUEUE_NAME'],
    ['CreateQueue', { name: 'a/+' }, status.INVALID_ARGUMENT, 'INVALID_QUEUE_NAME'],
    [
      'CreateQueue',
      { name: uniqueQueue('x'), settingsJson: '{not json' },
      status.INVALID_ARGUMENT,
      'INVALID_ARGUMENT',
    ],
    [
      'CreateQueue',
      { name: uniqueQueue('x'), settingsJson: '[1]' },
      status.INVALID_ARGUMENT,
      'INVALID_ARGUMENT',
    ],
    [
      'CreateQueue',
      { name: uniqueQueue('x'), settingsJson: '{"partitions":0}' },
      status.INVALID_ARGUMENT,
      'INVALID_SETTINGS',
    ],
    ['UpdateQueue', { name: queue }, status.INVALID_ARGUMENT, 'INVALID_ARGUMENT'],
    ['UpdateQueue', { name: queue, settingsJson: '{"nope":1}' }, status.INVALID_ARGUMENT, 'INVALID_SETTINGS'],
    ['PeekMessages', { name: queue, limit: 5000 }, status.INVALID_ARGUMENT, 'INVALID_ARGUMENT'],
    ['ListDeadLetters', { name: queue, limit: 5000 }, status.INVALID_ARGUMENT, 'INVALID_ARGUMENT'],
    ['RedriveDeadLetters', { name: queue, messageId: 'abc' }, status.INVALID_ARGUMENT, 'INVALID_ARGUMENT'],
    [
      'RedriveDeadLetters',
      { name: queue, messageId: '0-1', limit: 5 },
      status.INVALID_ARGUMENT,
      'INVALID_ARGUMENT',
    ],
    ['RedriveDeadLetters', { name: queue, ratePerSecond: -1 }, status.INVALID_ARGUMENT, 'INVALID_ARGUMENT'],
    ['DeleteGroup', { name: queue, group: '$pending' }, status.INVALID_ARGUMENT, 'INVALID_GROUP_NAME'],
    ['GetQueue', { name: 'no/such' }, status.NOT_FOUND, 'QUEUE_NOT_FOUND'],
    ['UpdateQueue', { name: 'no/such', settingsJson: '{}' }, status.NOT_FOUND, 'QUEUE_NOT_FOUND'],
    ['DeleteQueue', { name: 'no/such' }, status.NOT_FOUND, 'QUEUE_NOT_FOUND'],
    ['PurgeQueue', { name: 'no/such' }, status.NOT_FOUND, 'QUEUE_NOT_FOUND'],
    ['ListGroups', { name: 'no/such' }, status.NOT_FOUND, 'QUEUE_NOT_FOUND'],
    ['DeleteGroup', { name: queue, group: 'no-such' }, status.NOT_FOUND, 'GROUP_NOT_FOUND'],
    ['PeekMessages', { name: 'no/such' }, status.NOT_FOUND, 'QUEUE_NOT_FOUND'],
    ['ListDeadLetters', { name: 'no/such' }, status.NOT_FOUND, 'QUEUE_NOT_FOUND'],
    ['RedriveDeadLetters', { name: 'no/such' }, status.NOT_FOUND, 'QUEUE_NOT_FOUND'],
    ['RedriveDeadLetters', { name: queue, messageId: '0-99' }, status.NOT_FOUND, 'UNKNOWN_MESSAGE'],
  ]
  for (const [method, request, expectedStatus, expectedCode] of cases) {
    const err = await rpcError(rpc(method, request))
    assert.deepEqual(
      [err.status, err.code],
      [expectedStatus, expectedCode],
      `${method} ${JSON.stringify(request)}`,
    )
    assert.ok(err.details.length > 0)
  }
  const after = await rpc<{ queues: Queue[] }>('ListQueues')
  assert.deepEqual(
    after.queues.map((q) => q.name).filter((name) => name.startsWith('it/')),
    [queue],
  )
})

void test('no gRPC listener unless grpc.port is set', async (t) => {
  const server = await startTestServer(t)
  assert.equal(server.grpcPort, null)
})
