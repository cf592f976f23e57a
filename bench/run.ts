/**
 * `npm run bench`: Spool against plain aedes 2.0.0-beta.1 and Debian's mosquitto, the same scenarios
 * in one invocation, brokers alternating A B C in every round, medians over the rounds. Clients are
 * mqtt.js (MQTT 5) in several forked load processes (bench/load.ts), on loopback only; every run is
 * bounded by its message count and a time limit, and every result has its lost and duplicate counts.
 * The result is printed as markdown tables on stdout (progress goes to stderr).
 *
 * Environment (all optional):
 *   BENCH_ONLY             comma-separated groups or scenario ids: enqueue, ack, payload, latency, depth,
 *                          cluster (bench/cluster.ts: single node vs 3 nodes, its own BENCH_CLUSTER_* sizes)
 *   BENCH_ROUNDS           rounds per scenario (3)
 *   BENCH_MESSAGES         messages per throughput run (100000)
 *   BENCH_MESSAGES_64K     messages per 64 KiB run (5000)
 *   BENCH_LATENCY_SECONDS  length of each latency run (10)
 *   BENCH_DEPTH            messages of the queue-depth scenario (1000000)
 *   BENCH_PROCS            load processes (4)
 *   BENCH_ACK_PUBLISHERS   publishers in the publish->ack, payload and latency scenarios (2)
 *   BENCH_WINDOW           unacknowledged publishes per publisher (500)
 *   BENCH_TIME_LIMIT_MS    time limit of one run (120000)
 *   BENCH_CPU_PROF         a directory: run the Node brokers with --cpu-prof, profiles written there
 *   BENCH_MOSQUITTO        path of the mosquitto binary (/usr/sbin/mosquitto)
 */
import { execFileSync } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { cpus, loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import mqtt from 'mqtt'
import {
  cpuSecondsOf,
  directoryBytes,
  machineCpu,
  httpJson,
  httpText,
  median,
  memoryOf,
  metricValue,
  mosquittoInstalled,
  MOSQUITTO_BIN,
  quantile,
  sleep,
  startMosquitto,
  startPlainAedes,
  startSpool,
  startSpoolTimed,
  withTimeout,
  type BrokerName,
  type BrokerProcess,
} from './harness.js'
import { runClusterBench } from './cluster.js'
import { LoadPool, type ConsumerSpec, type LoadResult, type LoadSpec } from './load.js'

const env = (name: string, fallback: number): number => {
  const value = Number(process.env[name] ?? fallback)
  if (!Number.isFinite(value) || value < 0) throw new Error(`${name} must be a non-negative number`)
  return value
}

const ROUNDS = env('BENCH_ROUNDS', 3)
const MESSAGES = env('BENCH_MESSAGES', 100_000)
const MESSAGES_64K = env('BENCH_MESSAGES_64K', 5_000)
const LATENCY_SECONDS = env('BENCH_LATENCY_SECONDS', 10)
const DEPTH = env('BENCH_DEPTH', 1_000_000)
const PROCS = Math.max(1, env('BENCH_PROCS', 4))
const ACK_PUBLISHERS = Math.max(1, env('BENCH_ACK_PUBLISHERS', 2))
const WINDOW = Math.max(1, env('BENCH_WINDOW', 500))
const TIME_LIMIT_MS = env('BENCH_TIME_LIMIT_MS', 120_000)
const ONLY = (process.env.BENCH_ONLY ?? '')
  .split(',')
  .map((s) => s.trim())
  .filter((s) => s !== '')
const CPU_PROF_DIR = process.env.BENCH_CPU_PROF
/** Unsettled deliveries a Spool consumer may hold (queue setting and the consumer's Receive Maximum). */
const CONSUMER_INFLIGHT = 1000

type Group = 'enqueue' | 'ack' | 'payload'

interface Scenario {
  id: string
  group: Group
  title: string
  messages: number
  payloadBytes: number
  publishers: number
  consumers: number
  /** Settings of the Spool queue (config `queues.declared`). */
  settings: Record<string, unknown>
}

const none = { ordering: 'none', maxInflightPerConsumer: CONSUMER_INFLIGHT }
const partition = { ordering: 'partition' }

const scenarios: Scenario[] = [
  ...[1, 50].flatMap((publishers) =>
    [false, true].map((sync): Scenario => ({
      id: `enqueue-${publishers}-${sync ? 'sync' : 'nosync'}`,
      group: 'enqueue',
      title: `enqueue only, ${publishers} publisher${publishers > 1 ? 's' : ''}, sync: ${sync}`,
      messages: MESSAGES,
      payloadBytes: 256,
      publishers,
      consumers: 0,
      settings: { durability: { sync } },
    })),
  ),
  ...(['none', 'partition'] as const).flatMap((ordering) =>
    [1, 4, 16].map((consumers): Scenario => ({
      id: `ack-${ordering}-${consumers}`,
      group: 'ack',
      title: `publish->ack, ${consumers} consumer${consumers > 1 ? 's' : ''}, ordering ${ordering}`,
      messages: MESSAGES,
      payloadBytes: 256,
      publishers: ACK_PUBLISHERS,
      consumers,
      settings: ordering === 'none' ? none : partition,
    })),
  ),
  ...[
    { bytes: 1024, label: '1 KiB', messages: MESSAGES },
    { bytes: 65536, label: '64 KiB', messages: MESSAGES_64K },
  ].map(({ bytes, label, messages }): Scenario => ({
    id: `payload-${bytes}`,
    group: 'payload',
    title: `publish->ack ${label}, 4 consumers, ordering none`,
    messages,
    payloadBytes: bytes,
    publishers: ACK_PUBLISHERS,
    consumers: 4,
    settings: none,
  })),
]

/** The scenario whose maximum sets the rate of the latency runs (half of it). */
const LATENCY_BASE = scenarios.find((s) => s.id === 'ack-none-4')!

const selected = (group: string, id?: string): boolean =>
  ONLY.length === 0 || ONLY.includes(group) || (id !== undefined && ONLY.includes(id))

const queueName = (scenario: string, round: number): string => `bench/${scenario}/${round}`

function log(line: string): void {
  process.stderr.write(`${line}\n`)
}

// ---- load specs per broker ----

function loadFor(broker: BrokerProcess, scenario: Scenario, round: number, ratePerSec = 0): LoadSpec {
  const base = {
    port: broker.port,
    messages: scenario.messages,
    payloadBytes: scenario.payloadBytes,
    publishers: scenario.publishers,
    window: WINDOW,
    ratePerSec,
    recordLatency: ratePerSec > 0,
    timeLimitMs: TIME_LIMIT_MS,
  }
  const consumers = (make: (i: number) => ConsumerSpec): ConsumerSpec[] =>
    Array.from({ length: scenario.consumers }, (_, i) => make(i))
  if (broker.name === 'spool') {
    const queue = queueName(scenario.id, round)
    return {
      ...base,
      topic: `$queue/${queue}`,
      spreadTopics: 0,
      consumers: consumers(() => ({
        filter: `$queue/${queue}`,
        userProperties: { 'consumer-group': 'bench' },
        ackTopic: `$queue/${queue}/$ack`,
        receiveMaximum: CONSUMER_INFLIGHT,
      })),
    }
  }
  const topic = `bench/${scenario.id}/${round}`
  if (broker.name === 'aedes') {
    // Plain aedes has no shared subscriptions: one topic per consumer, published round robin.
    return {
      ...base,
      topic,
      spreadTopics: scenario.consumers,
      consumers: consumers((i) => ({ filter: `${topic}/${i}`, ackTopic: null, receiveMaximum: 65535 })),
    }
  }
  // mosquitto: a `$share/` group when there are several consumers.
  return {
    ...base,
    topic,
    spreadTopics: 0,
    consumers: consumers(() => ({
      filter: scenario.consumers > 1 ? `$share/bench/${topic}` : topic,
      ackTopic: null,
      receiveMaximum: 65535,
    })),
  }
}

interface RunOutcome {
  result: LoadResult | null
  error: string | null
  /** Broker CPU while the load ran, in cores (1 = one core busy; Spool's LevelDB threads add to it). */
  brokerCores: number
  /** Share of the machine's CPU time (all cores) that was idle while the load ran. */
  machineIdle: number
}

async function runOnce(
  pool: LoadPool,
  broker: BrokerProcess,
  scenario: Scenario,
  round: number,
  ratePerSec = 0,
): Promise<RunOutcome> {
  let brokerCores = NaN
  let machineIdle = NaN
  let before = { broker: 0, machine: machineCpu(), at: 0 }
  const phase = (at: 'go' | 'done') => {
    const now = { broker: cpuSecondsOf(broker.pid), machine: machineCpu(), at: performance.now() }
    if (at === 'go') before = now
    else {
      brokerCores = (now.broker - before.broker) / ((now.at - before.at) / 1000)
      machineIdle = (now.machine.idle - before.machine.idle) / (now.machine.total - before.machine.total)
    }
  }
  try {
    const result = await pool.run(loadFor(broker, scenario, round, ratePerSec), phase)
    if (broker.name === 'spool') await checkSpoolQueue(broker, scenario, round, result)
    if (result.errors.length > 0) log(`  ${broker.name}: ${result.errors.join('; ')}`)
    return { result, error: null, brokerCores, machineIdle }
  } catch (error) {
    const text = error instanceof Error ? error.message : String(error)
    log(`  ${broker.name} ${scenario.id} round ${round}: FAILED ${text}`)
    return { result: null, error: text, brokerCores, machineIdle }
  }
}

/**
 * Enqueue-only runs: the queue must hold exactly the acknowledged messages (a shortfall is lost, an
 * excess duplicated). Every Spool queue is deleted afterwards so the store stays small.
 */
async function checkSpoolQueue(
  broker: BrokerProcess,
  scenario: Scenario,
  round: number,
  result: LoadResult,
): Promise<void> {
  const path = `/api/v1/queues/${encodeURIComponent(queueName(scenario.id, round))}`
  if (scenario.consumers === 0) {
    const queue = (await httpJson(broker.httpPort!, 'GET', path)) as { depth: number }
    result.lost += Math.max(0, result.published - queue.depth)
    result.duplicates += Math.max(0, queue.depth - result.published)
  }
  // The broker may still count the consumers that just disconnected as online: retry for a while.
  for (let attempt = 1; ; attempt++) {
    try {
      await httpJson(broker.httpPort!, 'DELETE', path)
      return
    } catch (error) {
      if (attempt === 20) {
        log(`  could not delete ${path}: ${error instanceof Error ? error.message : String(error)}`)
        return
      }
      await sleep(100)
    }
  }
}

// ---- formatting ----

const fmt = (value: number): string => (Number.isFinite(value) ? String(Math.round(value)) : 'n/a')
const ratio = (a: number, b: number): string =>
  Number.isFinite(a) && Number.isFinite(b) && b > 0 ? (a / b).toFixed(2) : 'n/a'
const ms = (us: number): string => (Number.isFinite(us) ? (us / 1000).toFixed(2) : 'n/a')
const mib = (bytes: number): string => (bytes / 2 ** 20).toFixed(1)

function lostDup(outcomes: RunOutcome[]): string {
  if (outcomes.length === 0) return 'n/a'
  const failed = outcomes.filter((o) => o.result === null).length
  const lost = outcomes.reduce((n, o) => n + (o.result?.lost ?? 0), 0)
  const dup = outcomes.reduce((n, o) => n + (o.result?.duplicates ?? 0), 0)
  const timedOut = outcomes.some((o) => o.result?.timedOut === true)
  return `${lost}/${dup}${timedOut ? ' (timeout)' : ''}${failed > 0 ? ` (${failed} failed)` : ''}`
}

const rate = (outcomes: RunOutcome[]): number =>
  median(outcomes.filter((o) => o.result !== null && !o.result.timedOut).map((o) => o.result!.msgsPerSec))

// ---- main ----

interface Brokers {
  list: BrokerProcess[]
  byName: Map<BrokerName, BrokerProcess>
}

async function spoolConfigFile(dir: string, rounds: number): Promise<string> {
  const declared: Record<string, object> = {}
  for (const scenario of scenarios) {
    for (let round = 0; round < rounds; round++) {
      declared[queueName(scenario.id, round)] = { ...scenario.settings, maxDepth: 10_000_000 }
    }
    declared[queueName(`${scenario.id}-probe`, 0)] = { ...scenario.settings, maxDepth: 10_000_000 }
  }
  for (let round = 0; round < rounds; round++) {
    declared[queueName('latency', round)] = { ...LATENCY_BASE.settings, maxDepth: 10_000_000 }
  }
  declared[queueName('warmup', 0)] = { ...LATENCY_BASE.settings, maxDepth: 10_000_000 }
  declared['bench/depth'] = { maxDepth: Math.max(DEPTH * 2, 100_000) }
  const file = join(dir, 'spool.json')
  await writeFile(file, JSON.stringify({ queues: { declared } }, null, 2))
  return file
}

function profileFlags(name: string): string[] {
  return CPU_PROF_DIR === undefined
    ? []
    : ['--cpu-prof', '--cpu-prof-dir', CPU_PROF_DIR, '--cpu-prof-name', `${name}-${Date.now()}.cpuprofile`]
}

async function startBrokers(configFile: string): Promise<Brokers> {
  const list: BrokerProcess[] = [
    await startSpool({ configFile, nodeFlags: profileFlags('spool') }),
    await startPlainAedes(profileFlags('aedes')),
  ]
  if (mosquittoInstalled()) list.push(await startMosquitto())
  return { list, byName: new Map(list.map((b) => [b.name, b])) }
}

async function throughputScenarios(
  pool: LoadPool,
  brokers: Brokers,
  out: string[],
): Promise<Map<string, Map<BrokerName, number>>> {
  const maxima = new Map<string, Map<BrokerName, number>>()
  const chosen = scenarios.filter((s) => selected(s.group, s.id))
  if (chosen.length === 0) return maxima
  const rows: string[] = []
  const cpuRows: string[] = []
  for (const scenario of chosen) {
    const outcomes = new Map<BrokerName, RunOutcome[]>(brokers.list.map((b) => [b.name, []]))
    for (let round = 0; round < ROUNDS; round++) {
      for (const broker of brokers.list) {
        const outcome = await runOnce(pool, broker, scenario, round)
        outcomes.get(broker.name)!.push(outcome)
        log(
          `${scenario.id} round ${round} ${broker.name}: ${fmt(outcome.result?.msgsPerSec ?? NaN)} msg/s, ` +
            `lost ${outcome.result?.lost ?? '?'}, dup ${outcome.result?.duplicates ?? '?'}`,
        )
      }
    }
    const medians = new Map<BrokerName, number>()
    for (const [name, list] of outcomes) medians.set(name, rate(list))
    maxima.set(scenario.id, medians)
    const s = medians.get('spool') ?? NaN
    const a = medians.get('aedes') ?? NaN
    const m = medians.get('mosquitto') ?? NaN
    const ld = (name: BrokerName) => lostDup(outcomes.get(name) ?? [])
    rows.push(
      `| ${scenario.title} | ${fmt(s)} | ${fmt(a)} | ${fmt(m)} | ${ratio(s, a)} | ${ratio(s, m)} | ` +
        `${ld('spool')} | ${ld('aedes')} | ${ld('mosquitto')} |`,
    )
    log(rows.at(-1)!)
    const list = (name: BrokerName) => (outcomes.get(name) ?? []).filter((o) => o.result !== null)
    // Broker CPU per completed message, in microseconds: less sensitive than msg/s to other load.
    const perMessage = (name: BrokerName) =>
      fmt(median(list(name).map((o) => (o.brokerCores * o.result!.seconds * 1e6) / scenario.messages)))
    const cores = (name: BrokerName) => fmt(median(list(name).map((o) => o.brokerCores * 100)))
    const idle = (name: BrokerName) => fmt(median(list(name).map((o) => o.machineIdle * 100)))
    cpuRows.push(
      `| ${scenario.title} | ${perMessage('spool')} | ${perMessage('aedes')} | ${perMessage('mosquitto')} | ` +
        `${cores('spool')} | ${cores('aedes')} | ${cores('mosquitto')} | ${idle('spool')}/${idle('aedes')}/${idle('mosquitto')} |`,
    )
  }
  out.push(
    '### Throughput (msg/s, median of rounds)',
    '',
    '| scenario | Spool | aedes | mosquitto | Spool/aedes | Spool/mosquitto | lost/dup Spool | lost/dup aedes | lost/dup mosquitto |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
    ...rows,
    '',
    '### Broker CPU while the load ran (median of rounds)',
    '',
    'CPU µs per message: broker CPU time / messages. Core %: broker CPU time / wall time (100 = one core;',
    "Spool's LevelDB threads count too). Idle: share of the whole machine's CPU left idle during the run.",
    '',
    '| scenario | Spool µs/msg | aedes µs/msg | mosquitto µs/msg | Spool core % | aedes core % | mosquitto core % | machine idle % S/a/m |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
    ...cpuRows,
    '',
  )
  return maxima
}

async function latencyScenario(
  pool: LoadPool,
  brokers: Brokers,
  maxima: Map<string, Map<BrokerName, number>>,
  out: string[],
): Promise<void> {
  // Half of each broker's own maximum for the base scenario; measured now if it was not run.
  const rates = new Map<BrokerName, number>()
  for (const broker of brokers.list) {
    let max = maxima.get(LATENCY_BASE.id)?.get(broker.name) ?? NaN
    if (!Number.isFinite(max)) {
      const probe = { ...LATENCY_BASE, id: `${LATENCY_BASE.id}-probe` }
      max = (await runOnce(pool, broker, probe, 0)).result?.msgsPerSec ?? NaN
      log(`latency: ${broker.name} maximum ${fmt(max)} msg/s (probe)`)
    }
    rates.set(broker.name, Math.max(1, Math.floor(max / 2)))
  }
  const percentiles = new Map<
    BrokerName,
    { p50: number[]; p99: number[]; p999: number[]; runs: RunOutcome[] }
  >(brokers.list.map((b) => [b.name, { p50: [], p99: [], p999: [], runs: [] }]))
  for (let round = 0; round < ROUNDS; round++) {
    for (const broker of brokers.list) {
      const ratePerSec = rates.get(broker.name)!
      const scenario: Scenario = {
        ...LATENCY_BASE,
        id: 'latency',
        messages: Math.max(1, Math.round(ratePerSec * LATENCY_SECONDS)),
      }
      const outcome = await runOnce(pool, broker, scenario, round, ratePerSec)
      const entry = percentiles.get(broker.name)!
      entry.runs.push(outcome)
      const lat = outcome.result?.latenciesUs
      if (lat !== undefined && lat.length > 0) {
        entry.p50.push(quantile(lat, 0.5))
        entry.p99.push(quantile(lat, 0.99))
        entry.p999.push(quantile(lat, 0.999))
      }
      log(
        `latency round ${round} ${broker.name} @ ${ratePerSec}/s (broker ${Math.round(outcome.brokerCores * 100)} % CPU): p50 ${ms(quantile(lat ?? new Float64Array(), 0.5))} ` +
          `p99 ${ms(quantile(lat ?? new Float64Array(), 0.99))} p99.9 ${ms(quantile(lat ?? new Float64Array(), 0.999))} ms`,
      )
    }
  }
  out.push(
    `### Latency, publish to delivery (ms, median of rounds), at half of each broker's maximum for "${LATENCY_BASE.title}", ${LATENCY_SECONDS} s per run`,
    '',
    '| broker | rate msg/s | p50 | p99 | p99.9 | lost/dup |',
    '| --- | ---: | ---: | ---: | ---: | ---: |',
    ...brokers.list.map((b) => {
      const entry = percentiles.get(b.name)!
      return `| ${b.name} | ${rates.get(b.name)} | ${ms(median(entry.p50))} | ${ms(median(entry.p99))} | ${ms(median(entry.p999))} | ${lostDup(entry.runs)} |`
    }),
    '',
  )
}

/**
 * 1M messages in one Spool queue: RSS before and after the enqueue, disk bytes, then a restart on the
 * same data: time from spawn to `/readyz` 200 and to the first delivery, and the RSS after it.
 */
async function depthScenario(pool: LoadPool, configFile: string, out: string[]): Promise<void> {
  const dataDir = await mkdtemp(join(tmpdir(), 'spool-bench-depth-'))
  const rows: string[] = []
  try {
    const spool = await startSpool({ dataDir, configFile, nodeFlags: profileFlags('spool-depth') })
    let enqueue: LoadResult
    try {
      await sleep(1000)
      const idle = await memoryOf(spool.pid)
      log(`depth: enqueueing ${DEPTH} messages`)
      enqueue = await pool.run({
        port: spool.port,
        messages: DEPTH,
        payloadBytes: 256,
        publishers: 8,
        topic: '$queue/bench/depth',
        spreadTopics: 0,
        window: WINDOW,
        ratePerSec: 0,
        consumers: [],
        recordLatency: false,
        randomPayloads: true,
        timeLimitMs: Math.max(TIME_LIMIT_MS, DEPTH / 5),
      })
      const afterEnqueue = await memoryOf(spool.pid)
      await sleep(5000)
      const settled = await memoryOf(spool.pid)
      const heap = await heapOf(spool.httpPort!)
      const queue = (await httpJson(spool.httpPort!, 'GET', '/api/v1/queues/bench%2Fdepth')) as {
        depth: number
      }
      rows.push(
        `| messages enqueued (256 B, 8 publishers) | ${enqueue.published} in ${enqueue.seconds.toFixed(1)} s (${fmt(enqueue.msgsPerSec)} msg/s), queue depth ${queue.depth}, lost ${enqueue.lost + Math.max(0, enqueue.published - queue.depth)} |`,
        `| RSS idle before enqueue | ${mib(idle.rss)} MiB |`,
        `| RSS right after enqueue / 5 s later / peak | ${mib(afterEnqueue.rss)} / ${mib(settled.rss)} / ${mib(settled.peak)} MiB |`,
        `| of which V8 heap used / heap total / external (5 s later) | ${heap} |`,
      )
    } finally {
      await spool.stop()
    }
    const bytes = await directoryBytes(dataDir)
    rows.push(
      `| data dir on disk after stop | ${mib(bytes)} MiB (${(bytes / DEPTH).toFixed(0)} B per message) |`,
    )
    const { spawnedAt, readyMs, broker } = await startSpoolTimed(dataDir, configFile, 120_000)
    try {
      const deliveredMs = (await firstDelivery(broker.port)) - spawnedAt
      const afterRestart = await memoryOf(broker.pid)
      const heap = await heapOf(broker.httpPort!)
      rows.push(
        `| restart: spawn to /readyz 200 | ${(readyMs / 1000).toFixed(2)} s |`,
        `| restart: spawn to first delivery | ${(deliveredMs / 1000).toFixed(2)} s |`,
        `| RSS after restart and first delivery | ${mib(afterRestart.rss)} MiB (V8 heap used / total / external ${heap}) |`,
      )
    } finally {
      await broker.stop()
    }
  } finally {
    await rm(dataDir, { recursive: true, force: true })
  }
  out.push(`### ${DEPTH} queued messages (Spool)`, '', '| figure | value |', '| --- | --- |', ...rows, '')
}

/** V8 heap used / total / external memory in MiB, from Spool's /metrics. */
async function heapOf(httpPort: number): Promise<string> {
  const text = await httpText(httpPort, '/metrics')
  const value = (name: string) => mib(metricValue(text, name))
  return `${value('spool_nodejs_heap_size_used_bytes')} / ${value('spool_nodejs_heap_size_total_bytes')} / ${value('spool_nodejs_external_memory_bytes')} MiB`
}

/** Connects a consumer and waits for one delivery; returns `performance.now()` at the delivery. */
async function firstDelivery(port: number): Promise<number> {
  const client = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, {
    protocolVersion: 5,
    reconnectPeriod: 0,
    clientId: `bench-first-${process.pid}`,
  })
  try {
    const delivered = new Promise<number>((resolve) =>
      client.once('message', () => resolve(performance.now())),
    )
    await client.subscribeAsync('$queue/bench/depth', {
      qos: 1,
      properties: { userProperties: { 'consumer-group': 'restart' } },
    })
    return await withTimeout(delivered, 60_000, 'first delivery after restart')
  } finally {
    await client.endAsync(true)
  }
}

function machineLines(): string[] {
  const cpu = cpus()
  let commit = 'unknown'
  try {
    commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim()
  } catch {
    // not a git checkout
  }
  let mosquittoVersion = 'not installed'
  if (mosquittoInstalled()) {
    try {
      mosquittoVersion = execFileSync(MOSQUITTO_BIN, ['-h'], { encoding: 'utf8' }).split('\n')[0] ?? ''
    } catch (error) {
      // `mosquitto -h` exits non-zero after printing its usage
      const stdout = (error as { stdout?: string }).stdout ?? ''
      mosquittoVersion = stdout.split('\n')[0] ?? 'unknown'
    }
  }
  const settings = Object.entries(process.env)
    .filter(([name]) => name.startsWith('BENCH_'))
    .map(([name, value]) => `${name}=${value}`)
  return [
    `- \`${[...settings, 'npm run bench'].join(' ')}\``,
    `- ${new Date().toISOString()}, commit ${commit}, Node ${process.version}, ${cpu.length} x ${cpu[0]?.model ?? 'cpu'}`,
    `- ${mosquittoVersion}; aedes 2.0.0-beta.1; mqtt.js 5 clients in ${PROCS} load processes`,
    `- ${ROUNDS} rounds; ${MESSAGES} messages per run (64 KiB: ${MESSAGES_64K}); window ${WINDOW}; ${ACK_PUBLISHERS} publishers in publish->ack runs`,
  ]
}

async function main(): Promise<void> {
  if (!mosquittoInstalled()) {
    log(
      `\n*** mosquitto not found at ${MOSQUITTO_BIN}: the mosquitto columns will be empty.\n` +
        '*** Install it with `apt-get install mosquitto` (Debian) or set BENCH_MOSQUITTO=/path/to/mosquitto.\n',
    )
  }
  const out: string[] = [
    '## Spool vs aedes vs mosquitto',
    '',
    ...machineLines(),
    `- load average at start: ${loadavg()
      .map((l) => l.toFixed(2))
      .join(' ')}`,
    '',
  ]
  const dir = await mkdtemp(join(tmpdir(), 'spool-bench-config-'))
  const configFile = await spoolConfigFile(dir, ROUNDS)
  const pool = await LoadPool.start(PROCS)
  const began = performance.now()
  try {
    const wantsThroughput = scenarios.some((s) => selected(s.group, s.id))
    if (wantsThroughput || selected('latency')) {
      const brokers = await startBrokers(configFile)
      log(`brokers: ${brokers.list.map((b) => `${b.name} pid ${b.pid} port ${b.port}`).join(', ')}`)
      try {
        // One unreported run per broker first, so that no figure includes the JIT warming up.
        const warmup = { ...LATENCY_BASE, id: 'warmup', messages: Math.min(MESSAGES, 10_000) }
        for (const broker of brokers.list) await runOnce(pool, broker, warmup, 0)
        const maxima = await throughputScenarios(pool, brokers, out)
        if (selected('latency')) await latencyScenario(pool, brokers, maxima, out)
      } finally {
        for (const broker of brokers.list) await broker.stop()
      }
    }
    if (selected('depth')) await depthScenario(pool, configFile, out)
    if (selected('cluster')) {
      log('cluster: single node vs 3 nodes (proxy, direct)')
      out.push('', await runClusterBench())
    }
  } finally {
    await pool.close()
    await rm(dir, { recursive: true, force: true })
  }
  out.push(
    `- took ${((performance.now() - began) / 60_000).toFixed(1)} min; load average at end: ${loadavg()
      .map((l) => l.toFixed(2))
      .join(' ')}`,
    mosquittoInstalled() ? '' : `- mosquitto was not installed (${MOSQUITTO_BIN}): apt-get install mosquitto`,
  )
  process.stdout.write(`${out.join('\n')}\n`)
}

await main()
