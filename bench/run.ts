/**
 * `npm run bench`: Spool's durable queue against plain aedes 2.0.0-beta.1 QoS 1 pub/sub, in the same
 * invocation, alternating A B A B over ROUNDS rounds, medians reported. Loopback only; every run is
 * bounded by a message count and a time limit. Lost and duplicate counts are checked in every run.
 *
 * Environment: BENCH_MESSAGES (default 20000), BENCH_ROUNDS (default 3).
 */
import { writeFile, mkdtemp } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { MqttClient } from 'mqtt'
import {
  connect,
  endAll,
  median,
  publishMany,
  startPlainAedes,
  startSpool,
  type BrokerProcess,
} from './harness.js'

const MESSAGES = Number(process.env.BENCH_MESSAGES ?? 20_000)
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3)
const TIME_LIMIT_MS = 120_000
const PAYLOAD = Buffer.alloc(256, 'x')
const WINDOW = 500

interface Result {
  msgsPerSec: number
  lost: number
  duplicates: number
}

/** Durable enqueue (Spool) vs QoS 1 publish with no subscriber (aedes). */
async function enqueueOnly(broker: BrokerProcess, topic: string, publishers: number): Promise<Result> {
  const clients = await Promise.all(Array.from({ length: publishers }, () => connect(broker.port)))
  const perPublisher = Math.floor(MESSAGES / publishers)
  const started = performance.now()
  await Promise.all(
    clients.map((client) => publishMany(client, topic, perPublisher, PAYLOAD, WINDOW, TIME_LIMIT_MS)),
  )
  const seconds = (performance.now() - started) / 1000
  await endAll(clients)
  return { msgsPerSec: (perPublisher * publishers) / seconds, lost: 0, duplicates: 0 }
}

/** Spool: publish -> deliver -> $ack with `consumers` consumers of one group. */
async function spoolPublishToAck(broker: BrokerProcess, queue: string, consumers: number): Promise<Result> {
  const seen = new Map<string, number>()
  let acked = 0
  let done: () => void = () => undefined
  const allAcked = new Promise<void>((resolve) => (done = resolve))
  const consumerClients: MqttClient[] = []
  for (let i = 0; i < consumers; i++) {
    const client = await connect(broker.port, { properties: { receiveMaximum: 1000 } })
    client.on('message', (_topic, payload, packet) => {
      const id = packet.properties?.userProperties?.['message-id']
      const key = payload.toString('utf8', 0, 12)
      seen.set(key, (seen.get(key) ?? 0) + 1)
      client.publish(
        `$queue/${queue}/$ack`,
        '',
        { qos: 1, properties: { userProperties: { 'message-id': String(id) } } },
        (error) => {
          if (error) throw error
          if (++acked === MESSAGES) done()
        },
      )
    })
    await client.subscribeAsync(`$queue/${queue}`, {
      qos: 1,
      properties: { userProperties: { 'consumer-group': 'bench' } },
    })
    consumerClients.push(client)
  }
  const publisher = await connect(broker.port)
  const started = performance.now()
  const payloadOf = (index: number) => Buffer.concat([Buffer.from(String(index).padStart(12, '0')), PAYLOAD])
  await publishManyIndexed(publisher, `$queue/${queue}`, payloadOf)
  await withTimeout(allAcked, TIME_LIMIT_MS, `${MESSAGES} acks`)
  const seconds = (performance.now() - started) / 1000
  await endAll([publisher, ...consumerClients])
  return tally(seen, seconds)
}

/** aedes: QoS 1 pub/sub; with several consumers each gets its own topic, round robin. */
async function aedesPubSub(broker: BrokerProcess, consumers: number): Promise<Result> {
  const seen = new Map<string, number>()
  let received = 0
  let done: () => void = () => undefined
  const allReceived = new Promise<void>((resolve) => (done = resolve))
  const consumerClients: MqttClient[] = []
  for (let i = 0; i < consumers; i++) {
    const client = await connect(broker.port)
    client.on('message', (_topic, payload) => {
      const key = payload.toString('utf8', 0, 12)
      seen.set(key, (seen.get(key) ?? 0) + 1)
      if (++received === MESSAGES) done()
    })
    await client.subscribeAsync(`bench/sub/${i}`, { qos: 1 })
    consumerClients.push(client)
  }
  const publisher = await connect(broker.port)
  const started = performance.now()
  const payloadOf = (index: number) => Buffer.concat([Buffer.from(String(index).padStart(12, '0')), PAYLOAD])
  await publishManyIndexed(publisher, (index) => `bench/sub/${index % consumers}`, payloadOf)
  await withTimeout(allReceived, TIME_LIMIT_MS, `${MESSAGES} deliveries`)
  const seconds = (performance.now() - started) / 1000
  await endAll([publisher, ...consumerClients])
  return tally(seen, seconds)
}

function publishManyIndexed(
  client: MqttClient,
  topic: string | ((index: number) => string),
  payloadOf: (index: number) => Buffer,
): Promise<void> {
  return new Promise((resolve, reject) => {
    let sent = 0
    let acked = 0
    const sendMore = (): void => {
      while (sent < MESSAGES && sent - acked < WINDOW) {
        const index = sent++
        const name = typeof topic === 'string' ? topic : topic(index)
        client.publish(name, payloadOf(index), { qos: 1 }, (error) => {
          if (error) return reject(error)
          if (++acked === MESSAGES) resolve()
          else sendMore()
        })
      }
    }
    sendMore()
  })
}

function tally(seen: Map<string, number>, seconds: number): Result {
  let duplicates = 0
  for (const count of seen.values()) duplicates += count - 1
  return { msgsPerSec: MESSAGES / seconds, lost: MESSAGES - seen.size, duplicates }
}

async function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  try {
    return await Promise.race([
      promise,
      new Promise<never>(
        (_, reject) => (timer = setTimeout(() => reject(new Error(`timed out: ${what}`)), ms)),
      ),
    ])
  } finally {
    clearTimeout(timer)
  }
}

interface Scenario {
  name: string
  spool: (broker: BrokerProcess, round: number) => Promise<Result>
  aedes: (broker: BrokerProcess) => Promise<Result>
}

const scenarios: Scenario[] = [
  {
    name: 'enqueue only, 1 publisher',
    spool: (b, r) => enqueueOnly(b, `$queue/enq-1-${r}`, 1),
    aedes: (b) => enqueueOnly(b, 'bench/enq', 1),
  },
  {
    name: 'enqueue only, 8 publishers',
    spool: (b, r) => enqueueOnly(b, `$queue/enq-8-${r}`, 8),
    aedes: (b) => enqueueOnly(b, 'bench/enq', 8),
  },
  {
    name: 'publish->ack, 1 consumer, ordering none',
    spool: (b, r) => spoolPublishToAck(b, `none-1-${r}`, 1),
    aedes: (b) => aedesPubSub(b, 1),
  },
  {
    name: 'publish->ack, 4 consumers, ordering none',
    spool: (b, r) => spoolPublishToAck(b, `none-4-${r}`, 4),
    aedes: (b) => aedesPubSub(b, 4),
  },
  {
    name: 'publish->ack, 4 consumers, ordering partition',
    spool: (b, r) => spoolPublishToAck(b, `part-4-${r}`, 4),
    aedes: (b) => aedesPubSub(b, 4),
  },
]

async function spoolConfigFile(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'spool-bench-config-'))
  const file = join(dir, 'spool.json')
  const declared: Record<string, object> = {}
  for (let round = 0; round < ROUNDS; round++) {
    for (const consumers of [1, 4]) declared[`none-${consumers}-${round}`] = { ordering: 'none' }
  }
  await writeFile(file, JSON.stringify({ queues: { declared } }))
  return file
}

async function main(): Promise<void> {
  const configFile = await spoolConfigFile()
  const spool = await startSpool(['--config', configFile])
  const aedes = await startPlainAedes()
  const rows: string[] = []
  try {
    for (const scenario of scenarios) {
      const spoolRuns: Result[] = []
      const aedesRuns: Result[] = []
      for (let round = 0; round < ROUNDS; round++) {
        spoolRuns.push(await scenario.spool(spool, round))
        aedesRuns.push(await scenario.aedes(aedes))
      }
      const spoolRate = median(spoolRuns.map((run) => run.msgsPerSec))
      const aedesRate = median(aedesRuns.map((run) => run.msgsPerSec))
      const lost = spoolRuns.reduce((n, run) => n + run.lost, 0)
      const duplicates = spoolRuns.reduce((n, run) => n + run.duplicates, 0)
      const aedesLost = aedesRuns.reduce((n, run) => n + run.lost, 0)
      rows.push(
        `| ${scenario.name} | ${Math.round(spoolRate)} | ${Math.round(aedesRate)} | ${(spoolRate / aedesRate).toFixed(2)} | ${lost}/${duplicates} | ${aedesLost} |`,
      )
      process.stderr.write(`${rows.at(-1)}\n`)
    }
  } finally {
    await spool.stop()
    await aedes.stop()
  }
  process.stdout.write(
    [
      `${MESSAGES} messages of 256 B per run, ${ROUNDS} rounds (A B alternating), medians; loopback; window ${WINDOW}`,
      '',
      '| scenario | Spool msg/s | aedes msg/s | ratio | Spool lost/dup | aedes lost |',
      '| --- | ---: | ---: | ---: | ---: | ---: |',
      ...rows,
      '',
    ].join('\n'),
  )
}

await main()
