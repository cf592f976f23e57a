// One test per aedes patch of the queue adapter (patches/aedes+2.0.0-beta.1+02x+*.patch), against a bare
// aedes on port 0, so each patch is checked on its own, as it would be upstream.
import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { createServer } from 'node:net'
import { once } from 'node:events'
import type { AddressInfo } from 'node:net'
import { Aedes, type AedesOptions, type Client, type Subscription } from 'aedes'
import type { UserProperties } from 'mqtt-packet'
import { connectClient, TIMEOUT_MS } from '../helpers/server.js'
import { within } from '../helpers/wait.js'

async function bareBroker(t: TestContext, options: AedesOptions): Promise<{ aedes: Aedes; port: number }> {
  const aedes = await Aedes.createBroker(options)
  const server = createServer((socket) => aedes.handle(socket))
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.after(async () => {
    await new Promise<void>((resolve) => aedes.close(() => resolve()))
    await new Promise<void>((resolve) => server.close(() => resolve()))
  })
  return { aedes, port: (server.address() as AddressInfo).port }
}

void test('020: an authorizePublish error chooses the PUBACK reason code; unknown codes stay 0x87', async (t) => {
  const { port } = await bareBroker(t, {
    authorizePublish: (_client, packet, callback) => {
      const reasonCode = Number(packet.topic.split('/')[1])
      callback(Object.assign(new Error(`refused with ${reasonCode}`), { reasonCode }))
    },
  })
  const client = await connectClient(t, port)
  const outcome = (topic: string) =>
    within(
      new Promise<[number | undefined, string | undefined]>((resolve) => {
        client.publish(topic, 'x', { qos: 1 }, (_err, packet) => {
          const ack = packet as { reasonCode?: number; properties?: { reasonString?: string } } | undefined
          resolve([ack?.reasonCode, ack?.properties?.reasonString])
        })
      }),
      TIMEOUT_MS,
      topic,
    )
  assert.deepEqual(await outcome('code/151'), [0x97, 'refused with 151'])
  assert.deepEqual(await outcome('code/144'), [0x90, 'refused with 144'])
  // 0x10 (No matching subscribers) is not a failure: not allowed to pass as one.
  assert.deepEqual(await outcome('code/16'), [0x87, 'refused with 16'])
  assert.equal(client.connected, true)
})

void test('021: authorizeSubscribe sees the User Properties of the SUBSCRIBE', async (t) => {
  const seen: Array<UserProperties | undefined> = []
  const { port } = await bareBroker(t, {
    authorizeSubscribe: (_client, sub, callback) => {
      const userProperties = (sub as Subscription & { userProperties?: UserProperties }).userProperties
      // mqtt-packet decodes properties into null-prototype objects; copy for deepEqual.
      seen.push(userProperties === undefined ? undefined : { ...userProperties })
      callback(null, sub)
    },
  })
  const client = await connectClient(t, port)
  await client.subscribeAsync(['a', 'b'], {
    qos: 1,
    properties: { userProperties: { 'consumer-group': 'g' } },
  })
  await client.subscribeAsync('c', { qos: 1 })
  assert.deepEqual(seen, [{ 'consumer-group': 'g' }, { 'consumer-group': 'g' }, undefined])
})

void test('022: the ack event carries the acknowledgement packet, also for messages aedes did not persist', async (t) => {
  const { aedes, port } = await bareBroker(t, {})
  const acks: Array<{ orig: unknown; messageId: number | undefined }> = []
  const gotAck = new Promise<void>((resolve) => {
    ;(aedes as unknown as NodeJS.EventEmitter).on(
      'ack',
      (orig: unknown, _client: Client, ack?: { cmd: string; messageId?: number }) => {
        acks.push({ orig, messageId: ack?.messageId })
        if (ack?.cmd === 'puback') resolve()
      },
    )
  })
  const client = await connectClient(t, port)
  await client.subscribeAsync('t', { qos: 1 })
  const received = new Promise<number | undefined>((resolve) =>
    client.once('message', (_topic, _payload, packet) => resolve(packet.messageId)),
  )
  aedes.publish(
    { cmd: 'publish', topic: 't', payload: Buffer.from('x'), qos: 1, retain: false, dup: false },
    () => {},
  )
  const messageId = await within(received, TIMEOUT_MS, 'the QoS 1 delivery')
  await within(gotAck, TIMEOUT_MS, 'the ack event')
  assert.deepEqual(acks, [{ orig: undefined, messageId }])
})
