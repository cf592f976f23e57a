// `spool start` as a child process: mosquitto_pub/sub round trip, config errors, SIGTERM.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { createInterface } from 'node:readline'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { IDisconnectPacket } from 'mqtt'
import { connectClient, runMain, spawnBroker, tempDir, TIMEOUT_MS, uniqueId } from '../helpers/server.js'
import { within } from '../helpers/wait.js'

void test('mosquitto_pub -V mqttv5 with a user property reaches mosquitto_sub -F %P through spool', async (t) => {
  const broker = await spawnBroker(t)
  const topic = `cli/${uniqueId()}`
  const port = String(broker.mqttPort)
  // -d prints "received SUBACK" once the subscription is in place: publish only after that.
  // stdbuf -oL: mosquitto_sub block-buffers stdout into a pipe; we need the SUBACK line at once.
  const sub = spawn(
    'stdbuf',
    [
      '-oL',
      'mosquitto_sub',
      '-V',
      'mqttv5',
      '-h',
      '127.0.0.1',
      '-p',
      port,
      '-t',
      topic,
      '-F',
      '%P|%p',
      '-C',
      '1',
      '-W',
      '10',
      '-d',
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  )
  t.after(() => sub.kill())
  const lines = createInterface({ input: sub.stdout })
  const output: string[] = []
  const subscribed = new Promise<void>((resolve) =>
    lines.on('line', (line) => {
      output.push(line)
      if (line.includes('received SUBACK')) resolve()
    }),
  )
  const subExited = new Promise<number | null>((resolve) => sub.once('exit', (code) => resolve(code)))
  await within(subscribed, TIMEOUT_MS, 'mosquitto_sub to subscribe')

  const pub = spawn('mosquitto_pub', [
    '-V',
    'mqttv5',
    '-h',
    '127.0.0.1',
    '-p',
    port,
    '-t',
    topic,
    '-m',
    'hi',
    '-D',
    'publish',
    'user-property',
    'k',
    'v',
  ])
  const pubCode = await within(
    new Promise<number | null>((resolve) => pub.once('exit', (code) => resolve(code))),
    TIMEOUT_MS,
    'mosquitto_pub',
  )
  assert.equal(pubCode, 0)
  assert.equal(await within(subExited, TIMEOUT_MS, 'mosquitto_sub to get the message'), 0)
  assert.ok(output.includes('k:v|hi'), `mosquitto_sub printed: ${output.join('\n')}`)
})

void test('an invalid port exits 2 with one line naming the field and the value', async () => {
  const { code, stderr } = await runMain(['start', '--mqtt-port', 'abc'])
  assert.equal(code, 2)
  assert.equal(stderr, 'spool: invalid config: mqtt.port must be an integer 0-65535, got "abc"\n')
})

void test('an invalid value in the config file or env exits 2 naming the field', async (t) => {
  const dir = await tempDir(t)
  const file = join(dir, 'spool.json')
  await writeFile(file, JSON.stringify({ queues: { defaults: { retry: { factor: 0.5 } } } }))
  const fromFile = await runMain(['start', '--config', file])
  assert.equal(fromFile.code, 2)
  assert.match(
    fromFile.stderr,
    /^spool: invalid config: queues\.defaults\.retry\.factor must be a number >= 1, got 0\.5\n$/,
  )

  const fromEnv = await runMain(['start'], { SPOOL_LOG_LEVEL: 'loud' })
  assert.equal(fromEnv.code, 2)
  assert.match(fromEnv.stderr, /log\.level must be one of .*, got "loud"/)

  const unknownFlag = await runMain(['start', '--mqtt-prot', '1'])
  assert.equal(unknownFlag.code, 2)
  assert.match(unknownFlag.stderr, /^spool: Unknown option '--mqtt-prot'/)
})

void test('SIGTERM: v5 clients get DISCONNECT 0x8B, 3.1.1 clients are closed, exit code 0', async (t) => {
  const broker = await spawnBroker(t)
  const v5 = await connectClient(t, broker.mqttPort, { protocolVersion: 5 })
  const v4 = await connectClient(t, broker.mqttPort, { protocolVersion: 4 })
  const disconnect = within(
    new Promise<IDisconnectPacket>((resolve) => v5.once('disconnect', resolve)),
    TIMEOUT_MS,
    'DISCONNECT for the v5 client',
  )
  const v4Closed = within(
    new Promise<void>((resolve) => v4.once('close', () => resolve())),
    TIMEOUT_MS,
    'the 3.1.1 connection to close',
  )
  broker.child.kill('SIGTERM')
  assert.equal((await disconnect).reasonCode, 0x8b)
  await v4Closed
  assert.equal(await within(broker.exited, 12_000, 'spool to exit'), 0)
  assert.ok(broker.lines.some((l) => l.includes('"msg":"spool stopped"')))
})
