// The operator CLI (`spool queues|dlq|groups|cluster`) as a child process against `spool start` as
// another child process: aligned tables by default, the API's JSON with --json, exit 1 with the API's
// error, exit 2 on usage errors. The queue is filled and drained by a real mqtt.js client.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { DeadLetterView, QueueView } from '../../src/admin/service.js'
import { TEST_ADMIN_TOKEN } from '../helpers/admin.js'
import {
  collect,
  connectClient,
  runMain,
  spawnBroker,
  tempDir,
  uniqueId,
  waitForCount,
} from '../helpers/server.js'
import { messageIdOf, settleOk, subscribeQueue, uniqueQueue } from '../helpers/queues.js'

/** Column start offsets of a table's header line, by column name. */
function columns(header: string): Map<string, number> {
  return new Map([...header.matchAll(/\S+/g)].map((match) => [match[0], match.index]))
}

/** The table line whose first cell is `first`. */
function rowOf(output: string, first: string): string {
  const row = output.split('\n').find((line) => line.split(/\s+/)[0] === first)
  assert.ok(row !== undefined, `no row for ${first} in:\n${output}`)
  return row
}

void test('spool queues/groups/dlq/cluster against a running broker: tables, --json, errors, exit codes', async (t) => {
  const configFile = join(await tempDir(t), 'spool.json')
  await writeFile(configFile, JSON.stringify({ admin: { token: TEST_ADMIN_TOKEN } }))
  const broker = await spawnBroker(t, ['--config', configFile, '--node-id', 'cli-node'])
  const env = { SPOOL_URL: `http://127.0.0.1:${broker.httpPort}`, SPOOL_ADMIN_TOKEN: TEST_ADMIN_TOKEN }
  const spool = async (...args: string[]) => {
    const result = await runMain(args, env)
    return { ...result, stdout: result.stdout.trimEnd() }
  }

  // A queue with 4 messages, a consumer group holding 1 in flight, and 1 rejected into the DLQ.
  const queue = uniqueQueue('cli')
  const group = uniqueId('g')
  const consumerId = uniqueId('worker')
  const publisher = await connectClient(t, broker.mqttPort)
  for (const n of [1, 2, 3, 4]) {
    await publisher.publishAsync(`$queue/${queue}`, `job-${n}`, {
      qos: 1,
      properties: { userProperties: { 'partition-key': 'one' } },
    })
  }
  const consumer = await connectClient(t, broker.mqttPort, { clientId: consumerId })
  const received = collect(consumer)
  await subscribeQueue(consumer, queue, group)
  await waitForCount(consumer, received, 1)
  await settleOk(consumer, queue, '$reject', messageIdOf(received[0]!), { reason: 'bad input' })
  await waitForCount(consumer, received, 2) // the next one, now in flight

  const list = await spool('queues', 'list')
  assert.equal(list.code, 0, list.stderr)
  const [header, ...rows] = list.stdout.split('\n')
  assert.match(
    header ?? '',
    /^QUEUE\s+DEPTH\s+INFLIGHT\s+CONSUMERS\s+GROUPS\s+DEAD-LETTERS\s+PARTITIONS\s+ORDERING$/,
  )
  const at = columns(header!)
  const row = rowOf(list.stdout, queue)
  // Numbers are right-aligned under their header: they end where the header word ends.
  const depthEnd = at.get('DEPTH')! + 'DEPTH'.length
  assert.equal(row.slice(at.get('DEPTH'), depthEnd).trim(), '3')
  assert.equal(row[depthEnd - 1], '3')
  assert.equal(row.slice(at.get('DEAD-LETTERS'), at.get('DEAD-LETTERS')! + 12).trim(), '1')
  assert.equal(row.slice(at.get('ORDERING')), 'partition')
  assert.ok(
    rows.some((line) => line.startsWith(`dlq/${queue} `)),
    list.stdout,
  )

  const listJson = await spool('queues', 'list', '--json')
  assert.equal(listJson.code, 0, listJson.stderr)
  const queues = (JSON.parse(listJson.stdout) as { queues: QueueView[] }).queues
  const view = queues.find((q) => q.name === queue)
  assert.equal(view?.depth, 3)
  assert.equal(view?.inflight, 1)
  assert.equal(view?.deadLetters, 1)

  const stats = await spool('queues', 'stats', queue)
  assert.equal(stats.code, 0, stats.stderr)
  assert.match(stats.stdout, new RegExp(`^queue: +${queue}$`, 'm'))
  assert.match(stats.stdout, /^depth: +3$/m)
  assert.match(stats.stdout, /^dead letters: +1$/m)
  assert.match(stats.stdout, /^GROUP\s+BACKLOG\s+INFLIGHT\s+CONSUMERS\s+LAST ACTIVE\s+EXPIRES$/m)
  assert.match(rowOf(stats.stdout, group), new RegExp(`^${group}\\s+3\\s+1\\s+${consumerId}\\s+now\\s+-$`))

  const groups = await spool('groups', queue)
  assert.equal(groups.code, 0, groups.stderr)
  assert.match(rowOf(groups.stdout, group), new RegExp(`^${group}\\s+3\\s+1\\s+${consumerId}\\s+now\\s+-$`))
  const groupsJson = JSON.parse((await spool('groups', queue, '--json')).stdout) as {
    groups: Array<{ lastActiveAtMs: number }>
  }
  const lastActiveAtMs = groupsJson.groups[0]?.lastActiveAtMs ?? 0
  assert.ok(Math.abs(lastActiveAtMs - Date.now()) < 60_000, 'active now')
  assert.deepEqual(groupsJson, {
    groups: [
      {
        name: group,
        consumers: [consumerId],
        backlog: 3,
        inflight: 1,
        implicit: false,
        lastActiveAtMs,
        expiresAtMs: null,
      },
    ],
  })

  const dlq = await spool('dlq', 'list', queue)
  assert.equal(dlq.code, 0, dlq.stderr)
  assert.match(
    dlq.stdout.split('\n')[0] ?? '',
    /^ID\s+DEAD-LETTERED\s+REASON\s+GROUP\s+ORIGINAL-ID\s+DELIVERIES\s+REJECT-REASON\s+PAYLOAD$/,
  )
  const letters = (
    JSON.parse((await spool('dlq', 'list', queue, '--json')).stdout) as { messages: DeadLetterView[] }
  ).messages
  assert.equal(letters.length, 1)
  const letter = letters[0]!
  assert.match(
    rowOf(dlq.stdout, letter.id),
    new RegExp(
      `^${letter.id}\\s+\\S+Z\\s+rejected\\s+${group}\\s+${messageIdOf(received[0]!)}\\s+1\\s+bad input\\s+job-1$`,
    ),
  )

  // Redrive by id: job-1 goes back to the end of its partition; the consumer gets it after job-2..4.
  const redrive = await spool('dlq', 'redrive', queue, '--id', letter.id)
  assert.equal(redrive.code, 0, redrive.stderr)
  assert.equal(redrive.stdout, `redrove 1 dead letter back to ${queue}`)
  const emptied = await spool('dlq', 'list', queue)
  assert.equal(emptied.stdout, `no dead letters for ${queue}`, emptied.stderr)
  for (let n = 2; n <= 4; n++) {
    await settleOk(consumer, queue, '$ack', messageIdOf(received[n - 1]!))
    await waitForCount(consumer, received, n + 1)
  }
  assert.deepEqual(
    received.map((r) => r.payload.toString()),
    ['job-1', 'job-2', 'job-3', 'job-4', 'job-1'],
  )

  const cluster = await spool('cluster')
  assert.equal(cluster.code, 0, cluster.stderr)
  assert.match(cluster.stdout, /^mode: single$/m)
  assert.match(rowOf(cluster.stdout, 'cli-node'), /^cli-node\s+yes$/)
  assert.deepEqual(JSON.parse((await spool('cluster', '--json')).stdout), {
    mode: 'single',
    nodes: [{ id: 'cli-node', self: true }],
  })

  // Purge with the consumer gone.
  await consumer.endAsync()
  const purge = await spool('queues', 'purge', queue, '--json')
  assert.equal(purge.code, 0, purge.stderr)
  assert.equal(typeof (JSON.parse(purge.stdout) as { purged: number }).purged, 'number')
  assert.match((await spool('queues', 'stats', queue)).stdout, /^depth: +0$/m)

  // API errors: exit 1 with the code and message on stderr, nothing on stdout.
  const notFound = await spool('queues', 'stats', 'no/such')
  assert.equal(notFound.code, 1)
  assert.equal(notFound.stdout, '')
  assert.match(notFound.stderr, /^spool: QUEUE_NOT_FOUND: queue no\/such does not exist\n$/)
  const noToken = await runMain(['queues', 'list'], { SPOOL_URL: env.SPOOL_URL, SPOOL_ADMIN_TOKEN: '' })
  assert.equal(noToken.code, 1)
  assert.match(noToken.stderr, /UNAUTHORIZED/)
  const wrongToken = await runMain(['queues', 'list', '--url', env.SPOOL_URL, '--token', 'nope'], {
    SPOOL_ADMIN_TOKEN: '',
  })
  assert.equal(wrongToken.code, 1)
  assert.match(wrongToken.stderr, /UNAUTHORIZED: wrong bearer token/)
})

void test('spool admin commands: usage errors exit 2, an unreachable broker exits 1', async () => {
  for (const args of [
    ['queues'],
    ['queues', 'stats'],
    ['queues', 'list', 'extra'],
    ['dlq', 'list', 'q', '--limit', '0'],
    ['dlq', 'redrive', 'q', '--rate', 'fast'],
    ['dlq', 'redrive', 'q', '--id', '0-1', '--limit', '2'],
    ['groups', 'q', '--id', '0-1'],
    ['cluster', '--bogus'],
    ['queues', 'list', '--url', 'ftp://x'],
  ]) {
    const result = await runMain(args, { SPOOL_URL: 'http://127.0.0.1:9' })
    assert.equal(result.code, 2, `${args.join(' ')}: ${result.stderr}`)
    assert.match(result.stderr, /^spool: .+\nusage: spool queues list/, args.join(' '))
  }
  const help = await runMain(['dlq', '--help'])
  assert.equal(help.code, 0)
  assert.match(help.stdout, /spool dlq redrive <queue> \[--id ID \| --limit N\] \[--rate N\]/)
  // A port nothing listens on (the discard port is refused by fetch outright; either way: exit 1).
  const unreachable = await runMain(['cluster', '--url', 'http://127.0.0.1:39999'])
  assert.equal(unreachable.code, 1)
  assert.match(unreachable.stderr, /^spool: UNREACHABLE: cannot reach http:\/\/127\.0\.0\.1:39999: /)
})
