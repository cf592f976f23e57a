/**
 * Cluster benchmark (`npm run bench:cluster`; `npm run bench` runs it last): a single node beside a
 * 3-node cluster on one real etcd, all on loopback, in the same run, alternating single / proxy /
 * direct in every round. Two scenarios, both publish -> deliver -> `$ack` on one queue
 * (`ordering: none`):
 *
 * - latency at a fixed rate (BENCH_CLUSTER_RATE msg/s for BENCH_CLUSTER_SECONDS): publish-to-delivery
 *   p50/p99/p99.9. Single: publisher and consumer on the node. Proxy: publisher on node 1, consumer on
 *   node 2, so most messages take a forward hop to their owner and a delivery hop back through
 *   node 2. Direct: publisher on node 1, one consumer on every node (each gets what its node owns).
 * - throughput: BENCH_CLUSTER_MESSAGES unpaced (500 unacknowledged publishes), same placement, with
 *   two consumers for single and proxy.
 *
 * Clients run in this process (mqtt.js); every message is counted, lost and duplicate figures are in
 * the table. Every loop is bounded in count and time.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import mqtt, { type MqttClient } from 'mqtt'
import {
  freePort,
  httpJson,
  LOOPBACK,
  median,
  quantile,
  sleep,
  startSpool,
  withTimeout,
  type BrokerProcess,
} from './harness.js'

const ETCD_BIN = process.env.BENCH_ETCD ?? '/usr/bin/etcd'
const ROUNDS = Number(process.env.BENCH_CLUSTER_ROUNDS ?? process.env.BENCH_ROUNDS ?? 3)
const RATE = Number(process.env.BENCH_CLUSTER_RATE ?? 1000)
const SECONDS = Number(process.env.BENCH_CLUSTER_SECONDS ?? 10)
const MESSAGES = Number(process.env.BENCH_CLUSTER_MESSAGES ?? 20_000)
const PAYLOAD = Buffer.alloc(256, 0x61)
const WINDOW = 500
const RUN_LIMIT_MS = 120_000

type Setup = 'single' | 'proxy' | 'direct'

interface Deployment {
  readonly setup: Setup
  readonly nodes: BrokerProcess[]
  /** Where consumers connect, per scenario. */
  consumerPorts(kind: 'latency' | 'throughput'): number[]
}

interface RunResult {
  msgsPerSec: number
  lost: number
  duplicates: number
  latenciesUs: Float64Array
}

// ---- etcd ----

interface Etcd {
  url: string
  stop(): Promise<void>
}

async function startEtcd(): Promise<Etcd> {
  const [clientPort, peerPort] = [await freePort(), await freePort()]
  const root = await mkdtemp(join(tmpdir(), 'spool-bench-etcd-'))
  const client = `http://${LOOPBACK}:${clientPort}`
  const peer = `http://${LOOPBACK}:${peerPort}`
  const child: ChildProcess = spawn(
    ETCD_BIN,
    [
      '--name=bench',
      `--data-dir=${join(root, 'data')}`,
      `--listen-client-urls=${client}`,
      `--advertise-client-urls=${client}`,
      `--listen-peer-urls=${peer}`,
      `--initial-advertise-peer-urls=${peer}`,
      `--initial-cluster=bench=${peer}`,
    ],
    { stdio: 'ignore' },
  )
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  const deadline = Date.now() + 15_000
  for (;;) {
    try {
      const health = (await (await fetch(`${client}/health`)).json()) as { health?: string }
      if (health.health === 'true') break
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error('etcd did not become healthy within 15 s')
    await sleep(100)
  }
  return {
    url: client,
    async stop() {
      child.kill('SIGTERM')
      await exited
      await rm(root, { recursive: true, force: true })
    },
  }
}

// ---- nodes ----

async function startNode(
  configDir: string,
  nodeId: string,
  cluster?: { etcd: string; routing: 'proxy' | 'direct' },
): Promise<BrokerProcess> {
  const file = join(configDir, `${nodeId}.json`)
  const config = {
    nodeId,
    queues: { defaults: { ordering: 'none' } },
    ...(cluster === undefined
      ? {}
      : {
          grpc: { port: 0 },
          // Both clusters share one etcd: a prefix each keeps them apart.
          cluster: {
            etcd: [cluster.etcd],
            advertise: LOOPBACK,
            routing: cluster.routing,
            prefix: `/spool-bench-${cluster.routing}`,
          },
        }),
  }
  await writeFile(file, JSON.stringify(config))
  return startSpool({ configFile: file })
}

/** Waits until every partition of `queue` has a live owner, as node 1 sees it. */
async function untilOwned(node: BrokerProcess, queue: string): Promise<void> {
  const deadline = Date.now() + 30_000
  while (Date.now() < deadline) {
    const view = (await httpJson(node.httpPort!, 'GET', '/api/v1/cluster')) as {
      queues?: Array<{ name: string; owners: Array<{ owner: string | null }> }>
    }
    const owners = view.queues?.find((q) => q.name === queue)?.owners ?? []
    if (owners.length > 0 && owners.every((o) => o.owner !== null)) {
      await sleep(500) // let hand-overs of the freshly claimed partitions finish
      return
    }
    await sleep(100)
  }
  throw new Error(`partitions of ${queue} not owned within 30 s`)
}

// ---- load ----

function connect(port: number, clientId: string): Promise<MqttClient> {
  const client = mqtt.connect(`mqtt://${LOOPBACK}:${port}`, {
    clientId,
    protocolVersion: 5,
    reconnectPeriod: 0,
    properties: { receiveMaximum: 65535 },
  })
  return withTimeout(
    new Promise<MqttClient>((resolve, reject) => {
      client.once('connect', () => resolve(client))
      client.once('error', reject)
    }),
    10_000,
    `connect to ${port}`,
  )
}

/**
 * Publishes `count` messages on `publishPort` (paced at `rate`/s, or unpaced with `rate` 0) to
 * consumers on `consumerPorts` that ack each delivery; counts deliveries and latencies.
 */
async function runLoad(
  queue: string,
  publishPort: number,
  consumerPorts: number[],
  count: number,
  rate: number,
): Promise<RunResult> {
  const counts = new Uint8Array(count)
  const latencies = new Float64Array(count)
  let delivered = 0
  let firstPublishUs = 0
  let lastDeliveryUs = 0
  const clients: MqttClient[] = []
  try {
    for (const [i, port] of consumerPorts.entries()) {
      const consumer = await connect(port, `bench-c${i}-${queue}`)
      clients.push(consumer)
      consumer.on('message', (_topic, payload, packet) => {
        const index = payload.readUInt32BE(0)
        const sentUs = payload.readDoubleBE(4)
        if (index < count) {
          if (counts[index] === 0) {
            delivered++
            latencies[index] = performance.now() * 1000 - sentUs
            lastDeliveryUs = performance.now() * 1000
          }
          counts[index] = Math.min(255, counts[index]! + 1)
        }
        const id = (packet.properties?.userProperties as Record<string, string> | undefined)?.['message-id']
        consumer.publish(`$queue/${queue}/$ack`, '', {
          qos: 1,
          properties: { userProperties: { 'message-id': id ?? '' } },
        })
      })
      await consumer.subscribeAsync(`$queue/${queue}`, {
        qos: 1,
        properties: { userProperties: { 'consumer-group': 'bench' } },
      })
    }
    const publisher = await connect(publishPort, `bench-p-${queue}`)
    clients.push(publisher)
    const deadline = Date.now() + RUN_LIMIT_MS
    firstPublishUs = performance.now() * 1000
    let inflight = 0
    let next = 0
    await new Promise<void>((resolve) => {
      const pump = () => {
        if (Date.now() > deadline) return resolve()
        const due =
          rate === 0
            ? count
            : Math.min(count, Math.floor(((performance.now() * 1000 - firstPublishUs) / 1e6) * rate) + 1)
        while (next < due && inflight < WINDOW) {
          const payload = Buffer.from(PAYLOAD)
          payload.writeUInt32BE(next, 0)
          payload.writeDoubleBE(performance.now() * 1000, 4)
          inflight++
          next++
          publisher.publish(
            `$queue/${queue}`,
            payload,
            { qos: 1, properties: { userProperties: { 'partition-key': `k${next % 64}` } } },
            () => {
              inflight--
              if (rate === 0) pump()
            },
          )
        }
        if (next >= count) return resolve()
        if (rate !== 0) setTimeout(pump, 1)
      }
      pump()
    })
    while (delivered < count && Date.now() < deadline) await sleep(20)
  } finally {
    for (const client of clients) await client.endAsync(true).catch(() => undefined)
  }
  let lost = 0
  let duplicates = 0
  for (const c of counts) {
    if (c === 0) lost++
    else duplicates += c - 1
  }
  const seconds = Math.max(1e-6, (lastDeliveryUs - firstPublishUs) / 1e6)
  const sorted = latencies.filter((_, i) => counts[i]! > 0).sort()
  return { msgsPerSec: delivered / seconds, lost, duplicates, latenciesUs: sorted }
}

// ---- report ----

function ms(us: number): string {
  return (us / 1000).toFixed(2)
}

export async function runClusterBench(): Promise<string> {
  const configDir = await mkdtemp(join(tmpdir(), 'spool-bench-cluster-'))
  const etcd = await startEtcd()
  const deployments: Deployment[] = []
  try {
    const single = await startNode(configDir, 'single')
    deployments.push({
      setup: 'single',
      nodes: [single],
      consumerPorts: (kind) => (kind === 'latency' ? [single.port] : [single.port, single.port]),
    })
    for (const routing of ['proxy', 'direct'] as const) {
      const nodes: BrokerProcess[] = []
      for (let i = 1; i <= 3; i++)
        nodes.push(await startNode(configDir, `${routing}${i}`, { etcd: etcd.url, routing: routing }))
      deployments.push({
        setup: routing,
        nodes,
        consumerPorts: (kind) =>
          routing === 'direct'
            ? nodes.map((n) => n.port)
            : kind === 'latency'
              ? [nodes[1]!.port]
              : [nodes[1]!.port, nodes[2]!.port],
      })
    }
    const results = new Map<string, RunResult[]>()
    const record = (key: string, result: RunResult) => results.set(key, [...(results.get(key) ?? []), result])
    for (let round = 1; round <= ROUNDS; round++) {
      for (const deployment of deployments) {
        const [first] = deployment.nodes as [BrokerProcess]
        for (const kind of ['latency', 'throughput'] as const) {
          const queue = `bench-${deployment.setup}-${kind}-${round}`
          if (deployment.setup !== 'single') {
            // Register the queue (and its group) and let ownership settle before measuring.
            const warm = await connect(first.port, `bench-warm-${queue}`)
            await warm.subscribeAsync(`$queue/${queue}`, {
              qos: 1,
              properties: { userProperties: { 'consumer-group': 'bench' } },
            })
            await warm.endAsync(true)
            await untilOwned(first, queue)
          }
          const count = kind === 'latency' ? RATE * SECONDS : MESSAGES
          const result = await runLoad(
            queue,
            first.port,
            deployment.consumerPorts(kind),
            count,
            kind === 'latency' ? RATE : 0,
          )
          record(`${deployment.setup}/${kind}`, result)
          process.stderr.write(
            `cluster round ${round} ${deployment.setup} ${kind}: ${Math.round(result.msgsPerSec)} msg/s, p50 ${ms(quantile(result.latenciesUs, 0.5))} ms, p99 ${ms(quantile(result.latenciesUs, 0.99))} ms, lost ${result.lost}, dup ${result.duplicates}\n`,
          )
        }
      }
    }
    const row = (setup: Setup, kind: 'latency' | 'throughput') => {
      const runs = results.get(`${setup}/${kind}`) ?? []
      const pick = (f: (r: RunResult) => number) => median(runs.map(f))
      return {
        rate: pick((r) => r.msgsPerSec),
        p50: pick((r) => quantile(r.latenciesUs, 0.5)),
        p99: pick((r) => quantile(r.latenciesUs, 0.99)),
        p999: pick((r) => quantile(r.latenciesUs, 0.999)),
        lost: runs.reduce((s, r) => s + r.lost, 0),
        dup: runs.reduce((s, r) => s + r.duplicates, 0),
      }
    }
    const lines = [
      `Cluster: single node vs 3 nodes (proxy, direct) on one etcd, ${ROUNDS} rounds, medians; 256 B, ordering none.`,
      '',
      `| setup | latency p50 ms | p99 ms | p99.9 ms | at msg/s | throughput msg/s | vs single | lost/dup |`,
      `| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |`,
    ]
    const base = row('single', 'throughput').rate
    for (const setup of ['single', 'proxy', 'direct'] as const) {
      const latency = row(setup, 'latency')
      const throughput = row(setup, 'throughput')
      lines.push(
        `| ${setup === 'single' ? '1 node' : `3 nodes, ${setup}`} | ${ms(latency.p50)} | ${ms(latency.p99)} | ${ms(latency.p999)} | ${RATE} | ${Math.round(throughput.rate)} | ${(throughput.rate / base).toFixed(2)} | ${latency.lost + throughput.lost}/${latency.dup + throughput.dup} |`,
      )
    }
    const alone = row('single', 'latency')
    const proxied = row('proxy', 'latency')
    lines.push(
      '',
      `Proxy routing adds ${ms(proxied.p50 - alone.p50)} ms at p50 and ${ms(proxied.p99 - alone.p99)} ms at p99 (publisher on node 1, consumer on node 2).`,
    )
    return lines.join('\n')
  } finally {
    for (const deployment of deployments) for (const node of deployment.nodes) await node.stop()
    await etcd.stop()
    await rm(configDir, { recursive: true, force: true })
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  // Run alone (`npm run bench:cluster`); `npm run bench` imports runClusterBench instead.
  console.log(await runClusterBench())
}
