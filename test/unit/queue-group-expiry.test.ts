// Group lifecycle in the core: a group with no member online for groupExpiryMs (implicit groups:
// implicitGroupExpiryMs) is deleted and releases what it held; the clock survives a restart; implicit
// groups can be refused. MemoryQueueStore + ManualClock: time moves only when the test says so.
import assert from 'node:assert/strict'
import { test } from 'node:test'

import { QueueManager } from '../../src/queue/manager.js'
import type { QueueSettingsOverrides } from '../../src/queue/settings.js'
import type { QueueObserver } from '../../src/queue/observer.js'
import { silentObserver } from '../../src/queue/observer.js'
import { MemoryQueueStore } from '../../src/storage/memory-store.js'
import { ManualClock } from '../helpers/manual-clock.js'
import { FakeConsumer, payload } from '../helpers/recording-consumer.js'
import { until } from '../helpers/wait.js'

const HOUR = 3_600_000

function open(
  declared: Record<string, QueueSettingsOverrides>,
  store = new MemoryQueueStore(),
  clock = new ManualClock(),
  options: { implicitGroups?: boolean; expired?: string[] } = {},
) {
  const observer: QueueObserver = {
    ...silentObserver,
    groupExpired: (queue, group) => options.expired?.push(`${queue}/${group}`),
  }
  const manager = new QueueManager({
    store,
    clock,
    declared,
    observer,
    ...(options.implicitGroups === undefined ? {} : { implicitGroups: options.implicitGroups }),
  })
  return { manager, store, clock, ready: manager.open() }
}

async function publish(manager: QueueManager, queue: string, count: number): Promise<void> {
  for (let i = 0; i < count; i++) await manager.publish({ queue, payload: payload(`m${i}`), properties: {} })
}

async function ackAll(manager: QueueManager, consumer: FakeConsumer, queue: string, count: number) {
  // Ordered partitions deliver one message at a time each: ack as they come.
  for (let acked = 0; acked < count;) {
    await until(() => consumer.deliveries.length > 0, 2000, `delivery ${acked + 1} of ${count}`)
    for (const delivery of consumer.deliveries.splice(0)) {
      await manager.settle(consumer, { queue, messageId: delivery.message.id, action: 'ack' })
      acked++
    }
  }
}

const groupNamed = (manager: QueueManager, queue: string, name: string) =>
  manager.admin.queueStats(queue).groups.find((group) => group.name === name)

test('implicit groups left behind by short-lived consumers expire and release the queue (depth back to 0)', async () => {
  const expired: string[] = []
  const { manager, clock, ready } = open({ jobs: { partitions: 2 } }, undefined, undefined, { expired })
  await ready
  const worker = new FakeConsumer('worker-1')
  await manager.subscribe(worker, 'jobs', 'workers')
  // Three mqtt.js-style clients with no consumer-group: a group of their own each, which re-reads
  // the stored messages and then holds them.
  for (const id of ['mqttjs_1', 'mqttjs_2', 'mqttjs_3']) {
    const passer = new FakeConsumer(id)
    await manager.subscribe(passer, 'jobs', id, { implicitGroup: true })
    manager.disconnect(passer)
  }
  await publish(manager, 'jobs', 8)
  await ackAll(manager, worker, 'jobs', 8)
  assert.equal(manager.admin.depth('jobs'), 8, 'the implicit groups hold every message')
  const held = groupNamed(manager, 'jobs', 'mqttjs_1')!
  assert.equal(held.implicit, true)
  assert.equal(held.backlog, 8)
  assert.equal(held.expiresAtMs, held.lastActiveAtMs + HOUR, 'implicit default: 1 h')
  assert.equal(
    groupNamed(manager, 'jobs', 'workers')!.expiresAtMs,
    null,
    'a group with members never expires',
  )

  clock.advance(HOUR - 1)
  assert.equal(manager.admin.queueStats('jobs').groups.length, 4, 'not before its time')
  clock.advance(1)
  await until(() => manager.admin.depth('jobs') === 0, 2000, 'released after expiry')
  assert.deepEqual(
    manager.admin.queueStats('jobs').groups.map((group) => group.name),
    ['workers'],
  )
  assert.deepEqual(expired.sort(), ['jobs/mqttjs_1', 'jobs/mqttjs_2', 'jobs/mqttjs_3'])
  await manager.close()
})

test('a named group expires after groupExpiryMs without members; a member coming back stops the clock; 0 means never', async () => {
  const { manager, clock, ready } = open({
    a: { groupExpiryMs: 10_000 },
    never: { groupExpiryMs: 0, implicitGroupExpiryMs: 0 },
  })
  await ready
  const c = new FakeConsumer('c-1')
  await manager.subscribe(c, 'a', 'g')
  manager.disconnect(c)
  clock.advance(9_000)
  const again = new FakeConsumer('c-1')
  await manager.subscribe(again, 'a', 'g') // back in time: the clock stops
  clock.advance(60_000)
  assert.equal(groupNamed(manager, 'a', 'g')?.expiresAtMs, null)
  manager.disconnect(again)
  const idle = groupNamed(manager, 'a', 'g')!
  assert.equal(idle.expiresAtMs, clock.now() + 10_000, 'the clock starts again from the last leave')
  clock.advance(10_000)
  await until(() => groupNamed(manager, 'a', 'g') === undefined, 2000, 'expired')

  for (const [group, implicit] of [
    ['named', false],
    ['implicit', true],
  ] as const) {
    const n = new FakeConsumer(`n-${group}`)
    await manager.subscribe(n, 'never', group, { implicitGroup: implicit })
    manager.disconnect(n)
  }
  clock.advance(1000 * 24 * HOUR)
  assert.equal(manager.admin.queueStats('never').groups.length, 2, 'expiry 0: never')
  assert.ok(manager.admin.queueStats('never').groups.every((group) => group.expiresAtMs === null))
  await manager.close()
})

test('naming an implicit group makes it a named one; an admin change of groupExpiryMs re-arms idle groups', async () => {
  const { manager, clock, ready } = open({})
  await ready
  const first = new FakeConsumer('mailer-1')
  await manager.subscribe(first, 'q', 'mailer', { implicitGroup: true })
  assert.equal(groupNamed(manager, 'q', 'mailer')!.implicit, true)
  const second = new FakeConsumer('mailer-2')
  await manager.subscribe(second, 'q', 'mailer')
  assert.equal(groupNamed(manager, 'q', 'mailer')!.implicit, false)
  manager.disconnect(first)
  manager.disconnect(second)
  assert.equal(
    groupNamed(manager, 'q', 'mailer')!.expiresAtMs,
    clock.now() + 24 * HOUR,
    'named default: 24 h',
  )
  await manager.admin.createQueue('r', {})
  await manager.admin.updateQueue('q', { groupExpiryMs: 5_000 })
  assert.equal(groupNamed(manager, 'q', 'mailer')!.expiresAtMs, clock.now() + 5_000)
  clock.advance(5_000)
  await until(() => groupNamed(manager, 'q', 'mailer') === undefined, 2000, 'expired under the new setting')
  await assert.rejects(manager.admin.updateQueue('q', { groupExpiryMs: -1 }), { code: 'INVALID_SETTINGS' })
  await manager.close()
})

test('the idle clock survives a restart; a group that had members when the node stopped is idle from the start', async () => {
  const store = new MemoryQueueStore()
  const clock = new ManualClock()
  const first = open({ q: { groupExpiryMs: 10_000 } }, store, clock)
  await first.ready
  const idle = new FakeConsumer('idle-1')
  const busy = new FakeConsumer('busy-1')
  await first.manager.subscribe(idle, 'q', 'idle')
  await first.manager.subscribe(busy, 'q', 'busy')
  await publish(first.manager, 'q', 3)
  first.manager.disconnect(idle)
  const leftAt = clock.now()
  clock.advance(6_000)
  await first.manager.close() // busy still had its member: no record of it going idle

  const second = open({ q: { groupExpiryMs: 10_000 } }, store, clock)
  await second.ready
  assert.equal(groupNamed(second.manager, 'q', 'idle')!.expiresAtMs, leftAt + 10_000, 'kept across restart')
  assert.equal(
    groupNamed(second.manager, 'q', 'busy')!.expiresAtMs,
    clock.now() + 10_000,
    'idle from the start',
  )
  clock.advance(4_000)
  await until(() => groupNamed(second.manager, 'q', 'idle') === undefined, 2000, 'idle expired')
  assert.equal(second.manager.admin.depth('q'), 3, 'busy still holds its messages')
  await second.manager.close()

  const third = open({ q: { groupExpiryMs: 10_000 } }, store, clock)
  await third.ready
  assert.deepEqual(
    third.manager.admin.queueStats('q').groups.map((group) => group.name),
    ['busy'],
    'an expired group stays deleted',
  )
  // busy went idle at the second start, 4 s ago: its clock did not restart with the third start.
  assert.equal(groupNamed(third.manager, 'q', 'busy')!.expiresAtMs, clock.now() + 6_000)
  clock.advance(6_000)
  await until(() => groupNamed(third.manager, 'q', 'busy') === undefined, 2000, 'busy expired')
  assert.equal(third.manager.admin.depth('q'), 3, 'with no group left the messages wait for the next group')
  await third.manager.close()
})

test('queues.implicitGroups false refuses a consumer that names no group, with a code that says so', async () => {
  const { manager, ready } = open({}, undefined, undefined, { implicitGroups: false })
  await ready
  await assert.rejects(manager.subscribe(new FakeConsumer('x-1'), 'q', 'x', { implicitGroup: true }), {
    code: 'GROUP_REQUIRED',
    message: /consumer-group/,
  })
  await manager.subscribe(new FakeConsumer('x-2'), 'q', 'x')
  await manager.close()
})
