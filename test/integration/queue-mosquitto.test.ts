// Queues with stock MQTT 5 tools and nothing Spool-specific: mosquitto_pub enqueues with a partition
// key, mosquitto_sub consumes and prints the delivery's user properties, against `spool start` as a
// child process.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { runMosquitto } from '../helpers/conformance.js'
import { spawnBroker, uniqueId } from '../helpers/server.js'
import { uniqueQueue } from '../helpers/queues.js'

/** Runs a mosquitto client to completion; killed on `t.after` if it is still running. */

/** `key:value` pairs that mosquitto_sub's `%P` printed, in order. */
function printedProperties(line: string): string[] {
  return line.split(' ').slice(1)
}

void test('mosquitto_pub enqueues with a partition-key; mosquitto_sub consumers of one group get it, then again', async (t) => {
  const broker = await spawnBroker(t)
  const queue = uniqueQueue('mosq')
  const topic = `$queue/${queue}`
  const connection = ['-V', 'mqttv5', '-h', '127.0.0.1', '-p', String(broker.mqttPort)]

  // Published before any consumer exists: the queue keeps it.
  const pub = await runMosquitto(t, 'mosquitto_pub', [
    ...connection,
    '-i',
    uniqueId('mpub'),
    '-t',
    topic,
    '-q',
    '1',
    '-m',
    'hi',
    '-D',
    'publish',
    'user-property',
    'partition-key',
    'k',
  ])
  assert.equal(pub.code, 0, `mosquitto_pub: ${pub.stderr}`)

  // Two consumers of the group `msub` (client id up to the first '-'), one after the other. Neither
  // can settle (mosquitto_sub only PUBACKs), so the first one's exit returns the message at once.
  const consume = () =>
    runMosquitto(t, 'mosquitto_sub', [
      ...connection,
      '-i',
      `msub-${uniqueId()}`,
      '-t',
      topic,
      '-q',
      '1',
      '-C',
      '1',
      '-W',
      '10',
      '-F',
      '%p %P',
    ])
  const first = await consume()
  assert.equal(first.code, 0, `mosquitto_sub: ${first.stderr}`)
  const line = first.stdout.trim()
  assert.match(line, /^hi /, `mosquitto_sub printed: ${line}`)
  const properties = printedProperties(line)
  const partition = properties.find((p) => p.startsWith('partition:'))?.slice('partition:'.length)
  assert.ok(partition !== undefined && /^\d+$/.test(partition), `partition in ${line}`)
  assert.deepEqual(properties, [
    'partition-key:k',
    `message-id:${partition}-1`,
    'group-id:msub',
    `partition:${partition}`,
    'delivery-count:1',
  ])

  const second = await consume()
  assert.equal(second.code, 0, `mosquitto_sub: ${second.stderr}`)
  assert.deepEqual(printedProperties(second.stdout.trim()), [
    'partition-key:k',
    `message-id:${partition}-1`,
    'group-id:msub',
    `partition:${partition}`,
    'delivery-count:2',
  ])
})
