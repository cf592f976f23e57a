// LevelPersistence reloads everything it wrote: the part the abstract suite cannot see.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import { LevelPersistence, type StoredPacket } from '../../src/protocol/persistence/level-persistence.js'

const broker = { id: 'broker-1' }
const client = { id: 'client-1' }

async function all<T>(stream: Readable): Promise<T[]> {
  const out: T[] = []
  for await (const item of stream) out.push(item as T)
  return out
}

function publish(topic: string, payload: string, extra: Partial<StoredPacket> = {}): StoredPacket {
  return {
    cmd: 'publish',
    topic,
    payload: Buffer.from(payload),
    qos: 1,
    retain: false,
    brokerId: broker.id,
    ...extra,
  }
}

void test('subscriptions, retained, wills, outgoing and incoming packets survive close and reopen', async (t) => {
  const path = await mkdtemp(join(tmpdir(), 'spool-levelp-'))
  t.after(() => rm(path, { recursive: true, force: true }))

  const p1 = new LevelPersistence({ path })
  await p1.setup(broker)
  await p1.addSubscriptions(client, [
    { topic: 'a/+', qos: 1, rh: 0, rap: 0, nl: 0, subscriptionIdentifier: 7 },
    { topic: 'b', qos: 0 },
    { topic: 'gone', qos: 1 },
  ])
  await p1.removeSubscriptions(client, ['gone'])
  await p1.storeRetained(publish('r/1', 'kept', { retain: true }))
  await p1.storeRetained(publish('r/2', 'dropped', { retain: true }))
  await p1.storeRetained(publish('r/2', '', { retain: true }))
  await p1.putWill(client, publish('will', 'bye'))
  const properties = { userProperties: { k: 'v' }, correlationData: Buffer.from([1, 2, 3]) }
  await p1.outgoingEnqueueCombi(
    [{ clientId: client.id }],
    publish('a/x', 'one', { brokerCounter: 1, properties }),
  )
  await p1.outgoingEnqueueCombi([{ clientId: client.id }], publish('a/x', 'two', { brokerCounter: 2 }))
  await p1.outgoingEnqueueCombi([{ clientId: client.id }], publish('a/x', 'three', { brokerCounter: 3 }))
  await p1.outgoingUpdate(client, publish('a/x', 'one', { brokerCounter: 1, messageId: 11 }))
  await p1.outgoingUpdate(client, publish('a/x', 'two', { brokerCounter: 2, messageId: 12 }))
  await p1.outgoingClearMessageId(client, publish('a/x', 'two', { messageId: 12 }))
  await p1.incomingStorePacket(client, publish('in', 'q2', { qos: 2, messageId: 5 }))
  await p1.destroy()

  const p2 = new LevelPersistence({ path })
  await p2.setup(broker)
  t.after(() => p2.destroy())
  assert.deepEqual(await p2.subscriptionsByClient(client), [
    { topic: 'a/+', qos: 1, rh: 0, rap: 0, nl: 0, subscriptionIdentifier: 7 },
    { topic: 'b', qos: 0 },
  ])
  assert.deepEqual(
    (await p2.subscriptionsByTopic('a/x')).map((s) => s.clientId),
    [client.id],
  )
  assert.deepEqual(await p2.countOffline(), { subsCount: 1, clientsCount: 1 })
  const retained = await all<StoredPacket>(p2.createRetainedStream('r/#'))
  assert.deepEqual(
    retained.map((r) => [r.topic, r.payload.toString()]),
    [['r/1', 'kept']],
  )
  assert.equal((await p2.getWill(client))?.payload.toString(), 'bye')
  const outgoing = await all<StoredPacket>(p2.outgoingStream(client))
  assert.deepEqual(
    outgoing.map((o) => [o.payload.toString(), o.messageId]),
    [
      ['one', 11],
      ['three', undefined],
    ],
  )
  assert.deepEqual(outgoing[0]?.properties, properties)
  assert.ok(Buffer.isBuffer(outgoing[0]?.payload))
  assert.equal(
    (await p2.incomingGetPacket(client, publish('in', '', { messageId: 5 }))).payload.toString(),
    'q2',
  )

  // Shared-subscription deliveries are not enqueued first: outgoingUpdate records them.
  await p2.outgoingUpdate(
    client,
    publish('s', 'shared', { brokerCounter: 99, brokerId: 'other', messageId: 40 }),
  )
  assert.equal((await all<StoredPacket>(p2.outgoingStream(client))).length, 3)
})
