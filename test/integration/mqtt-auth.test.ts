// MQTT authentication and ACLs against a real broker with real clients: passwords (CONNACK 0x86 /
// return code 4), anonymous access (loopback by default, 0x87 / 5 otherwise), ACL denials on plain
// and `$queue/` topics for MQTT 5 (0x87, connection stays) and 3.1.1 (SUBACK 0x80, disconnect on
// PUBLISH), wills, and a CLI user's path: `spool passwd`, a config file, mosquitto_pub -u/-P.
import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { spawn, type ChildProcessByStdio } from 'node:child_process'
import type { Readable, Writable } from 'node:stream'
import { once } from 'node:events'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import mqtt, { type IClientOptions, type IClientSubscribeOptions, type MqttClient } from 'mqtt'
import { pino } from 'pino'
import { hashPassword } from '../../src/auth/password.js'
import type { RawConfig } from '../../src/config/index.js'
import {
  collect,
  connectClient,
  MAIN_JS,
  nextMessage,
  spawnBroker,
  startTestServer,
  tempDir,
  TIMEOUT_MS,
  uniqueId,
  waitForCount,
} from '../helpers/server.js'
import { messageIdOf, publishOutcome, settle, settleOk, deliveryCountOf } from '../helpers/queues.js'
import { within } from '../helpers/wait.js'

const NOT_AUTHORIZED = 0x87
const BAD_USER_OR_PASSWORD = 0x86

const PASSWORDS = { admin: 'admin-pw', alice: 'alice-pw', worker: 'worker-pw', peeker: 'peeker-pw' }

/** Users for every test here; hashed once (scrypt costs a few tens of ms each). */
const USERS = [
  { username: 'admin', passwordHash: await hashPassword(PASSWORDS.admin) },
  {
    username: 'alice',
    passwordHash: await hashPassword(PASSWORDS.alice),
    acl: [
      { allow: 'publish', topics: ['sensors/%u/#', '$queue/orders/+'] },
      { allow: 'subscribe', topics: ['sensors/#'] },
    ],
  },
  {
    username: 'worker',
    passwordHash: await hashPassword(PASSWORDS.worker),
    acl: [
      { allow: 'subscribe', topics: ['$queue/orders/+'] },
      { allow: 'settle', topics: ['$queue/orders/+'] },
    ],
  },
  {
    username: 'peeker',
    passwordHash: await hashPassword(PASSWORDS.peeker),
    acl: [{ allow: 'subscribe', topics: ['$queue/orders/+'] }],
  },
]

type UserName = keyof typeof PASSWORDS

interface LogRecord {
  msg?: string
  clientId?: string
  username?: string | null
  topic?: string
  action?: string
}

/** A server with {@link USERS}, one partition per queue (FIFO), and its warn-level log records. */
async function startAuthServer(t: TestContext, auth: RawConfig = {}, raw: RawConfig = {}) {
  const records: LogRecord[] = []
  const logger = pino(
    { level: 'warn' },
    { write: (line: string) => records.push(JSON.parse(line) as LogRecord) },
  )
  const server = await startTestServer(t, {
    raw: {
      auth: { users: USERS, ...auth },
      queues: { defaults: { partitions: 1, deliveryTimeoutMs: 300, retry: { initialDelayMs: 0 } } },
      ...raw,
    },
    start: { logger },
  })
  const denials = (clientId: string) =>
    records.filter((r) => r.msg === 'not authorized' && r.clientId === clientId)
  return { server, records, denials }
}

function as(user: UserName, options: IClientOptions = {}): IClientOptions {
  return { username: user, password: PASSWORDS[user], clientId: uniqueId(user), ...options }
}

/** Connects and expects the CONNACK to refuse; resolves with its reason code (v5) / return code. */
async function refusedWith(t: TestContext, url: string | number, options: IClientOptions): Promise<number> {
  const brokerUrl = typeof url === 'number' ? `mqtt://127.0.0.1:${url}` : url
  const client = mqtt.connect(brokerUrl, {
    clientId: uniqueId('refused'),
    protocolVersion: 5,
    reconnectPeriod: 0,
    connectTimeout: TIMEOUT_MS,
    ...options,
  })
  t.after(() => client.endAsync(true))
  const err = await within(
    new Promise<Error & { code?: number }>((resolve, reject) => {
      client.once('error', resolve)
      client.once('connect', () => reject(new Error('CONNECT was accepted')))
    }),
    TIMEOUT_MS,
    'a refusing CONNACK',
  )
  assert.equal(typeof err.code, 'number', `error carries the CONNACK code: ${err.message}`)
  return err.code ?? -1
}

/** SUBSCRIBEs to one filter and resolves with the SUBACK's code (granted QoS, or >= 0x80 refused). */
async function subscribeCode(
  client: MqttClient,
  filter: string,
  options: IClientSubscribeOptions = { qos: 1 },
): Promise<number> {
  let granted: unknown[]
  try {
    granted = (await within(client.subscribeAsync(filter, options), TIMEOUT_MS, `SUBACK ${filter}`)).map(
      (g) => g.qos,
    )
  } catch (err) {
    // mqtt.js rejects on a refusing SUBACK and attaches the packet.
    const suback = (err as { packet?: { granted?: unknown[] } }).packet
    if (suback?.granted === undefined) throw err
    granted = suback.granted
  }
  const code = granted[0]
  assert.equal(typeof code, 'number', `SUBACK for ${filter}`)
  return code as number
}

void test('a user with the right password connects (v5 and 3.1.1); a wrong password or unknown user gets 0x86 / return code 4', async (t) => {
  const { server, records } = await startAuthServer(t)
  const port = server.mqttPort
  await connectClient(t, port, as('alice'))
  await connectClient(t, port, as('alice', { protocolVersion: 4 }))

  assert.equal(await refusedWith(t, port, { username: 'alice', password: 'nope' }), BAD_USER_OR_PASSWORD)
  assert.equal(
    await refusedWith(t, port, { username: 'mallory', password: 'alice-pw' }),
    BAD_USER_OR_PASSWORD,
  )
  assert.equal(await refusedWith(t, port, { username: 'alice', password: '' }), BAD_USER_OR_PASSWORD)
  assert.equal(await refusedWith(t, port, { username: 'alice', password: 'nope', protocolVersion: 4 }), 4)
  assert.equal(await refusedWith(t, port, { username: 'mallory', password: 'x', protocolVersion: 4 }), 4)
  assert.ok(records.some((r) => r.msg === 'bad user name or password' && r.username === 'mallory'))
})

void test('anonymous clients: admitted from loopback by default, refused with 0x87 / 5 when allowAnonymous is false', async (t) => {
  const open = await startAuthServer(t)
  await connectClient(t, open.server.mqttPort)
  await connectClient(t, open.server.mqttPort, { protocolVersion: 4 })

  const closed = await startAuthServer(t, { allowAnonymous: false })
  assert.equal(await refusedWith(t, closed.server.mqttPort, {}), NOT_AUTHORIZED)
  assert.equal(await refusedWith(t, closed.server.mqttPort, { protocolVersion: 4 }), 5)
  await connectClient(t, closed.server.mqttPort, as('alice')) // users still get in
})

// Refusal of anonymous clients from non-loopback addresses is covered by the unit tests of the
// address classification (test/unit/auth.test.ts): tests here send traffic to loopback only.

void test('anonymousAcl limits what admitted anonymous clients may do', async (t) => {
  const { server } = await startAuthServer(t, {
    anonymousAcl: [{ allow: 'subscribe', topics: ['public/#'] }],
  })
  const anon = await connectClient(t, server.mqttPort)
  assert.equal(await subscribeCode(anon, 'public/news'), 1)
  assert.equal(await subscribeCode(anon, 'private/x'), NOT_AUTHORIZED)
  assert.equal((await publishOutcome(anon, 'public/news', 'x')).reasonCode, NOT_AUTHORIZED)
})

void test('MQTT 5 ACL denial: PUBACK and SUBACK 0x87, QoS 0 dropped, the connection stays up; each denial logged once', async (t) => {
  const { server, denials } = await startAuthServer(t)
  const admin = await connectClient(t, server.mqttPort, as('admin'))
  const seen = collect(admin)
  assert.equal(await subscribeCode(admin, '#'), 1)
  const alice = await connectClient(t, server.mqttPort, as('alice'))

  const denied = await publishOutcome(alice, 'alerts/x', 'no')
  assert.equal(denied.reasonCode, NOT_AUTHORIZED)
  assert.equal((await publishOutcome(alice, 'sensors/bob/t', 'no')).reasonCode, NOT_AUTHORIZED, '%u is alice')
  assert.equal(await subscribeCode(alice, 'alerts/#'), NOT_AUTHORIZED)
  assert.equal(await subscribeCode(alice, '#'), NOT_AUTHORIZED, 'a filter wider than the grant')
  assert.equal(await subscribeCode(alice, 'sensors/+/t'), 1, 'a filter inside sensors/#')

  // QoS 0: no PUBACK to carry 0x87; the message is dropped. The allowed one after it arrives alone.
  alice.publish('alerts/x', 'dropped', { qos: 0 })
  assert.equal((await publishOutcome(alice, 'sensors/alice/t', 'ok')).reasonCode, 0)
  await waitForCount(admin, seen, 1)
  assert.deepEqual(
    seen.map((m) => [m.topic, m.payload.toString()]),
    [['sensors/alice/t', 'ok']],
  )
  assert.equal(alice.connected, true)

  const log = denials(alice.options.clientId ?? '')
  const summary = log.map((r) => [r.username, r.action, r.topic])
  assert.deepEqual(summary, [
    ['alice', 'publish', 'alerts/x'],
    ['alice', 'publish', 'sensors/bob/t'],
    ['alice', 'subscribe', 'alerts/#'],
    ['alice', 'subscribe', '#'],
    ['alice', 'publish', 'alerts/x'],
  ])
})

void test('$queue/ permissions: a denied publish is not stored, a denied subscribe joins no group, settling needs settle', async (t) => {
  const { server } = await startAuthServer(t)
  const port = server.mqttPort
  const admin = await connectClient(t, port, as('admin'))
  const alice = await connectClient(t, port, as('alice'))

  // 1. alice may publish to $queue/orders/+ but not to another queue; the refused message is not stored.
  const secret = `secret/${uniqueId('q')}`
  const consumer = await connectClient(t, port, as('admin'))
  assert.equal(await subscribeCode(consumer, `$queue/${secret}`), 1)
  assert.equal((await publishOutcome(alice, `$queue/${secret}`, 'refused')).reasonCode, NOT_AUTHORIZED)
  assert.equal((await publishOutcome(admin, `$queue/${secret}`, 'marker')).reasonCode, 0)
  const first = await nextMessage(consumer)
  assert.equal(
    first.payload.toString(),
    'marker',
    'one partition, FIFO: a stored refused message would come first',
  )

  // 2. alice may not subscribe to the queue; worker (same group) gets every message.
  const orders = `orders/${uniqueId('q')}`
  const group = { properties: { userProperties: { 'consumer-group': 'g' } } }
  const aliceSeen = collect(alice)
  assert.equal(await subscribeCode(alice, `$queue/${orders}`, { qos: 1, ...group }), NOT_AUTHORIZED)
  const worker = await connectClient(t, port, as('worker'))
  const workerSeen = collect(worker)
  assert.equal(await subscribeCode(worker, `$queue/${orders}`, { qos: 1, ...group }), 1)
  const acks: Array<Promise<void>> = []
  worker.on('message', (topic, payload, packet) => {
    acks.push(settleOk(worker, orders, '$ack', messageIdOf({ topic, payload, packet })))
  })
  for (const n of [1, 2, 3]) {
    assert.equal((await publishOutcome(alice, `$queue/${orders}`, `job ${n}`)).reasonCode, 0)
  }
  await waitForCount(worker, workerSeen, 3)
  await Promise.all(acks)
  assert.deepEqual(
    workerSeen.map((m) => m.payload.toString()),
    ['job 1', 'job 2', 'job 3'],
  )
  assert.equal(aliceSeen.length, 0)

  // 3. peeker may consume but not settle: its $ack is refused and the message comes back.
  const peeked = `orders/${uniqueId('q')}`
  const peeker = await connectClient(t, port, as('peeker'))
  assert.equal(await subscribeCode(peeker, `$queue/${peeked}`), 1)
  const delivery = nextMessage(peeker)
  assert.equal((await publishOutcome(alice, `$queue/${peeked}`, 'once')).reasonCode, 0)
  const got = await delivery
  const ack = await settle(peeker, peeked, '$ack', messageIdOf(got))
  assert.equal(ack.reasonCode, NOT_AUTHORIZED)
  for (const verb of ['$nack', '$reject', '$extend'] as const) {
    assert.equal((await settle(peeker, peeked, verb, messageIdOf(got))).reasonCode, NOT_AUTHORIZED, verb)
  }
  const again = await nextMessage(peeker) // after deliveryTimeoutMs (300 ms): it was never settled
  assert.equal(messageIdOf(again), messageIdOf(got))
  assert.equal(deliveryCountOf(again), 2)
  assert.equal(peeker.connected, true)
})

void test('MQTT 3.1.1 ACL denial: SUBACK 0x80 and the connection stays; a denied PUBLISH closes it', async (t) => {
  const { server, denials } = await startAuthServer(t)
  const alice = await connectClient(t, server.mqttPort, as('alice', { protocolVersion: 4 }))
  assert.equal(await subscribeCode(alice, 'alerts/#'), 0x80)
  assert.equal(await subscribeCode(alice, 'sensors/#'), 1)
  assert.equal(alice.connected, true)

  const closed = new Promise<void>((resolve) => alice.once('close', () => resolve()))
  alice.publish('alerts/x', 'no', { qos: 1 })
  await within(closed, TIMEOUT_MS, 'the broker to close the 3.1.1 connection')
  assert.deepEqual(
    denials(alice.options.clientId ?? '').map((r) => [r.action, r.topic]),
    [
      ['subscribe', 'alerts/#'],
      ['publish', 'alerts/x'],
    ],
  )
})

void test('a Will Message on a topic the user may not publish to refuses the CONNECT with 0x87', async (t) => {
  const { server } = await startAuthServer(t)
  const will = (topic: string) => ({
    will: { topic, payload: Buffer.from('gone'), qos: 1 as const, retain: false },
  })
  assert.equal(await refusedWith(t, server.mqttPort, as('alice', will('alerts/x'))), NOT_AUTHORIZED)
  assert.equal(
    await refusedWith(t, server.mqttPort, as('alice', { protocolVersion: 4, ...will('alerts/x') })),
    5,
  )
  await connectClient(t, server.mqttPort, as('alice', will('sensors/alice/status')))
})

/** Runs a command to completion with `input` on stdin; killed on `t.after` if still running. */
async function run(t: TestContext, command: string, args: string[], input = '') {
  // mosquitto_pub reads no stdin and may exit before a write to it: only pipe stdin when there is input.
  const child = spawn(command, args, {
    stdio: [input === '' ? 'ignore' : 'pipe', 'pipe', 'pipe'],
  }) as ChildProcessByStdio<Writable | null, Readable, Readable>
  t.after(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill()
  })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()))
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
  child.stdin?.end(input)
  const [code] = (await within(once(child, 'exit'), TIMEOUT_MS * 2, `${command} to exit`)) as [number | null]
  return { code, stdout, stderr }
}

void test('a CLI user: spool passwd hashes the password, spool start reads it from --config, mosquitto_pub -u/-P gets in', async (t) => {
  const passwd = await run(t, process.execPath, [MAIN_JS, 'passwd'], 's3cret pass\n')
  assert.equal(passwd.code, 0, passwd.stderr)
  const passwordHash = passwd.stdout.trim()
  assert.match(passwordHash, /^scrypt\$/)
  assert.doesNotMatch(passwd.stdout + passwd.stderr, /s3cret/)

  const configFile = join(await tempDir(t), 'spool.json')
  const config = {
    auth: {
      allowAnonymous: false,
      users: [{ username: 'ops', passwordHash, acl: [{ allow: 'all', topics: ['cli/#'] }] }],
    },
  }
  await writeFile(configFile, JSON.stringify(config))
  const broker = await spawnBroker(t, ['--config', configFile])
  const topic = `cli/${uniqueId('t')}`
  const sub = await connectClient(t, broker.mqttPort, { username: 'ops', password: 's3cret pass' })
  assert.equal(await subscribeCode(sub, topic), 1)
  const received = nextMessage(sub, topic)

  const mosq = (...args: string[]) =>
    run(t, 'mosquitto_pub', [
      '-V',
      'mqttv5',
      '-h',
      '127.0.0.1',
      '-p',
      String(broker.mqttPort),
      '-q',
      '1',
      ...args,
    ])
  const ok = await mosq('-u', 'ops', '-P', 's3cret pass', '-t', topic, '-m', 'hello')
  assert.equal(ok.code, 0, ok.stderr)
  assert.equal((await received).payload.toString(), 'hello')

  const wrong = await mosq('-u', 'ops', '-P', 'guess', '-t', topic, '-m', 'x')
  assert.notEqual(wrong.code, 0)
  assert.match(wrong.stderr + wrong.stdout, /bad user name or password/i)
  const anonymous = await mosq('-t', topic, '-m', 'x')
  assert.notEqual(anonymous.code, 0)
  assert.match(anonymous.stderr + anonymous.stdout, /not authori[sz]ed/i)
})
