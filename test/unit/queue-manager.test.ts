import assert from 'node:assert/strict'
import { test } from 'node:test'

import { QueueError } from '../../src/queue/errors.js'
import { QueueManager } from '../../src/queue/manager.js'
import type { QueueSettingsOverrides } from '../../src/queue/settings.js'
import type { Delivery, SettleAction } from '../../src/queue/types.js'
import { MemoryQueueStore } from '../../src/storage/memory-store.js'
import { ManualClock } from '../helpers/manual-clock.js'
import { FakeConsumer, payload, text } from '../helpers/recording-consumer.js'
import { until } from '../helpers/wait.js'

async function setup(declared: Record<string, QueueSettingsOverrides> = {}, store = new MemoryQueueStore()) {
  const clock = new ManualClock()
  const manager = new QueueManager({ store, clock, declared })
  await manager.open()
  return { manager, clock, store }
}

async function publishAll(manager: QueueManager, queue: string, values: string[], key?: string) {
  for (const value of values) {
    await manager.publish({
      queue,
      payload: payload(value),
      properties: {},
      ...(key === undefined ? {} : { partitionKey: key }),
    })
  }
}

/** The group's backlog, counted from committed messages only. */
function backlogOf(manager: QueueManager, queue: string, group: string): number | undefined {
  return manager.admin.queueStats(queue).groups.find((stats) => stats.name === group)?.backlog
}

/** Lets queued microtasks, worker runs and MemoryQueueStore batches (setImmediate) play out. */
async function turns(count = 5): Promise<void> {
  for (let i = 0; i < count; i++) await new Promise((resolve) => setImmediate(resolve))
}

async function settle(
  manager: QueueManager,
  consumer: FakeConsumer,
  delivery: Delivery,
  action: SettleAction,
) {
  await manager.settle(consumer, { queue: delivery.message.queue, messageId: delivery.message.id, action })
}

test('competing consumers split the work; every message is delivered once while acked in time', async () => {
  const { manager } = await setup({ jobs: { ordering: 'none' } })
  const a = new FakeConsumer('w-1')
  const b = new FakeConsumer('w-2')
  await manager.subscribe(a, 'jobs', 'w')
  await manager.subscribe(b, 'jobs', 'w')
  const values = Array.from({ length: 50 }, (_, i) => `m${i}`)
  await publishAll(manager, 'jobs', values)
  await until(() => a.deliveries.length + b.deliveries.length === 50, 2000, '50 deliveries')
  assert.ok(a.deliveries.length > 0 && b.deliveries.length > 0, 'both consumers got work')
  const seen = [...a.deliveries, ...b.deliveries].map(text).sort()
  assert.deepEqual(seen, [...values].sort())
  for (const delivery of a.deliveries) await settle(manager, a, delivery, 'ack')
  for (const delivery of b.deliveries) await settle(manager, b, delivery, 'ack')
  assert.equal(manager.admin.depth('jobs'), 0, 'acked messages are deleted once every group settled them')
  await manager.close()
})

test('every group gets every message; a group without consumers keeps its backlog', async () => {
  const { manager } = await setup()
  const a = new FakeConsumer('a')
  const b = new FakeConsumer('b')
  await manager.subscribe(a, 'orders', 'billing')
  await manager.subscribe(b, 'orders', 'shipping')
  await publishAll(manager, 'orders', ['1', '2', '3'], 'same-key')
  await until(() => a.deliveries.length === 1 && b.deliveries.length === 1, 2000, 'first deliveries')
  manager.disconnect(b)
  for (let i = 0; i < 3; i++) {
    await until(() => a.deliveries.length === i + 1, 2000, `delivery ${i + 1}`)
    await settle(manager, a, a.deliveries[i]!, 'ack')
  }
  assert.deepEqual(a.deliveries.map(text), ['1', '2', '3'])
  assert.equal(manager.admin.depth('orders'), 3, 'shipping has not settled anything: nothing is deleted')
  const b2 = new FakeConsumer('b')
  await manager.subscribe(b2, 'orders', 'shipping')
  await until(() => b2.deliveries.length === 1, 2000, 'shipping redelivery')
  assert.equal(text(b2.deliveries[0]!), '1')
  assert.equal(b2.deliveries[0]!.deliveryCount, 2, 'returned on disconnect, delivered again')
  await manager.close()
})

test('per-key order holds with 3 consumers and retries', async () => {
  const { manager, clock } = await setup({ ordered: { retry: { initialDelayMs: 100 } } })
  const consumers = ['c-1', 'c-2', 'c-3'].map((id) => new FakeConsumer(id))
  for (const consumer of consumers) await manager.subscribe(consumer, 'ordered', 'c')
  const keys = ['k1', 'k2', 'k3', 'k4']
  for (let i = 0; i < 5; i++)
    for (const key of keys) await publishAll(manager, 'ordered', [`${key}:${i}`], key)
  const processed = new Map<string, number[]>()
  let nacked = false
  for (let round = 0; round < 200; round++) {
    const pending = consumers.flatMap((consumer) =>
      consumer.deliveries.splice(0).map((delivery) => ({ consumer, delivery })),
    )
    if (pending.length === 0) {
      if ([...processed.values()].reduce((n, list) => n + list.length, 0) === 20) break
      clock.advance(100)
      await until(() => consumers.some((consumer) => consumer.deliveries.length > 0), 2000, 'more deliveries')
      continue
    }
    for (const { consumer, delivery } of pending) {
      const [key, index] = text(delivery).split(':') as [string, string]
      if (!nacked && key === 'k2' && index === '1') {
        nacked = true
        await settle(manager, consumer, delivery, 'nack')
        continue
      }
      processed.set(key, [...(processed.get(key) ?? []), Number(index)])
      await settle(manager, consumer, delivery, 'ack')
    }
    await new Promise((resolve) => setImmediate(resolve))
  }
  assert.ok(nacked)
  for (const key of keys) assert.deepEqual(processed.get(key), [0, 1, 2, 3, 4], `order of ${key}`)
  await manager.close()
})

test('nack retries after exponential backoff, or after delay-ms', async () => {
  const { manager, clock } = await setup({
    retry: { retry: { initialDelayMs: 1000, factor: 2, maxDelayMs: 10_000 } },
  })
  const consumer = new FakeConsumer('r')
  await manager.subscribe(consumer, 'retry', 'g')
  await publishAll(manager, 'retry', ['x'])
  await until(() => consumer.deliveries.length === 1, 2000, 'first delivery')
  await settle(manager, consumer, consumer.deliveries[0]!, 'nack')
  clock.advance(999)
  await new Promise((resolve) => setImmediate(resolve))
  assert.equal(consumer.deliveries.length, 1, 'not before the backoff')
  clock.advance(1)
  await until(() => consumer.deliveries.length === 2, 2000, 'redelivery after 1 s')
  assert.equal(consumer.deliveries[1]!.deliveryCount, 2)
  await settle(manager, consumer, consumer.deliveries[1]!, 'nack')
  clock.advance(1999)
  await new Promise((resolve) => setImmediate(resolve))
  assert.equal(consumer.deliveries.length, 2, 'second backoff is 2 s')
  clock.advance(1)
  await until(() => consumer.deliveries.length === 3, 2000, 'redelivery after 2 s')
  await manager.settle(consumer, {
    queue: 'retry',
    messageId: consumer.deliveries[2]!.message.id,
    action: 'nack',
    delayMs: 50,
  })
  clock.advance(50)
  await until(() => consumer.deliveries.length === 4, 2000, 'redelivery after delay-ms')
  await manager.close()
})

test('delivery timeout redelivers; $extend restarts the timeout', async () => {
  const { manager, clock } = await setup({
    slow: { deliveryTimeoutMs: 1000, retry: { initialDelayMs: 10 } },
  })
  const consumer = new FakeConsumer('s')
  await manager.subscribe(consumer, 'slow', 'g')
  await publishAll(manager, 'slow', ['x'])
  await until(() => consumer.deliveries.length === 1, 2000, 'delivery')
  clock.advance(900)
  await settle(manager, consumer, consumer.deliveries[0]!, 'extend')
  clock.advance(900)
  await new Promise((resolve) => setImmediate(resolve))
  assert.equal(consumer.deliveries.length, 1, 'extended: not yet timed out')
  clock.advance(100)
  clock.advance(10)
  await until(() => consumer.deliveries.length === 2, 2000, 'redelivery after timeout')
  assert.equal(consumer.deliveries[1]!.deliveryCount, 2)
  await manager.close()
})

test('reject and exhausted retries land in dlq/<name> with the right properties', async () => {
  const { manager, clock } = await setup({
    work: { retry: { initialDelayMs: 10, maxDeliveries: 2 }, partitions: 1 },
  })
  const consumer = new FakeConsumer('w')
  const dlq = new FakeConsumer('d')
  await manager.subscribe(consumer, 'work', 'g')
  await manager.subscribe(dlq, 'dlq/work', 'ops')
  await manager.publish({
    queue: 'work',
    payload: payload('bad'),
    properties: { userProperties: [['k', 'v']], contentType: 'text/plain' },
  })
  await publishAll(manager, 'work', ['flaky'])
  await until(() => consumer.deliveries.length === 1, 2000, 'delivery')
  await manager.settle(consumer, {
    queue: 'work',
    messageId: consumer.deliveries[0]!.message.id,
    action: 'reject',
    reason: 'cannot parse',
  })
  await until(() => dlq.deliveries.length === 1, 2000, 'dead letter')
  const rejected = dlq.deliveries[0]!
  assert.equal(text(rejected), 'bad')
  assert.equal(rejected.message.properties.contentType, 'text/plain')
  assert.equal(dlq.userProperty(rejected, 'k'), 'v')
  assert.equal(dlq.userProperty(rejected, 'dlq-reason'), 'rejected')
  assert.equal(dlq.userProperty(rejected, 'dlq-original-queue'), 'work')
  assert.equal(dlq.userProperty(rejected, 'dlq-delivery-count'), '1')
  assert.equal(dlq.userProperty(rejected, 'reason'), 'cannot parse')

  await until(() => consumer.deliveries.length === 2, 2000, 'second message')
  await settle(manager, consumer, consumer.deliveries[1]!, 'nack')
  clock.advance(10)
  await until(() => consumer.deliveries.length === 3, 2000, 'retry')
  await settle(manager, consumer, consumer.deliveries[2]!, 'nack')
  await until(() => dlq.deliveries.length === 2, 2000, 'max-deliveries dead letter')
  assert.equal(dlq.userProperty(dlq.deliveries[1]!, 'dlq-reason'), 'max-deliveries')
  assert.equal(dlq.userProperty(dlq.deliveries[1]!, 'dlq-delivery-count'), '2')
  await settle(manager, dlq, rejected, 'ack')
  await manager.close()
})

test('depth and size limits refuse the publish with a QueueError', async () => {
  // maxMessageBytes counts the queue name too: 'small' (5 bytes) + a payload of up to 4 bytes.
  const { manager } = await setup({ small: { maxDepth: 2, maxMessageBytes: 9 } })
  await publishAll(manager, 'small', ['a', 'b'])
  await assert.rejects(publishAll(manager, 'small', ['c']), (error: unknown) => {
    assert.ok(error instanceof QueueError)
    assert.equal(error.code, 'QUEUE_FULL')
    return true
  })
  await assert.rejects(publishAll(manager, 'small', ['12345']), { code: 'MESSAGE_TOO_LARGE' })
  await assert.rejects(publishAll(manager, 'bad/+', ['x']), { code: 'INVALID_QUEUE_NAME' })
  assert.equal(manager.admin.depth('small'), 2)
  await manager.close()
})

test('maxMessageBytes counts the queue name and every stored property, not just the payload', async () => {
  const { manager } = await setup({ limited: { maxMessageBytes: 1000 } })
  const payload = Buffer.from('tiny')
  const fat = Array.from({ length: 10 }, (_, i): [string, string] => [`k${i}`, 'v'.repeat(60_000)])
  await assert.rejects(manager.publish({ queue: 'limited', payload, properties: { userProperties: fat } }), {
    code: 'MESSAGE_TOO_LARGE',
    message: /exceeds maxMessageBytes 1000/,
  })
  for (const properties of [
    { contentType: 'c'.repeat(1000) },
    { responseTopic: 'r'.repeat(1000) },
    { correlationData: Buffer.alloc(1000) },
    { userProperties: [['k'.repeat(1000), ''] as [string, string]] },
  ]) {
    await assert.rejects(manager.publish({ queue: 'limited', payload, properties }), {
      code: 'MESSAGE_TOO_LARGE',
    })
  }
  // The default limit (1 MiB) holds against 2 MB of user properties on a 4-byte payload.
  const huge = Array.from({ length: 40 }, (_, i): [string, string] => [`k${i}`, 'v'.repeat(50_000)])
  await assert.rejects(manager.publish({ queue: 'other', payload, properties: { userProperties: huge } }), {
    code: 'MESSAGE_TOO_LARGE',
  })
  // What fits: 1000 - 'limited' (7) - 'tiny' (4) = 989 bytes of property keys and values.
  await manager.publish({
    queue: 'limited',
    payload,
    properties: { userProperties: [['k', 'v'.repeat(988)]] },
  })
  await assert.rejects(
    manager.publish({ queue: 'limited', payload, properties: { userProperties: [['k', 'v'.repeat(989)]] } }),
    { code: 'MESSAGE_TOO_LARGE' },
  )
  assert.equal(manager.admin.depth('limited'), 1)
  assert.equal(manager.admin.depth('other') ?? 0, 0)
  await manager.close()
})

test('settling an unknown or already settled message-id fails and changes nothing', async () => {
  const { manager } = await setup()
  const consumer = new FakeConsumer('u')
  await manager.subscribe(consumer, 'q', 'g')
  await publishAll(manager, 'q', ['x'])
  await until(() => consumer.deliveries.length === 1, 2000, 'delivery')
  await assert.rejects(manager.settle(consumer, { queue: 'q', messageId: 'nope', action: 'ack' }), {
    code: 'UNKNOWN_MESSAGE',
  })
  await assert.rejects(manager.settle(consumer, { queue: 'q', messageId: '0-999', action: 'ack' }), {
    code: 'UNKNOWN_MESSAGE',
  })
  await settle(manager, consumer, consumer.deliveries[0]!, 'ack')
  await assert.rejects(settle(manager, consumer, consumer.deliveries[0]!, 'ack'), /already settled/)
  await manager.close()
})

test('expired messages are not delivered: they go to the dead-letter queue as expired', async () => {
  const { manager, clock } = await setup()
  await manager.publish({ queue: 'ttl', payload: payload('old'), properties: {}, messageExpirySeconds: 1 })
  clock.advance(1500)
  const consumer = new FakeConsumer('t')
  const dlq = new FakeConsumer('d')
  await manager.subscribe(dlq, 'dlq/ttl', 'ops')
  await manager.subscribe(consumer, 'ttl', 'g')
  await until(() => dlq.deliveries.length === 1, 2000, 'expired dead letter')
  assert.equal(consumer.deliveries.length, 0)
  assert.equal(dlq.userProperty(dlq.deliveries[0]!, 'dlq-reason'), 'expired')
  await manager.close()
})

test('Receive Maximum bounds unsettled deliveries to one client', async () => {
  const { manager } = await setup({ wide: { ordering: 'none' } })
  const consumer = new FakeConsumer('narrow', 3)
  await manager.subscribe(consumer, 'wide', 'g')
  await publishAll(manager, 'wide', ['1', '2', '3', '4', '5'])
  await until(() => consumer.deliveries.length === 3, 2000, '3 deliveries')
  await new Promise((resolve) => setImmediate(resolve))
  assert.equal(consumer.deliveries.length, 3)
  await settle(manager, consumer, consumer.deliveries[0]!, 'ack')
  await until(() => consumer.deliveries.length === 4, 2000, 'a 4th after an ack')
  await manager.close()
})

test('after a restart unsettled deliveries come back with a higher count and acked ones never do', async () => {
  const store = new MemoryQueueStore()
  const first = await setup({}, store)
  const consumer = new FakeConsumer('r')
  await first.manager.subscribe(consumer, 'restart', 'g', { persistentSession: true })
  await publishAll(first.manager, 'restart', ['a', 'b'], 'k')
  await until(() => consumer.deliveries.length === 1, 2000, 'first delivery')
  await settle(first.manager, consumer, consumer.deliveries[0]!, 'ack')
  await until(() => consumer.deliveries.length === 2, 2000, 'second delivery')
  await first.manager.close()

  const second = await setup({}, store)
  const again = new FakeConsumer('r')
  assert.deepEqual(await second.manager.resumeSession(again), [{ queue: 'restart', group: 'g' }])
  await until(() => again.deliveries.length === 1, 2000, 'redelivery after restart')
  assert.equal(text(again.deliveries[0]!), 'b')
  assert.equal(again.deliveries[0]!.deliveryCount, 2)
  await settle(second.manager, again, again.deliveries[0]!, 'ack')
  assert.equal(second.manager.admin.depth('restart'), 0)
  await second.manager.endSession('r')
  await second.manager.close()

  const third = await setup({}, store)
  assert.deepEqual(await third.manager.resumeSession(new FakeConsumer('r')), [])
  await third.manager.close()
})

test('unordered: a consumer at maxInflightPerConsumer is served again from every partition', async () => {
  const { manager } = await setup({ spread: { ordering: 'none', maxInflightPerConsumer: 1 } })
  const consumer = new FakeConsumer('one')
  await manager.subscribe(consumer, 'spread', 'g')
  await publishAll(
    manager,
    'spread',
    Array.from({ length: 20 }, (_, i) => `m${i}`),
  )
  for (let acked = 0; acked < 20; acked++) {
    await until(() => consumer.deliveries.length === acked + 1, 2000, `delivery ${acked + 1}`)
    await settle(manager, consumer, consumer.deliveries[acked]!, 'ack')
  }
  assert.equal(manager.admin.depth('spread'), 0)
  await manager.close()
})

test('admin: stats, peek, purge, delete group and delete queue', async () => {
  const { manager } = await setup({ admin: { partitions: 2 } })
  const consumer = new FakeConsumer('adm')
  await manager.subscribe(consumer, 'admin', 'g')
  await publishAll(manager, 'admin', ['1', '2', '3', '4'])
  await until(() => consumer.deliveries.length === 2, 2000, 'one per partition')
  await settle(manager, consumer, consumer.deliveries[0]!, 'ack')
  const stats = manager.admin.queueStats('admin')
  assert.equal(stats.depth, 3)
  assert.equal(stats.consumers, 1)
  assert.deepEqual(
    stats.groups.map(({ name, backlog, consumers }) => ({ name, backlog, consumers })),
    [{ name: 'g', backlog: 3, consumers: ['adm'] }],
  )
  assert.deepEqual(
    (await manager.admin.peek('admin', 10)).map((m) => text({ message: m } as Delivery)).sort(),
    ['2', '3', '4'],
  )
  await assert.rejects(manager.admin.deleteQueue('admin'), { code: 'QUEUE_IN_USE' })
  assert.equal(await manager.admin.purgeQueue('admin'), 3)
  assert.equal(manager.admin.depth('admin'), 0)
  await assert.rejects(settle(manager, consumer, consumer.deliveries[1]!, 'ack'), /already settled/)
  manager.disconnect(consumer)
  await publishAll(manager, 'admin', ['5'])
  await manager.admin.deleteGroup('admin', 'g')
  assert.equal(manager.admin.depth('admin'), 1, 'without groups, messages are kept for the next group')
  await manager.admin.deleteQueue('admin')
  assert.throws(() => manager.admin.queueStats('admin'), { code: 'QUEUE_NOT_FOUND' })
  await manager.close()
})

test('admin: created and updated settings are durable and win over config', async () => {
  const store = new MemoryQueueStore()
  const first = await setup({ made: { maxDepth: 5 } }, store)
  await first.manager.admin.createQueue('made', { ordering: 'none', partitions: 3 })
  await assert.rejects(first.manager.admin.createQueue('made', {}), { code: 'QUEUE_EXISTS' })
  await first.manager.admin.updateQueue('made', { retry: { maxDeliveries: 3 } })
  await assert.rejects(first.manager.admin.updateQueue('made', { partitions: 2 }), {
    code: 'INVALID_SETTINGS',
  })
  await assert.rejects(first.manager.admin.updateQueue('made', { maxDepth: 0 }), { code: 'INVALID_SETTINGS' })
  await first.manager.close()
  const second = await setup({ made: { maxDepth: 5 } }, store)
  const settings = second.manager.admin.queueStats('made').settings
  assert.equal(settings.ordering, 'none')
  assert.equal(settings.partitions, 3)
  assert.equal(settings.retry.maxDeliveries, 3)
  assert.equal(settings.maxDepth, 5, 'config values not overridden stay')
  await second.manager.close()
})

test('admin: dead letters wait for an operator; redrive puts them back, one or all', async () => {
  const store = new MemoryQueueStore()
  const first = await setup({}, store)
  const consumer = new FakeConsumer('dl')
  await first.manager.subscribe(consumer, 'poison', 'g')
  await publishAll(first.manager, 'poison', ['a', 'b', 'c'], 'same')
  for (let i = 0; i < 3; i++) {
    await until(() => consumer.deliveries.length === i + 1, 2000, `delivery ${i + 1}`)
    await settle(first.manager, consumer, consumer.deliveries[i]!, 'reject')
  }
  await until(() => first.manager.admin.depth('dlq/poison') === 3, 2000, 'three dead letters')
  await first.manager.close()

  const { manager, clock } = await setup({}, store)
  const pending = await manager.admin.deadLetters('poison', 10)
  assert.deepEqual(
    pending.map((m) => text({ message: m } as Delivery)),
    ['a', 'b', 'c'],
  )
  assert.equal(await manager.admin.redrive('poison', { messageId: pending[1]!.id }), 1)
  await assert.rejects(manager.admin.redrive('poison', { messageId: pending[1]!.id }), {
    code: 'UNKNOWN_MESSAGE',
  })
  assert.deepEqual(
    (await manager.admin.deadLetters('poison', 10)).map((m) => text({ message: m } as Delivery)),
    ['a', 'c'],
  )
  const paced = manager.admin.redrive('poison', { ratePerSecond: 1000 })
  // Paced in the manager's clock: the second one goes back 1 ms after the first.
  await until(() => backlogOf(manager, 'poison', 'g') === 2, 2000, 'first of two redriven')
  clock.advance(1)
  assert.equal(await paced, 2)
  assert.deepEqual(await manager.admin.deadLetters('poison', 10), [])
  assert.equal(manager.admin.depth('dlq/poison'), 0, 'handled dead letters are deleted')
  const again = new FakeConsumer('dl2')
  await manager.subscribe(again, 'poison', 'g')
  await until(() => again.deliveries.length === 1, 2000, 'redriven delivery')
  assert.equal(text(again.deliveries[0]!), 'b')
  assert.equal(again.userProperty(again.deliveries[0]!, 'dlq-reason'), undefined, 'dlq-* properties removed')
  await assert.rejects(manager.subscribe(again, 'poison', '$pending'), { code: 'INVALID_GROUP_NAME' })
  await manager.close()
})

test('admin: a redrive is paced at ratePerSecond in the manager clock, not in wall-clock time', async () => {
  const { manager, clock } = await setup()
  const consumer = new FakeConsumer('pace')
  await manager.subscribe(consumer, 'paced', 'g')
  await publishAll(manager, 'paced', ['a', 'b', 'c'], 'same')
  for (let i = 0; i < 3; i++) {
    await until(() => consumer.deliveries.length === i + 1, 2000, `delivery ${i + 1}`)
    await settle(manager, consumer, consumer.deliveries[i]!, 'reject')
  }
  await until(() => manager.admin.depth('dlq/paced') === 3, 2000, 'three dead letters')
  manager.disconnect(consumer)
  let redriven: number | undefined
  const paced = manager.admin.redrive('paced', { ratePerSecond: 0.01 }).then((count) => (redriven = count))
  await until(() => backlogOf(manager, 'paced', 'g') === 1, 2000, 'the first goes back at once')
  // 100 s apart: in wall-clock time the test would time out; in clock time it is one advance.
  clock.advance(99_999)
  await turns()
  assert.equal(backlogOf(manager, 'paced', 'g'), 1, 'the second waits 100 s of clock time')
  clock.advance(1)
  await until(() => backlogOf(manager, 'paced', 'g') === 2, 2000, 'the second after 100 s')
  assert.equal(redriven, undefined)
  clock.advance(100_000)
  await paced
  assert.equal(redriven, 3)
  assert.equal(backlogOf(manager, 'paced', 'g'), 3)
  assert.deepEqual(await manager.admin.deadLetters('paced', 10), [])
  await manager.close()
})

test('a settle without group-id finds the one group the client has in the queue; two groups are ambiguous', async () => {
  const { manager } = await setup({ jobs: { ordering: 'none' }, other: { ordering: 'none' } })
  const client = new FakeConsumer('c')
  const stranger = new FakeConsumer('s')
  await manager.subscribe(client, 'other', 'x')
  await manager.subscribe(client, 'jobs', 'a')
  await publishAll(manager, 'jobs', ['m1', 'm2'])
  await until(() => client.deliveries.length === 2, 2000, 'two deliveries')
  const [first, second] = client.deliveries as [Delivery, Delivery]
  await assert.rejects(settle(manager, stranger, first, 'ack'), {
    code: 'UNKNOWN_MESSAGE',
    message: 'cannot ack: client is not a consumer of queue jobs; set the group-id user property',
  })
  await settle(manager, client, first, 'ack')
  await manager.subscribe(client, 'jobs', 'b')
  await assert.rejects(settle(manager, client, second, 'ack'), {
    code: 'AMBIGUOUS_GROUP',
    message: 'client consumes queue jobs in 2 groups; set the group-id user property',
  })
  await manager.settle(client, { queue: 'jobs', messageId: second.message.id, action: 'ack', group: 'a' })
  await manager.close()
})

test('a partition count changed in config waits until the queue is empty: keys keep their partitions, per-key order holds', async () => {
  const store = new MemoryQueueStore()
  const first = await setup({ q: { partitions: 2 } }, store)
  const keys = ['a', 'b', 'c', 'd', 'e']
  const placed = new Map<string, number>()
  for (let i = 0; i < 10; i++) {
    const key = keys[i % keys.length]!
    const message = await first.manager.publish({
      queue: 'q',
      payload: payload(`${key}-${i}`),
      properties: {},
      partitionKey: key,
    })
    placed.set(key, message.partition)
  }
  await first.manager.close()

  const second = await setup({ q: { partitions: 8 } }, store)
  assert.equal(second.manager.admin.queueStats('q').settings.partitions, 2, 'kept while messages are stored')
  for (let i = 10; i < 20; i++) {
    const key = keys[i % keys.length]!
    const message = await second.manager.publish({
      queue: 'q',
      payload: payload(`${key}-${i}`),
      properties: {},
      partitionKey: key,
    })
    assert.equal(message.partition, placed.get(key), `key ${key} stays in its partition`)
  }
  // An admin change of something else goes through; one of partitions is refused while not empty.
  await second.manager.admin.createQueue('other', {})
  await second.manager.admin.updateQueue('q', { maxDepth: 500 })
  assert.equal(second.manager.admin.queueStats('q').settings.partitions, 2)
  await assert.rejects(second.manager.admin.updateQueue('q', { partitions: 16 }), { code: 'QUEUE_NOT_EMPTY' })

  const consumer = new FakeConsumer('c')
  await second.manager.subscribe(consumer, 'q', 'g')
  const acked: string[] = []
  while (acked.length < 20) {
    await until(() => consumer.deliveries.length > 0, 2000, `delivery ${acked.length + 1}`)
    for (const delivery of consumer.deliveries.splice(0)) {
      acked.push(text(delivery))
      await settle(second.manager, consumer, delivery, 'ack')
    }
  }
  for (const key of keys) {
    const order = acked.filter((p) => p.startsWith(`${key}-`)).map((p) => Number(p.split('-')[1]))
    assert.deepEqual(
      order,
      [...order].sort((x, y) => x - y),
      `key ${key} acked in publish order`,
    )
  }
  assert.equal(second.manager.admin.depth('q'), 0)
  const next = await second.manager.publish({
    queue: 'q',
    payload: payload('x'),
    properties: {},
    partitionKey: 'a',
  })
  assert.equal(second.manager.admin.queueStats('q').settings.partitions, 8, 'applied once empty')
  assert.ok(next.partition < 8)
  await second.manager.close()

  // The new count is the stored one now: a restart keeps it.
  const third = await setup({ q: { partitions: 8 } }, store)
  assert.equal(third.manager.admin.queueStats('q').settings.partitions, 8)
  await third.manager.close()
})

test('an $ack or $reject of a delivery that timed out and waits for its retry lets the partition go on', async () => {
  for (const action of ['ack', 'reject'] as const) {
    const { manager, clock } = await setup({
      q: { partitions: 1, deliveryTimeoutMs: 300, retry: { initialDelayMs: 2000 } },
    })
    const consumer = new FakeConsumer(`late-${action}`)
    await manager.subscribe(consumer, 'q', 'g')
    await publishAll(manager, 'q', ['a', 'b'])
    await until(() => consumer.deliveries.length === 1, 2000, 'a delivered')
    const first = consumer.deliveries[0]!
    clock.advance(500) // timed out: a waits 2 s for its retry, b waits behind it (ordered)
    await settle(manager, consumer, first, action)
    await until(() => consumer.deliveries.length === 2, 2000, `b delivered after the late $${action}`)
    assert.equal(text(consumer.deliveries[1]!), 'b')
    clock.advance(5000)
    assert.equal(consumer.deliveries.length, 2, 'a is not delivered again')
    await manager.close()
  }
})

test('a delivery in flight at a crash that used up maxDeliveries is dead-lettered at restart, not delivered again', async () => {
  const store = new MemoryQueueStore()
  const first = await setup({ q: { retry: { maxDeliveries: 1 } } }, store)
  const consumer = new FakeConsumer('c')
  await first.manager.subscribe(consumer, 'q', 'g')
  await publishAll(first.manager, 'q', ['once'])
  await until(() => consumer.deliveries.length === 1, 2000, 'first delivery')
  await first.manager.close() // the process dies with the delivery in flight

  const second = await setup({ q: { retry: { maxDeliveries: 1 } } }, store)
  const again = new FakeConsumer('c')
  await second.manager.subscribe(again, 'q', 'g')
  const dlq = new FakeConsumer('d')
  await second.manager.subscribe(dlq, 'dlq/q', 'ops')
  await until(() => dlq.deliveries.length === 1, 2000, 'dead letter')
  assert.equal(dlq.userProperty(dlq.deliveries[0]!, 'dlq-reason'), 'max-deliveries')
  assert.equal(dlq.userProperty(dlq.deliveries[0]!, 'dlq-delivery-count'), '1')
  assert.equal(again.deliveries.length, 0, 'never a delivery-count 2 with maxDeliveries 1')
  await until(() => second.manager.admin.depth('q') === 0, 2000, 'settled for the group')
  await second.manager.close()
})
