/**
 * Cluster tests: Spool nodes as child processes (`spool start --etcd ...`) around a real etcd, and a
 * load of partition-keyed messages with consumers that ack everything and count what arrived, so a
 * test can say "nothing lost, per-key order kept" after whatever fault it injects.
 */
import type { TestContext } from 'node:test'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import mqtt, { type MqttClient } from 'mqtt'
import { hashOwner } from '../../src/cluster/strategy.js'
import type { RawConfig } from '../../src/config/index.js'
import { spawnSpoolOn, type KillableBroker } from './child-broker.js'
import { tempDir, TIMEOUT_MS } from './server.js'
import { until } from './wait.js'

export interface ClusterNodeOptions {
  nodeId: string
  etcdUrl: string
  /** Reuse a data dir (restart after kill -9); a fresh temp dir by default. */
  dataDir?: string
  routing?: 'proxy' | 'direct'
  leaseTtlSeconds?: number
  /** Written to a config file given with --config (e.g. declared queues: every node the same). */
  config?: RawConfig
}

export interface ClusterNode extends KillableBroker {
  readonly nodeId: string
  readonly dataDir: string
  readonly httpPort: number
  /** GET on the node's HTTP listener, parsed as JSON. */
  get<T>(path: string): Promise<{ status: number; body: T }>
  /** SIGTERM (graceful leave), then waits for the exit. */
  stop(): Promise<void>
}

export async function startClusterNode(t: TestContext, options: ClusterNodeOptions): Promise<ClusterNode> {
  const dataDir = options.dataDir ?? (await tempDir(t, `spool-${options.nodeId}-`))
  const args = [
    '--node-id',
    options.nodeId,
    '--etcd',
    options.etcdUrl,
    '--grpc-port',
    '0',
    '--advertise',
    '127.0.0.1',
    '--routing',
    options.routing ?? 'proxy',
    '--lease-ttl-seconds',
    String(options.leaseTtlSeconds ?? 3),
  ]
  if (options.config !== undefined) {
    const file = join(dataDir, 'test-config.json')
    await writeFile(file, JSON.stringify(options.config))
    args.push('--config', file)
  }
  const broker = await spawnSpoolOn(t, dataDir, args)
  const started = broker.lines.map(parse).find((record) => record?.['msg'] === 'spool started')
  const httpPort = Number(started?.['httpPort'])
  const node: ClusterNode = {
    ...broker,
    nodeId: options.nodeId,
    dataDir,
    httpPort,
    async get<T>(path: string) {
      const response = await fetch(`http://127.0.0.1:${httpPort}${path}`, {
        signal: AbortSignal.timeout(TIMEOUT_MS),
      })
      return { status: response.status, body: (await response.json()) as T }
    },
    async stop() {
      if (broker.child.exitCode === null && broker.child.signalCode === null) broker.child.kill('SIGTERM')
      await broker.exited
    },
  }
  return node
}

function parse(line: string): Record<string, unknown> | undefined {
  try {
    return JSON.parse(line) as Record<string, unknown>
  } catch {
    return undefined
  }
}

export interface ClusterViewBody {
  mode: string
  healthy: boolean
  nodes: Array<{ id: string; alive: boolean; partitions: number; mqtt?: string }>
  queues: Array<{ name: string; owners: Array<{ partition: number; owner: string | null }> }>
  forwardBuffer: number
}

/**
 * Waits until `node` sees exactly `members` alive and every partition of `queue` owned where the
 * hash strategy puts it (no hand-over pending).
 */
export async function untilSettled(
  node: ClusterNode,
  queue: string,
  members: readonly string[],
  timeoutMs = 30_000,
): Promise<ClusterViewBody> {
  let view: ClusterViewBody | undefined
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    view = (await node.get<ClusterViewBody>('/api/v1/cluster')).body
    const alive = view.nodes.filter((n) => n.alive).map((n) => n.id)
    const owners = view.queues.find((q) => q.name === queue)?.owners ?? []
    const sameMembers = alive.length === members.length && members.every((m) => alive.includes(m))
    const placed =
      owners.length > 0 && owners.every((o) => o.owner === hashOwner(queue, o.partition, members))
    if (sameMembers && placed) return view
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  throw new Error(`cluster did not settle on ${members.join(',')} for ${queue}: ${JSON.stringify(view)}`)
}

/** A consumer that acks every delivery and records what it got. */
export interface LoadConsumer {
  readonly client: MqttClient
  readonly received: number
}

/**
 * Publishes `count` messages `<key>:<n>` (key = n % keys, sent as partition-key) and consumes them
 * with consumers that ack each one. Records every delivery, so a test can check for loss, duplicates
 * and per-key order.
 */
export class QueueLoad {
  /** Deliveries per payload. */
  readonly deliveries = new Map<string, number>()
  /** First-delivery order per key: the n of each message in the order it first arrived. */
  readonly firstArrivals = new Map<string, number[]>()
  /** Deliveries per consumer client id. */
  readonly perConsumer = new Map<string, number>()
  ackFailures = 0
  acked = 0
  published = 0
  publishRetries = 0
  private readonly consumers: MqttClient[] = []

  constructor(
    readonly queue: string,
    readonly keys = 13,
  ) {}

  async addConsumer(t: TestContext, port: number, clientId: string, group = 'workers'): Promise<MqttClient> {
    const client = mqtt.connect(`mqtt://127.0.0.1:${port}`, {
      clientId,
      protocolVersion: 5,
      reconnectPeriod: 300,
      connectTimeout: TIMEOUT_MS,
    })
    t.after(() => client.endAsync(true))
    client.on('message', (_topic, payload, packet) => {
      this.perConsumer.set(clientId, (this.perConsumer.get(clientId) ?? 0) + 1)
      const text = payload.toString()
      const seen = this.deliveries.get(text) ?? 0
      this.deliveries.set(text, seen + 1)
      if (seen === 0) {
        const [key, n] = text.split(':')
        const arrivals = this.firstArrivals.get(key!) ?? []
        arrivals.push(Number(n))
        this.firstArrivals.set(key!, arrivals)
      }
      const props = packet.properties?.userProperties as Record<string, string> | undefined
      client.publish(
        `$queue/${this.queue}/$ack`,
        '',
        { qos: 1, properties: { userProperties: { 'message-id': props?.['message-id'] ?? '' } } },
        (err) => (err ? this.ackFailures++ : this.acked++),
      )
    })
    // Subscribe on every (re)connect: a consumer whose node restarted joins again.
    client.on('connect', () => {
      client.subscribe(`$queue/${this.queue}`, {
        qos: 1,
        properties: { userProperties: { 'consumer-group': group } },
      })
    })
    await until(() => client.connected, TIMEOUT_MS * 2, `consumer ${clientId} to connect`)
    this.consumers.push(client)
    return client
  }

  /**
   * Publishes messages [from, to) through `client`, at most `window` unacknowledged, retrying a
   * refused publish (bounded): a refused message was not accepted, so it must be sent again.
   */
  async publish(client: MqttClient, from: number, to: number, window = 200): Promise<void> {
    const send = async (n: number) => {
      const key = `k${n % this.keys}`
      for (let attempt = 1; attempt <= 50; attempt++) {
        try {
          await client.publishAsync(`$queue/${this.queue}`, `${key}:${n}`, {
            qos: 1,
            properties: { userProperties: { 'partition-key': key } },
          })
          this.published++
          return
        } catch {
          this.publishRetries++
          await new Promise((resolve) => setTimeout(resolve, 100))
        }
      }
      throw new Error(`message ${n} was refused 50 times`)
    }
    for (let at = from; at < to; at += window) {
      const end = Math.min(to, at + window)
      await Promise.all(Array.from({ length: end - at }, (_, i) => send(at + i)))
    }
  }

  /** Waits until every message in [0, count) arrived at least once (bounded). */
  async untilAllDelivered(count: number, timeoutMs: number): Promise<void> {
    await until(
      () => this.distinct() >= count,
      timeoutMs,
      `all ${count} messages delivered (have ${this.distinct()})`,
    )
  }

  distinct(): number {
    return this.deliveries.size
  }

  duplicates(): number {
    let duplicates = 0
    for (const count of this.deliveries.values()) duplicates += count - 1
    return duplicates
  }

  /** Payloads in [0, count) never delivered. */
  missing(count: number): string[] {
    const missing: string[] = []
    for (let n = 0; n < count; n++) {
      const text = `k${n % this.keys}:${n}`
      if (!this.deliveries.has(text)) missing.push(text)
    }
    return missing
  }

  /** Keys whose messages first arrived out of publish order, with the first inversion. */
  orderViolations(): string[] {
    const violations: string[] = []
    for (const [key, arrivals] of this.firstArrivals) {
      for (let i = 1; i < arrivals.length; i++) {
        if (arrivals[i]! < arrivals[i - 1]!) {
          violations.push(`${key}: ${arrivals[i - 1]} before ${arrivals[i]}`)
          break
        }
      }
    }
    return violations
  }
}
