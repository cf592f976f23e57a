/**
 * Partition ownership in the queue core (for cluster nodes): a manager with `servesAllPartitions:
 * false` serves a partition only between acquirePartition and releasePartition, and hands a partition
 * to another manager with partitionSnapshot + readPartition -> importPartition -> acquirePartition,
 * then dropPartition on the old owner.
 */
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test, type TestContext } from 'node:test'
import { QueueManager } from '../../src/queue/manager.js'
import type { PartitionSnapshot } from '../../src/queue/partition-ownership.js'
import type { QueueSettingsOverrides } from '../../src/queue/settings.js'
import type { QueueStore } from '../../src/queue/store.js'
import type { Delivery, QueueMessage } from '../../src/queue/types.js'
import { LevelQueueStore } from '../../src/storage/level-store.js'
import { MemoryQueueStore } from '../../src/storage/memory-store.js'
import { ManualClock } from '../helpers/manual-clock.js'
import { FakeConsumer, payload, text } from '../helpers/recording-consumer.js'
import { until } from '../helpers/wait.js'

const seqsOf = (deliveries: Delivery[]) => deliveries.map((delivery) => delivery.message.seq)
const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i)

/** A manager that serves no partition until it acquires one (a cluster node). */
async function clusterManager(
  t: TestContext,
  declared: Record<string, QueueSettingsOverrides>,
  store: QueueStore = new MemoryQueueStore(),
  clock = new ManualClock(),
) {
  const manager = new QueueManager({ store, clock, declared, servesAllPartitions: false })
  t.after(() => manager.close())
  await manager.open()
  return { manager, clock, store }
}

async function tempDir(t: TestContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'spool-ownership-'))
  t.after(() => rm(dir, { recursive: true, force: true }))
  return dir
}

/** Lets queued microtasks, worker runs and MemoryQueueStore batches (setImmediate) play out. */
async function turns(count = 5): Promise<void> {
  for (let i = 0; i < count; i++) await new Promise((resolve) => setImmediate(resolve))
}

/**
 * That nothing MORE happens can only be seen over time: with LevelDB, writes complete on the thread
 * pool, so a few event-loop turns are not enough. A short, bounded quiet window.
 */
async function quietWindow(ms = 100): Promise<void> {
  await new Promise((resolve) => setTimeout(resolve, ms))
}

async function ack(manager: QueueManager, consumer: FakeConsumer, delivery: Delivery): Promise<void> {
  await manager.settle(consumer, {
    queue: delivery.message.queue,
    messageId: delivery.message.id,
    action: 'ack',
    group: delivery.group,
  })
}

/** The stored messages of a partition in batches, as the old owner streams them to the new one. */
async function* streamPartition(
  manager: QueueManager,
  snapshot: PartitionSnapshot,
  batchSize: number,
): AsyncGenerator<QueueMessage[]> {
  const { queue, partition, lastSeq, count } = snapshot.meta
  let from = lastSeq - count + 1
  for (let round = 0; round <= count; round++) {
    const batch = await manager.readPartition(queue, partition, from, batchSize)
    if (batch.length === 0) return
    yield batch
    from = batch.at(-1)!.seq + 1
  }
  throw new Error('readPartition did not come to an end')
}

test('a non-serving manager accepts and delivers nothing until it acquires the partition', async (t) => {
  const { manager } = await clusterManager(t, { owned: { partitions: 2 } })
  assert.equal(manager.serves('owned', 0), false)
  const consumer = new FakeConsumer('c')
  await manager.subscribe(consumer, 'owned', 'g')
  assert.equal(manager.serves('owned', 0), false)
  await assert.rejects(
    manager.publish({ queue: 'owned', payload: payload('x'), properties: {}, partition: 0 }),
    {
      code: 'PARTITION_NOT_SERVED',
    },
  )
  await assert.rejects(
    manager.publish({ queue: 'owned', payload: payload('x'), properties: {}, partitionKey: 'k' }),
    { code: 'PARTITION_NOT_SERVED' },
  )
  await assert.rejects(
    manager.publish({ queue: 'owned', payload: payload('x'), properties: {}, partition: 7 }),
    {
      code: 'PARTITION_NOT_SERVED',
    },
  )
  assert.equal(manager.admin.depth('owned'), 0)
  const keyed = manager.partitionFor('owned', 'k')
  assert.ok(keyed === 0 || keyed === 1)
  assert.equal(manager.partitionFor('owned', 'k'), keyed, 'the same key always maps to the same partition')
  assert.throws(() => manager.partitionFor('bad/+', 'k'), { code: 'INVALID_QUEUE_NAME' })

  await manager.acquirePartition('owned', 0)
  await manager.acquirePartition('owned', 0) // already served: nothing changes
  assert.equal(manager.serves('owned', 0), true)
  assert.equal(manager.serves('owned', 1), false)
  const message = await manager.publish({
    queue: 'owned',
    payload: payload('a'),
    properties: {},
    partition: 0,
  })
  assert.equal(message.id, '0-1')
  await until(() => consumer.deliveries.length === 1, 2000, 'delivery after acquire')
  assert.equal(text(consumer.deliveries[0]!), 'a')
  await assert.rejects(
    manager.publish({ queue: 'owned', payload: payload('b'), properties: {}, partition: 1 }),
    {
      code: 'PARTITION_NOT_SERVED',
    },
  )
  assert.equal(manager.admin.depth('owned'), 1)
})

test('release returns in-flight deliveries and stops deliveries; acquire redelivers with a higher count', async (t) => {
  const { manager, clock } = await clusterManager(t, {
    moving: { partitions: 1, deliveryTimeoutMs: 1000, retry: { initialDelayMs: 100 } },
  })
  await manager.acquirePartition('moving', 0)
  // Receive Maximum 1: if release did not free the consumer's capacity, nothing could come again.
  const consumer = new FakeConsumer('c', 1)
  await manager.subscribe(consumer, 'moving', 'g')
  for (const value of ['m1', 'm2']) {
    await manager.publish({ queue: 'moving', payload: payload(value), properties: {}, partition: 0 })
  }
  await until(() => consumer.deliveries.length === 1, 2000, 'first delivery')
  const first = consumer.deliveries[0]!
  assert.equal(first.deliveryCount, 1)

  manager.releasePartition('moving', 0)
  manager.releasePartition('moving', 0) // already released: nothing changes
  assert.equal(manager.serves('moving', 0), false)
  await assert.rejects(ack(manager, consumer, first), (error: unknown) => {
    assert.equal((error as { code?: string }).code, 'PARTITION_NOT_SERVED')
    assert.match((error as Error).message, /not served by this node/)
    return true
  })
  await assert.rejects(
    manager.publish({ queue: 'moving', payload: payload('m3'), properties: {}, partition: 0 }),
    { code: 'PARTITION_NOT_SERVED' },
  )
  clock.advance(5000) // the returned delivery's deadline must not fire and retry it
  await turns()
  assert.equal(consumer.deliveries.length, 1, 'nothing delivered while released')

  await manager.acquirePartition('moving', 0)
  await until(() => consumer.deliveries.length === 2, 2000, 'redelivery after acquire')
  const again = consumer.deliveries[1]!
  assert.equal(again.message.id, first.message.id)
  assert.equal(text(again), 'm1')
  assert.equal(again.deliveryCount, 2)
  // The first delivery's settle stays refused for good: that delivery was returned.
  await ack(manager, consumer, again)
  await until(() => consumer.deliveries.length === 3, 2000, 'second message')
  assert.equal(text(consumer.deliveries[2]!), 'm2')
  assert.equal(consumer.deliveries[2]!.deliveryCount, 1)

  // A nacked message waiting for its backoff: dropped on release, due at once on acquire, once.
  await manager.settle(consumer, {
    queue: 'moving',
    messageId: consumer.deliveries[2]!.message.id,
    action: 'nack',
    delayMs: 10_000,
  })
  manager.releasePartition('moving', 0)
  await manager.acquirePartition('moving', 0)
  await until(() => consumer.deliveries.length === 4, 2000, 'nacked message due again on acquire')
  assert.equal(text(consumer.deliveries[3]!), 'm2')
  assert.equal(consumer.deliveries[3]!.deliveryCount, 2)
  await ack(manager, consumer, consumer.deliveries[3]!)
  clock.advance(20_000) // the dropped retry timer must not deliver it a third time
  await turns()
  assert.equal(consumer.deliveries.length, 4)
  assert.equal(manager.admin.depth('moving'), 0)
})

test('a partition moves between two managers: unsettled messages per group, in order, seq continues', async (t) => {
  const declared = {
    handover: { partitions: 2, ordering: 'partition', maxInflightPerPartition: 30 },
  } as const
  const storeA = new LevelQueueStore(join(await tempDir(t), 'queues'))
  const storeB = new LevelQueueStore(join(await tempDir(t), 'queues'))
  const { manager: a } = await clusterManager(t, declared, storeA)
  const { manager: b } = await clusterManager(t, declared, storeB)

  await a.acquirePartition('handover', 0)
  const billingA = new FakeConsumer('billing-a')
  const shippingA = new FakeConsumer('shipping-a')
  await a.subscribe(billingA, 'handover', 'billing')
  await a.subscribe(shippingA, 'handover', 'shipping')
  await Promise.all(
    range(1, 50).map((n) =>
      a.publish({ queue: 'handover', payload: payload(`m${n}`), properties: {}, partition: 0 }),
    ),
  )
  await until(
    () => billingA.deliveries.length === 30 && shippingA.deliveries.length === 30,
    5000,
    'the first 30 deliveries per group',
  )
  assert.deepEqual(seqsOf(billingA.deliveries), range(1, 30))
  // billing settles 1..20 and 25 (so 25 travels as "settled above the floor"); shipping 1..10.
  for (const delivery of billingA.deliveries.filter((d) => d.message.seq <= 20 || d.message.seq === 25))
    await ack(a, billingA, delivery)
  for (const delivery of shippingA.deliveries.filter((d) => d.message.seq <= 10))
    await ack(a, shippingA, delivery)
  // Freed capacity: billing now has 31..50 in flight too, shipping 31..40; 41..50 never went out.
  await until(
    () => billingA.deliveries.length === 50 && shippingA.deliveries.length === 40,
    5000,
    'deliveries after the acks',
  )
  await quietWindow()
  assert.equal(billingA.deliveries.length, 50)
  assert.equal(shippingA.deliveries.length, 40)

  // Before the release, nothing can be handed over or imported.
  await assert.rejects(a.partitionSnapshot('handover', 0), { code: 'PARTITION_NOT_SERVED' })
  const emptySnapshot: PartitionSnapshot = {
    meta: { queue: 'handover', partition: 0, lastSeq: 0, count: 0 },
    groups: [],
  }
  await assert.rejects(a.importPartition(emptySnapshot, (async function* () {})()), {
    code: 'PARTITION_NOT_SERVED',
  })

  a.releasePartition('handover', 0)
  const snapshot = await a.partitionSnapshot('handover', 0)
  assert.deepEqual(snapshot.meta, { queue: 'handover', partition: 0, lastSeq: 50, count: 40 })
  const billingState = snapshot.groups.find((group) => group.group === 'billing')
  const shippingState = snapshot.groups.find((group) => group.group === 'shipping')
  assert.equal(billingState?.ackFloor, 20)
  assert.deepEqual(billingState?.settledAbove, [25])
  assert.equal(shippingState?.ackFloor, 10)
  assert.equal(shippingState?.attempts.length, 30)

  // The new owner: consumers are already there (for other partitions, say) before the move.
  const billingB = new FakeConsumer('billing-b')
  const shippingB = new FakeConsumer('shipping-b')
  await b.subscribe(billingB, 'handover', 'billing')
  await b.subscribe(shippingB, 'handover', 'shipping')
  const imported = await b.importPartition(snapshot, streamPartition(a, snapshot, 16))
  assert.equal(imported, 40)
  assert.equal(b.serves('handover', 0), false, 'imported, not served until acquired')
  await assert.rejects(
    b.publish({ queue: 'handover', payload: payload('early'), properties: {}, partition: 0 }),
    { code: 'PARTITION_NOT_SERVED' },
  )
  await b.acquirePartition('handover', 0)
  await assert.rejects(
    b.importPartition(snapshot, streamPartition(a, snapshot, 16)),
    { code: 'PARTITION_NOT_SERVED' },
    'import refused while the partition is served',
  )

  const billingExpected = range(21, 50).filter((seq) => seq !== 25)
  await until(() => billingB.deliveries.length === billingExpected.length, 5000, 'billing on B')
  await until(() => shippingB.deliveries.length === 30, 5000, 'shipping on B, first 30')
  await quietWindow()
  assert.deepEqual(seqsOf(billingB.deliveries), billingExpected, 'billing: its unsettled messages, in order')
  assert.deepEqual(
    billingB.deliveries.map((d) => d.deliveryCount),
    billingExpected.map(() => 2),
  )
  assert.deepEqual(
    billingB.deliveries.map(text),
    billingExpected.map((seq) => `m${seq}`),
  )
  assert.deepEqual(seqsOf(shippingB.deliveries), range(11, 40))
  for (const delivery of [...shippingB.deliveries]) await ack(b, shippingB, delivery)
  await until(() => shippingB.deliveries.length === 40, 5000, 'shipping on B, the rest')
  assert.deepEqual(seqsOf(shippingB.deliveries), range(11, 50), 'shipping: its unsettled messages, in order')
  assert.deepEqual(
    shippingB.deliveries.map((d) => d.deliveryCount),
    [...range(11, 40).map(() => 2), ...range(41, 50).map(() => 1)],
    'delivered once on A: count 2; never delivered: count 1',
  )
  for (const delivery of shippingB.deliveries.slice(30)) await ack(b, shippingB, delivery)
  for (const delivery of billingB.deliveries) await ack(b, billingB, delivery)
  assert.equal(b.admin.depth('handover'), 0)

  const next = await b.publish({ queue: 'handover', payload: payload('m51'), properties: {}, partition: 0 })
  assert.equal(next.seq, 51, 'seq continues after the imported lastSeq')
  assert.equal(next.id, '0-51')
  await until(
    () => billingB.deliveries.length === billingExpected.length + 1 && shippingB.deliveries.length === 41,
    5000,
    'the new message in both groups',
  )

  // The old owner deletes what it stored of the partition.
  await a.dropPartition('handover', 0)
  assert.deepEqual(await a.readPartition('handover', 0, 1, 1000), [])
  assert.equal(a.admin.depth('handover'), 0)
  await a.close()
  await storeA.open()
  const stored = await storeA.loadState()
  assert.deepEqual(
    stored.partitions.filter((meta) => meta.queue === 'handover'),
    [{ queue: 'handover', partition: 0, lastSeq: 50, count: 0 }],
  )
  assert.deepEqual(
    stored.groups.filter((group) => group.queue === 'handover' && group.partition === 0),
    [],
    'no group progress left for the dropped partition',
  )
  assert.deepEqual(await storeA.readMessages('handover', 0, 1, 1000), [])
  await storeA.close()
})

test('dead-letter queues stay served on a non-serving manager', async (t) => {
  const { manager } = await clusterManager(t, { work: { partitions: 1 } })
  assert.equal(manager.serves('dlq/work', 0), true, 'before the dead-letter queue exists')
  await manager.acquirePartition('work', 0)
  const worker = new FakeConsumer('worker')
  const operator = new FakeConsumer('operator')
  await manager.subscribe(worker, 'work', 'g')
  await manager.subscribe(operator, 'dlq/work', 'ops')
  assert.equal(manager.serves('dlq/work', 0), true)
  await manager.publish({ queue: 'work', payload: payload('bad'), properties: {}, partition: 0 })
  await until(() => worker.deliveries.length === 1, 2000, 'delivery')
  await manager.settle(worker, {
    queue: 'work',
    messageId: worker.deliveries[0]!.message.id,
    action: 'reject',
    reason: 'cannot parse',
  })
  await until(() => operator.deliveries.length === 1, 2000, 'dead letter')
  const deadLetter = operator.deliveries[0]!
  assert.equal(text(deadLetter), 'bad')
  assert.equal(operator.userProperty(deadLetter, 'dlq-reason'), 'rejected')
  assert.equal(operator.userProperty(deadLetter, 'reason'), 'cannot parse')
  // Node-local: release is a no-op for them, and they take publishes for any of their partitions.
  manager.releasePartition('dlq/work', deadLetter.message.partition)
  assert.equal(manager.serves('dlq/work', deadLetter.message.partition), true)
  await ack(manager, operator, deadLetter)
  await manager.publish({ queue: 'dlq/work', payload: payload('direct'), properties: {}, partition: 3 })
  await until(() => operator.deliveries.length === 2, 2000, 'direct dead letter')
  // The source queue's partition moving away does not take the dead letters with it.
  manager.releasePartition('work', 0)
  assert.equal(manager.serves('work', 0), false)
  await ack(manager, operator, operator.deliveries[1]!)
  assert.equal(manager.admin.depth('dlq/work'), 2, 'kept for an operator (the $pending group) after the acks')
  assert.equal((await manager.admin.deadLetters('work', 10)).length, 2)
})

test('importPartition refuses while served and refuses messages of another partition', async (t) => {
  const { manager } = await clusterManager(t, { imp: { partitions: 2 } })
  await manager.acquirePartition('imp', 1)
  const snapshot = (partition: number): PartitionSnapshot => ({
    meta: { queue: 'imp', partition, lastSeq: 1, count: 1 },
    groups: [],
  })
  const message = (partition: number): QueueMessage => ({
    id: `${partition}-1`,
    queue: 'imp',
    partition,
    seq: 1,
    payload: payload('x'),
    properties: {},
    enqueuedAtMs: 1,
  })
  async function* one(partition: number) {
    await Promise.resolve()
    yield [message(partition)]
  }
  await assert.rejects(manager.importPartition(snapshot(1), one(1)), { code: 'PARTITION_NOT_SERVED' })
  await assert.rejects(manager.importPartition(snapshot(0), one(1)), {
    code: 'INVALID_PARTITION',
    message: /does not belong to partition 0/,
  })
  assert.equal(await manager.importPartition(snapshot(0), one(0)), 1)
  await manager.acquirePartition('imp', 0)
  const consumer = new FakeConsumer('c')
  await manager.subscribe(consumer, 'imp', 'fresh')
  await until(() => consumer.deliveries.length === 1, 2000, 'imported message delivered')
  assert.equal(consumer.deliveries[0]!.message.id, '0-1')
  await turns()
  assert.equal(consumer.deliveries.length, 1)
})

test('routing reads on a non-serving manager create no queue: settingsOf, partitionFor, checkPublish', async (t) => {
  const { manager } = await clusterManager(t, { 'only-forwarded': { partitions: 4, maxMessageBytes: 2000 } })
  const queue = 'only-forwarded'
  assert.equal(manager.settingsOf(queue).partitions, 4)
  assert.equal(
    manager.partitionFor(queue, 'k'),
    manager.partitionFor(queue, 'k'),
    'a key keeps its partition',
  )
  // Without a key: round robin over the configured partitions, also for a queue not stored here.
  assert.deepEqual(
    Array.from({ length: 5 }, () => manager.partitionFor(queue, undefined)),
    [0, 1, 2, 3, 0],
  )
  manager.checkPublish({ queue, payload: payload('x'), properties: {} })
  assert.throws(() => manager.checkPublish({ queue, payload: Buffer.alloc(3000), properties: {} }), {
    code: 'MESSAGE_TOO_LARGE',
  })
  assert.throws(() => manager.settingsOf('bad/+'), { code: 'INVALID_QUEUE_NAME' })
  assert.equal(manager.serves(queue, 0), false)
  assert.deepEqual(
    manager.admin.listQueues().map((stats) => stats.name),
    [],
  )
  assert.equal(manager.admin.depth(queue), undefined)
  // A write (acquire) creates it, under the same settings.
  await manager.acquirePartition(queue, 0)
  assert.deepEqual(
    manager.admin.listQueues().map((stats) => [stats.name, stats.settings.partitions]),
    [[queue, 4]],
  )
})

test('a partition that is not a partition number is refused as INVALID_PARTITION', async (t) => {
  const { manager } = await clusterManager(t, { bad: { partitions: 1 } })
  for (const partition of [-1, 1.5, 1_000_000, Number.NaN]) {
    await assert.rejects(manager.acquirePartition('bad', partition), {
      code: 'INVALID_PARTITION',
      message: /is not a partition number/,
    })
    await assert.rejects(
      manager.importPartition(
        { meta: { queue: 'bad', partition, lastSeq: 0, count: 0 }, groups: [] },
        (async function* () {})(),
      ),
      { code: 'INVALID_PARTITION' },
    )
  }
  assert.equal(manager.serves('bad', 0), false)
})

test('a group first seen on the new owner between import and acquire keeps the imported progress', async (t) => {
  const declared = { late: { partitions: 1 } }
  const { manager: a } = await clusterManager(t, declared)
  const { manager: b } = await clusterManager(t, declared)
  await a.acquirePartition('late', 0)
  const early = new FakeConsumer('early')
  const slow = new FakeConsumer('slow')
  await a.subscribe(early, 'late', 'early')
  await a.subscribe(slow, 'late', 'slow') // never acks: keeps every message stored
  for (const n of range(1, 5))
    await a.publish({ queue: 'late', payload: payload(`m${n}`), properties: {}, partition: 0 })
  for (let acked = 0; acked < 3; acked++) {
    await until(() => early.deliveries.length === acked + 1, 2000, `delivery ${acked + 1}`)
    await ack(a, early, early.deliveries[acked]!)
  }
  await until(() => early.deliveries.length === 4, 2000, 'the 4th, left in flight')
  a.releasePartition('late', 0)
  const snapshot = await a.partitionSnapshot('late', 0)
  await b.importPartition(snapshot, streamPartition(a, snapshot, 100))
  // The group's consumers connect to B only now, before B acquires the partition.
  const earlyB = new FakeConsumer('early-b')
  await b.subscribe(earlyB, 'late', 'early')
  await b.acquirePartition('late', 0)
  await until(() => earlyB.deliveries.length >= 1, 2000, 'a delivery on B')
  await turns()
  assert.deepEqual(
    earlyB.deliveries.map((d) => [d.message.seq, d.deliveryCount]),
    [[4, 2]],
    'expected only the in-flight message 4 again (count 2); 1..3 were acked on A',
  )
})
