// The `$queue/` MQTT adapter against a real broker on port 0 and real mqtt.js clients (MQTT 5 and
// 3.1.1), with a fake QueueService standing in for the core: it records calls and lets each test decide
// when (and how) they settle.
import { rawClient } from '../helpers/raw-client.js'
import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { EventEmitter } from 'node:events'
import mqttPacket from 'mqtt-packet'
import type { IPublishPacket, MqttClient } from 'mqtt'
import { QueueError, QueueErrorCodes } from '../../src/queue/errors.js'
import type {
  ConsumerConnection,
  Delivery,
  PublishInput,
  QueueMessage,
  QueueService,
  SettleInput,
} from '../../src/queue/types.js'
import type { QueueAdapter } from '../../src/protocol/queue-adapter.js'
import type { RunningServer } from '../../src/compose.js'
import { connectClient, nextMessage, startTestServer, TIMEOUT_MS, uniqueId } from '../helpers/server.js'
import { until, within } from '../helpers/wait.js'

interface Subscribed {
  consumer: ConsumerConnection
  queue: string
  group: string
  persistentSession: boolean
}

/** Records every call; `publish`/`settle` behaviour is set per test. */
class FakeQueues extends EventEmitter implements QueueService {
  readonly published: PublishInput[] = []
  readonly subscribed: Subscribed[] = []
  readonly settled: Array<{ consumer: ConsumerConnection; input: SettleInput }> = []
  readonly unsubscribed: Array<{ consumer: ConsumerConnection; queue: string }> = []
  readonly disconnected: ConsumerConnection[] = []
  readonly resumed: string[] = []
  readonly ended: string[] = []
  /** Replace to delay or fail publishes. */
  onPublish: (input: PublishInput) => Promise<void> = () => Promise.resolve()
  onSettle: (input: SettleInput) => Promise<void> = () => Promise.resolve()
  #seq = 0

  async publish(input: PublishInput): Promise<QueueMessage> {
    this.published.push(input)
    this.emit('publish', input)
    if (input.queue.split('/').some((level) => level === '' || level.startsWith('$'))) {
      throw new QueueError(QueueErrorCodes.invalidQueueName, `invalid queue name "${input.queue}"`)
    }
    await this.onPublish(input)
    return message(input.queue, ++this.#seq, input)
  }

  subscribe(
    consumer: ConsumerConnection,
    queue: string,
    group: string,
    options?: { persistentSession?: boolean },
  ): Promise<void> {
    if (queue.includes('#') || queue.includes('+')) {
      return Promise.reject(new QueueError(QueueErrorCodes.invalidQueueName, 'wildcards are not queue names'))
    }
    this.subscribed.push({ consumer, queue, group, persistentSession: options?.persistentSession === true })
    this.emit('subscribe')
    return Promise.resolve()
  }

  resumeSession(consumer: ConsumerConnection): Promise<Array<{ queue: string; group: string }>> {
    this.resumed.push(consumer.clientId)
    this.emit('resume')
    return Promise.resolve([])
  }

  endSession(clientId: string): Promise<void> {
    this.ended.push(clientId)
    this.emit('end')
    return Promise.resolve()
  }

  unsubscribe(consumer: ConsumerConnection, queue: string): void {
    this.unsubscribed.push({ consumer, queue })
    this.emit('unsubscribe')
  }

  disconnect(consumer: ConsumerConnection): void {
    this.disconnected.push(consumer)
    this.emit('disconnect')
  }

  async settle(consumer: ConsumerConnection, input: SettleInput): Promise<void> {
    await this.onSettle(input)
    this.settled.push({ consumer, input })
    this.emit('settle')
  }

  /** Resolves when `predicate` holds, re-checked on each recorded call of kind `event`. */
  async when(event: string, predicate: () => boolean, what = event): Promise<void> {
    if (predicate()) return
    await within(
      new Promise<void>((resolve) => {
        const check = () => {
          if (!predicate()) return
          this.off(event, check)
          resolve()
        }
        this.on(event, check)
      }),
      TIMEOUT_MS,
      what,
    )
  }
}

function message(queue: string, seq: number, input?: Partial<PublishInput>): QueueMessage {
  return {
    id: `3-${seq}`,
    queue,
    partition: 3,
    seq,
    payload: input?.payload ?? Buffer.from(`m${seq}`),
    properties: input?.properties ?? {},
    enqueuedAtMs: Date.now(),
  }
}

function delivery(queue: string, seq: number, group: string, extra: Partial<QueueMessage> = {}): Delivery {
  return { message: { ...message(queue, seq), ...extra }, group, deliveryCount: 1 }
}

interface Setup {
  server: RunningServer
  queues: FakeQueues
  adapter: QueueAdapter
}

async function setup(t: TestContext): Promise<Setup> {
  const queues = new FakeQueues()
  const server = await startTestServer(t, { start: { queueService: queues } })
  return { server, queues, adapter: server.queueAdapter }
}

/** A PUBACK's reason code and Reason String, from mqtt.js' publish callback. */
async function publishOutcome(
  client: MqttClient,
  topic: string,
  payload: string,
  properties: IPublishPacket['properties'] = {},
): Promise<{ reasonCode: number; reasonString: string | undefined }> {
  return within(
    new Promise((resolve) => {
      client.publish(topic, payload, { qos: 1, properties }, (err, packet) => {
        const ack = packet as { reasonCode?: number; properties?: { reasonString?: string } } | undefined
        const code = (err as { code?: number } | undefined)?.code
        resolve({ reasonCode: ack?.reasonCode ?? code ?? 0, reasonString: ack?.properties?.reasonString })
      })
    }),
    TIMEOUT_MS,
    `PUBACK for ${topic}`,
  )
}

function userProps(packet: IPublishPacket): Record<string, string | string[]> {
  return packet.properties?.userProperties ?? {}
}

void test('a QoS 1 publish is PUBACKed only after the store resolved, with its properties kept', async (t) => {
  const { server, queues } = await setup(t)
  const publisher = await connectClient(t, server.mqttPort)
  let release!: () => void
  queues.onPublish = () => new Promise<void>((resolve) => (release = resolve))
  let acked = false
  const published = publisher
    .publishAsync('$queue/orders/eu', 'hello', {
      qos: 1,
      properties: {
        userProperties: { 'partition-key': 'customer-7', trace: ['a', 'b'] },
        messageExpiryInterval: 60,
        contentType: 'text/plain',
        responseTopic: 'replies/1',
        correlationData: Buffer.from('corr'),
        payloadFormatIndicator: true,
      },
    })
    .then(() => (acked = true))
  await queues.when('publish', () => queues.published.length === 1)
  // Give the broker a round trip on another connection: a PUBACK written early would be here by now.
  const other = await connectClient(t, server.mqttPort)
  await other.publishAsync('plain/ping', 'x', { qos: 1 })
  assert.equal(acked, false, 'PUBACK must wait for the store')
  release()
  await within(published, TIMEOUT_MS, 'PUBACK after the store resolved')

  const input = queues.published[0]
  assert.ok(input)
  assert.equal(input.queue, 'orders/eu')
  assert.equal(Buffer.from(input.payload).toString(), 'hello')
  assert.equal(input.partitionKey, 'customer-7')
  assert.equal(input.messageExpirySeconds, 60)
  assert.deepEqual(input.properties.userProperties, [
    ['partition-key', 'customer-7'],
    ['trace', 'a'],
    ['trace', 'b'],
  ])
  assert.equal(input.properties.contentType, 'text/plain')
  assert.equal(input.properties.responseTopic, 'replies/1')
  assert.equal(Buffer.from(input.properties.correlationData ?? []).toString(), 'corr')
  assert.equal(input.properties.payloadFormatIndicator, true)
})

void test('QoS 0 and QoS 2 publishes are stored too; a QoS 2 publish is stored once', async (t) => {
  const { server, queues } = await setup(t)
  const publisher = await connectClient(t, server.mqttPort)
  await publisher.publishAsync('$queue/q0', 'zero', { qos: 0 })
  await publisher.publishAsync('$queue/q2', 'two', { qos: 2 })
  await queues.when('publish', () => queues.published.length === 2)
  assert.deepEqual(queues.published.map((p) => p.queue).sort(), ['q0', 'q2'])
})

void test('$queue/ publishes never reach a # subscriber nor mqemitter', async (t) => {
  const { server, queues } = await setup(t)
  const emitted: string[] = []
  const mq = (server.aedes as unknown as { mq: { emit: (p: { topic: string }, cb?: () => void) => unknown } })
    .mq
  const emit = mq.emit.bind(mq)
  mq.emit = (packet, cb) => {
    emitted.push(packet.topic)
    return emit(packet, cb)
  }
  const snoop = await connectClient(t, server.mqttPort)
  const snooped: string[] = []
  snoop.on('message', (topic) => snooped.push(topic))
  await snoop.subscribeAsync('#', { qos: 1 })
  const publisher = await connectClient(t, server.mqttPort)
  await publisher.publishAsync('$queue/secret', 'x', { qos: 1 })
  await publisher.publishAsync('$queue/secret/$ack', 'x', {
    qos: 1,
    properties: { userProperties: { 'message-id': '1-1' } },
  })
  const marker = nextMessage(snoop, 'marker')
  await publisher.publishAsync('marker', 'after', { qos: 1 })
  await marker
  assert.deepEqual(snooped, ['marker'])
  assert.equal(queues.published.length, 1)
  assert.deepEqual(
    emitted.filter((topic) => topic.startsWith('$queue/')),
    [],
  )
})

void test('limits answer 0x97, bad names 0x90, unknown settles 0x80, each with a Reason String; the connection stays up', async (t) => {
  const { server, queues } = await setup(t)
  const client = await connectClient(t, server.mqttPort)
  queues.onPublish = (input) =>
    input.queue === 'full'
      ? Promise.reject(new QueueError(QueueErrorCodes.queueFull, 'queue "full" is full (max depth 10)'))
      : input.queue === 'big'
        ? Promise.reject(new QueueError(QueueErrorCodes.messageTooLarge, 'message is larger than 1024 bytes'))
        : Promise.resolve()
  queues.onSettle = (input) =>
    Promise.reject(
      new QueueError(
        QueueErrorCodes.unknownMessage,
        `unknown or already settled message-id "${input.messageId}"`,
      ),
    )

  assert.deepEqual(await publishOutcome(client, '$queue/full', 'x'), {
    reasonCode: 0x97,
    reasonString: 'queue "full" is full (max depth 10)',
  })
  assert.deepEqual(await publishOutcome(client, '$queue/big', 'x'), {
    reasonCode: 0x97,
    reasonString: 'message is larger than 1024 bytes',
  })
  assert.deepEqual(await publishOutcome(client, '$queue/a/$weird', 'x'), {
    reasonCode: 0x90,
    reasonString: 'invalid queue name "a/$weird"',
  })
  const settle = await publishOutcome(client, '$queue/jobs/$ack', '', {
    userProperties: { 'message-id': '0-42' },
  })
  assert.equal(settle.reasonCode, 0x80)
  assert.match(settle.reasonString ?? '', /unknown or already settled message-id "0-42"/)
  const missing = await publishOutcome(client, '$queue/jobs/$nack', '')
  assert.equal(missing.reasonCode, 0x80)
  assert.match(missing.reasonString ?? '', /message-id/)

  assert.equal(client.connected, true)
  assert.deepEqual(await publishOutcome(client, '$queue/fine', 'x'), {
    reasonCode: 0,
    reasonString: undefined,
  })
})

void test('settles carry message-id, group-id, delay-ms and reason; a 3.1.1 client may send the id as payload', async (t) => {
  const { server, queues } = await setup(t)
  const v5 = await connectClient(t, server.mqttPort)
  await v5.publishAsync('$queue/jobs/$nack', '', {
    qos: 1,
    properties: { userProperties: { 'message-id': '1-7', 'group-id': 'g', 'delay-ms': '250' } },
  })
  await v5.publishAsync('$queue/jobs/$reject', '', {
    qos: 1,
    properties: { userProperties: { 'message-id': '1-8', reason: 'bad input' } },
  })
  await v5.publishAsync('$queue/jobs/$extend', '', {
    qos: 1,
    properties: { userProperties: { 'message-id': '1-9' } },
  })
  const v4 = await connectClient(t, server.mqttPort, { protocolVersion: 4 })
  await v4.publishAsync('$queue/jobs/$ack', '2-3', { qos: 1 })
  await queues.when('settle', () => queues.settled.length === 4)
  assert.deepEqual(
    queues.settled.map((s) => s.input),
    [
      { queue: 'jobs', messageId: '1-7', action: 'nack', group: 'g', delayMs: 250 },
      { queue: 'jobs', messageId: '1-8', action: 'reject', reason: 'bad input' },
      { queue: 'jobs', messageId: '1-9', action: 'extend' },
      { queue: 'jobs', messageId: '2-3', action: 'ack' },
    ],
  )
  assert.equal(queues.settled[3]?.consumer.clientId, v4.options.clientId)
})

void test('SUBSCRIBE reads consumer-group from its user properties, else the client id up to "-"', async (t) => {
  const { server, queues } = await setup(t)
  const a = await connectClient(t, server.mqttPort, { clientId: uniqueId('worker') })
  const granted = await a.subscribeAsync('$queue/tasks', {
    qos: 1,
    properties: { userProperties: { 'consumer-group': 'billing' } },
  })
  assert.deepEqual(
    granted.map((g) => g.qos),
    [1],
  )
  const b = await connectClient(t, server.mqttPort, { clientId: uniqueId('worker') })
  await b.subscribeAsync('$queue/tasks', { qos: 1 })
  const soloId = `solo${uniqueId('').replace('-', '')}`
  const c = await connectClient(t, server.mqttPort, { clientId: soloId, protocolVersion: 4 })
  await c.subscribeAsync('$queue/tasks', { qos: 1 })
  await queues.when('subscribe', () => queues.subscribed.length === 3)
  assert.deepEqual(
    queues.subscribed.map((s) => [s.consumer.clientId, s.queue, s.group, s.persistentSession]),
    [
      [a.options.clientId, 'tasks', 'billing', false],
      [b.options.clientId, 'tasks', 'worker', false],
      [soloId, 'tasks', soloId, false],
    ],
  )
  assert.equal(queues.subscribed[0]?.consumer.receiveMaximum, 65535)

  // A filter with a wildcard is not a queue: 0x8F Topic Filter invalid with the reason, connection up.
  const refused = await a.subscribeAsync('$queue/tasks/#', { qos: 1 }).then(
    () => assert.fail('a wildcard queue filter must be refused'),
    (err: { packet?: { granted?: number[]; properties?: { reasonString?: string } } }) => err.packet,
  )
  assert.deepEqual(refused?.granted, [0x8f])
  assert.equal(refused?.properties?.reasonString, 'wildcards are not queue names')
  assert.equal(a.connected, true)
})

void test('deliveries are QoS 1 PUBLISHes on $queue/<name> with the publisher and queue properties', async (t) => {
  const { server, queues } = await setup(t)
  const consumer = await connectClient(t, server.mqttPort, { properties: { receiveMaximum: 20 } })
  await consumer.subscribeAsync('$queue/mail', { qos: 1 })
  const subscribed = queues.subscribed[0]
  assert.ok(subscribed)
  assert.equal(subscribed.consumer.receiveMaximum, 20)
  const received = nextMessage(consumer, '$queue/mail')
  subscribed.consumer.deliver({
    message: {
      ...message('mail', 5),
      payload: Buffer.from('body'),
      expiresAtMs: Date.now() + 30_000,
      properties: {
        contentType: 'application/json',
        correlationData: Buffer.from('c1'),
        userProperties: [
          ['partition-key', 'k'],
          ['message-id', 'spoofed'],
        ],
      },
    },
    group: 'mailers',
    deliveryCount: 2,
  })
  const { packet, payload } = await received
  assert.equal(packet.qos, 1)
  assert.equal(payload.toString(), 'body')
  assert.deepEqual(
    { ...userProps(packet) },
    {
      'partition-key': 'k',
      'message-id': '3-5',
      'group-id': 'mailers',
      partition: '3',
      'delivery-count': '2',
    },
  )
  assert.equal(packet.properties?.contentType, 'application/json')
  assert.equal(packet.properties?.correlationData?.toString(), 'c1')
  const expiry = packet.properties?.messageExpiryInterval ?? 0
  assert.ok(expiry > 25 && expiry <= 30, `expiry ${expiry}`)
})

void test('delivery packet ids never collide with aedes QoS 1 deliveries on plain topics to the same client', async (t) => {
  const { server, queues } = await setup(t)
  const count = 300
  // A raw MQTT 5 client that never PUBACKs, so every packet id of both streams stays in flight.
  const raw = await rawClient(t, server.mqttPort, uniqueId('raw'), 5)
  raw.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'plain/feed', qos: 1 }] })
  await raw.next('suback')
  raw.send({ cmd: 'subscribe', messageId: 2, subscriptions: [{ topic: '$queue/feed', qos: 1 }] })
  await raw.next('suback')
  const subscribed = queues.subscribed[0]
  assert.ok(subscribed)
  const publisher = await connectClient(t, server.mqttPort)
  for (let i = 1; i <= count; i++) {
    subscribed.consumer.deliver(delivery('feed', i, 'g'))
    publisher.publish('plain/feed', `p${i}`, { qos: 1 })
  }
  await raw.waitFor(
    (p) => p.filter((x) => x.cmd === 'publish').length === 2 * count,
    `${2 * count} PUBLISHes`,
  )
  const publishes = raw.packets.filter((p): p is mqttPacket.IPublishPacket => p.cmd === 'publish')
  assert.equal(publishes.filter((p) => p.topic === '$queue/feed').length, count)
  const ids = publishes.map((p) => p.messageId)
  assert.equal(new Set(ids).size, ids.length, 'packet ids in flight must be distinct')
})

void test('a 3.1.1 consumer settles with its PUBACK; a v5 PUBACK only frees the packet id', async (t) => {
  const { server, queues } = await setup(t)
  const v4 = await connectClient(t, server.mqttPort, { protocolVersion: 4, clientId: uniqueId('legacy') })
  await v4.subscribeAsync('$queue/old', { qos: 1 })
  const v5 = await connectClient(t, server.mqttPort, { clientId: uniqueId('modern') })
  await v5.subscribeAsync('$queue/old', { qos: 1 })
  const [s4, s5] = queues.subscribed
  assert.ok(s4 && s5)
  assert.equal(s4.consumer.receiveMaximum, 65535)

  const got5 = nextMessage(v5, '$queue/old')
  s5.consumer.deliver(delivery('old', 1, s5.group))
  await got5
  const got4 = nextMessage(v4, '$queue/old')
  s4.consumer.deliver(delivery('old', 2, s4.group))
  const { packet } = await got4
  assert.equal(packet.properties, undefined, '3.1.1 has no properties')
  await queues.when('settle', () => queues.settled.length === 1)
  assert.deepEqual(queues.settled[0]?.input, {
    queue: 'old',
    messageId: '3-2',
    group: 'legacy',
    action: 'ack',
  })
  assert.equal(queues.settled[0]?.consumer, s4.consumer)
})

void test('UNSUBSCRIBE, disconnect and sessions reach the core', async (t) => {
  const { server, queues, adapter } = await setup(t)
  const clientId = uniqueId('persistent')
  const options = { clientId, clean: false, properties: { sessionExpiryInterval: 300 } }
  const first = await connectClient(t, server.mqttPort, options)
  await queues.when('end', () => queues.ended.includes(clientId), 'endSession on a new session')
  await first.subscribeAsync('$queue/sessions', { qos: 1 })
  await first.subscribeAsync('$queue/other', { qos: 1 })
  assert.deepEqual(
    queues.subscribed.map((s) => [s.queue, s.persistentSession]),
    [
      ['sessions', true],
      ['other', true],
    ],
  )
  await first.unsubscribeAsync('$queue/other')
  await queues.when('unsubscribe', () => queues.unsubscribed.length === 1)
  assert.equal(queues.unsubscribed[0]?.queue, 'other')

  await first.endAsync()
  await queues.when('disconnect', () => queues.disconnected.some((c) => c.clientId === clientId))

  const second = await connectClient(t, server.mqttPort, options)
  await queues.when('resume', () => queues.resumed.includes(clientId), 'resumeSession with session present')
  assert.equal(queues.subscribed.length, 2, 'a restored subscription is not subscribed again')
  await second.endAsync()
  await queues.when(
    'disconnect',
    () => queues.disconnected.filter((c) => c.clientId === clientId).length === 2,
  )

  const endedBefore = queues.ended.filter((id) => id === clientId).length
  const third = await connectClient(t, server.mqttPort, { clientId, clean: true })
  await queues.when('end', () => queues.ended.filter((id) => id === clientId).length === endedBefore + 1)
  await third.endAsync()
  await until(() => adapter.consumerCount === 0, TIMEOUT_MS, 'consumers forgotten')
})

void test('a settle with message-id repeated settles every id, one core call each in the order given', async (t) => {
  const { server, queues } = await setup(t)
  const calls: string[] = []
  queues.onSettle = (input) => {
    calls.push(`${input.action} ${input.messageId} ${input.group ?? '-'}`)
    return Promise.resolve()
  }
  const client = await connectClient(t, server.mqttPort)
  const ok = await publishOutcome(client, '$queue/jobs/$ack', '', {
    userProperties: { 'message-id': ['1-3', '1-1', '1-2'], 'group-id': 'g' },
  })
  assert.deepEqual(ok, { reasonCode: 0, reasonString: undefined })
  assert.deepEqual(calls, ['ack 1-3 g', 'ack 1-1 g', 'ack 1-2 g'])

  // Any failure: the first failure's code, how many of how many, which ids and why. No silent success.
  calls.length = 0
  queues.onSettle = (input) => {
    calls.push(input.messageId)
    if (input.messageId === '2-1') return Promise.reject(new Error('disk on fire'))
    if (input.messageId.startsWith('2-')) {
      return Promise.reject(new QueueError(QueueErrorCodes.unknownMessage, `unknown ${input.messageId}`))
    }
    return Promise.resolve()
  }
  const partial = await publishOutcome(client, '$queue/jobs/$nack', '', {
    userProperties: { 'message-id': ['1-4', '2-2', '1-5', '2-1'] },
  })
  assert.deepEqual(calls, ['1-4', '2-2', '1-5', '2-1'])
  assert.equal(partial.reasonCode, 0x80)
  assert.equal(
    partial.reasonString,
    '2 of 4 message-ids settled; failed: 2-2 (unknown 2-2); 2-1 (disk on fire)',
  )

  // The Reason String stays bounded however many fail.
  const many = Array.from({ length: 1000 }, (_, i) => `2-${i + 10}`)
  const all = await publishOutcome(client, '$queue/jobs/$reject', '', {
    userProperties: { 'message-id': many },
  })
  assert.equal(all.reasonCode, 0x80)
  assert.match(
    all.reasonString ?? '',
    /^0 of 1000 message-ids settled; failed: 2-10 \(unknown 2-10\);.* and \d+ more$/,
  )
  assert.ok((all.reasonString ?? '').length <= 512, `${all.reasonString?.length} characters`)

  // Over the cap, or an id twice: refused with 0x83 before anything is settled.
  calls.length = 0
  const tooMany = await publishOutcome(client, '$queue/jobs/$ack', '', {
    userProperties: { 'message-id': Array.from({ length: 1001 }, (_, i) => `1-${i}`) },
  })
  assert.equal(tooMany.reasonCode, 0x83)
  assert.match(tooMany.reasonString ?? '', /1001 message-ids, at most 1000/)
  const twice = await publishOutcome(client, '$queue/jobs/$extend', '', {
    userProperties: { 'message-id': ['1-1', '1-2', '1-1'] },
  })
  assert.equal(twice.reasonCode, 0x83)
  assert.match(twice.reasonString ?? '', /"1-1" is given twice/)
  assert.deepEqual(calls, [])
  assert.equal(client.connected, true)
})

void test('delay-ms is 0|[1-9][0-9]* within the safe integers; anything else is refused with 0x83 and never reaches the core', async (t) => {
  const { server, queues } = await setup(t)
  const client = await connectClient(t, server.mqttPort)
  const nack = (delay: string) =>
    publishOutcome(client, '$queue/jobs/$nack', '', {
      userProperties: { 'message-id': '1-1', 'delay-ms': delay },
    })
  for (const bad of [
    '',
    '1e3',
    '0x10',
    ' 5',
    '5 ',
    '05',
    '-1',
    '+5',
    '1.5',
    'NaN',
    'Infinity',
    '9007199254740992',
  ]) {
    const outcome = await nack(bad)
    assert.equal(outcome.reasonCode, 0x83, `delay-ms "${bad}"`)
    assert.match(outcome.reasonString ?? '', /"delay-ms" must be a non-negative integer/, `delay-ms "${bad}"`)
  }
  assert.equal(queues.settled.length, 0)
  assert.equal((await nack('0')).reasonCode, 0)
  assert.equal((await nack('9007199254740991')).reasonCode, 0)
  assert.deepEqual(
    queues.settled.map((s) => s.input.delayMs),
    [0, 9007199254740991],
  )
  assert.equal(client.connected, true)
})

void test('a single-valued user property given twice is refused (0x83 PUBACK / SUBACK), not first-wins', async (t) => {
  const { server, queues } = await setup(t)
  const client = await connectClient(t, server.mqttPort)
  const twice = [
    ['$queue/jobs', 'partition-key', {}],
    ['$queue/jobs/$ack', 'group-id', { 'message-id': '1-1' }],
    ['$queue/jobs/$nack', 'delay-ms', { 'message-id': '1-1' }],
    ['$queue/jobs/$reject', 'reason', { 'message-id': '1-1' }],
  ] as const
  for (const [topic, key, extra] of twice) {
    const outcome = await publishOutcome(client, topic, 'x', {
      userProperties: { ...extra, [key]: ['1', '2'] },
    })
    assert.equal(outcome.reasonCode, 0x83, `${key} twice`)
    assert.equal(outcome.reasonString, `user property "${key}" is given 2 times; it takes one value`)
  }
  assert.equal(queues.published.length, 0)
  assert.equal(queues.settled.length, 0)

  const refused = await client
    .subscribeAsync('$queue/jobs', {
      qos: 1,
      properties: { userProperties: { 'consumer-group': ['a', 'b'] } },
    })
    .then(
      () => assert.fail('a repeated consumer-group must be refused'),
      (err: { packet?: { granted?: number[]; properties?: { reasonString?: string } } }) => err.packet,
    )
  assert.deepEqual(refused?.granted, [0x83])
  assert.match(refused?.properties?.reasonString ?? '', /"consumer-group" is given 2 times/)
  assert.equal(queues.subscribed.length, 0)
  assert.equal(client.connected, true)
})

void test('a settle whose payload (the 3.1.1 form of the id) is not a message id is refused: 0x99 for v5, closed for 3.1.1', async (t) => {
  const { server, queues } = await setup(t)
  const v5 = await connectClient(t, server.mqttPort)
  const outcome = await publishOutcome(v5, '$queue/jobs/$ack', 'hello world')
  assert.equal(outcome.reasonCode, 0x99)
  assert.match(outcome.reasonString ?? '', /must be one message id \(<partition>-<seq>\), got "hello world"/)
  assert.equal(v5.connected, true)

  const v4 = await connectClient(t, server.mqttPort, { protocolVersion: 4, reconnectPeriod: 0 })
  const closed = new Promise<void>((resolve) => v4.once('close', () => resolve()))
  v4.publish('$queue/jobs/$ack', '01-2', { qos: 1 })
  await within(closed, TIMEOUT_MS, 'the 3.1.1 connection to close')
  assert.equal(queues.settled.length, 0)
})
