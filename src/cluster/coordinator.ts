/**
 * The node's view of the cluster, kept in etcd (docs/cluster.md#etcd-keys):
 *
 * - `<prefix>/members/<node>`   the node belongs to the cluster (no lease: a crashed node stays a
 *                               member, so its partitions wait for it instead of moving)
 * - `<prefix>/alive/<node>`     under the node's lease: it is up and reachable at these addresses
 * - `<prefix>/queues/<name>`    a queue and its partition count, shared by every node
 * - `<prefix>/owners/<queue>/<p>` the node that holds and serves partition p (changed only by
 *                               transactions: a claim when nobody owns it, a transfer by the owner)
 *
 * The coordinator writes those keys, watches the prefix, and tells whether the lease is healthy: a
 * node whose keepalives have not reached etcd for a whole TTL may already be declared dead, so it
 * must stop serving (fencing) until etcd hears from it again.
 */
import { EventEmitter } from 'node:events'
import {
  circuitBreaker,
  ConsecutiveBreaker,
  ExponentialBackoff,
  handleWhen,
  retry,
  type IBackoff,
} from 'cockatiel'
import { Etcd3, isRecoverableError, type Lease, type Watcher } from 'etcd3'
import type { Logger } from '../observability/logger.js'

/** How other nodes reach a node. */
export interface NodeAddresses {
  readonly nodeId: string
  /** `host:port` of its gRPC listener (cluster traffic). */
  readonly grpc: string
  /** `host:port` of its MQTT listener (for clients, in direct routing). */
  readonly mqtt: string
}

export interface CoordinatorOptions {
  readonly endpoints: readonly string[]
  readonly prefix: string
  readonly nodeId: string
  readonly leaseTtlSeconds: number
  readonly logger: Logger
}

/** Longest any single etcd call may take before it counts as failed. */
const ETCD_CALL_DEADLINE_MS = 3_000
const HEALTH_CHECK_INTERVAL_MS = 250

/**
 * Emits `change` when anything under the prefix changed (members, liveness, queues, owners) and
 * `health` (with a boolean) when the lease turns unhealthy or healthy again.
 */
export class EtcdCoordinator extends EventEmitter {
  readonly nodeId: string
  private readonly client: Etcd3
  private readonly prefix: string
  private readonly members = new Map<string, NodeAddresses>()
  private readonly alive = new Map<string, NodeAddresses>()
  private readonly queues = new Map<string, number>()
  private readonly owners = new Map<string, string>()
  private lease: Lease | undefined
  private watcher: Watcher | undefined
  private lastKeepAliveMs = 0
  private healthy = false
  private healthTimer: NodeJS.Timeout | undefined
  private stopped = false
  private self: NodeAddresses | undefined
  private left = false
  private regranting = false
  private watchDown = false

  constructor(private readonly options: CoordinatorOptions) {
    super()
    this.nodeId = options.nodeId
    this.prefix = `${options.prefix}/`
    this.client = new Etcd3({
      hosts: [...options.endpoints],
      dialTimeout: ETCD_CALL_DEADLINE_MS,
      defaultCallOptions: (context) =>
        context.isStream ? {} : { deadline: Date.now() + ETCD_CALL_DEADLINE_MS },
      faultHandling: {
        host: () =>
          circuitBreaker(handleWhen(isRecoverableError), {
            halfOpenAfter: 1_000,
            breaker: new ConsecutiveBreaker(3),
          }),
        global: retry(handleWhen(isRecoverableError), { maxAttempts: 2 }),
        // The default backs off to 30 s; a node should notice etcd is back within a couple of seconds.
        // etcd3 types this as a backoff but calls `.next()` on it like on its own default, a factory.
        watchBackoff: new ExponentialBackoff({
          initialDelay: 200,
          maxDelay: 2_000,
        }) as unknown as IBackoff<unknown>,
      },
    })
  }

  get isHealthy(): boolean {
    return this.healthy
  }

  /** Registers this node (member + alive under a new lease), loads the cluster state and watches it. */
  async start(self: NodeAddresses): Promise<void> {
    this.self = self
    await this.client.put(this.key('members', this.nodeId)).value(JSON.stringify(self))
    await this.grantLease()
    // The watch starts right after the state read, so no change falls between the two.
    const revision = await this.resync()
    this.watcher = await this.client
      .watch()
      .prefix(this.prefix)
      .startRevision(String(revision + 1))
      .create()
    this.watcher.on('put', (kv) => this.apply(kv.key.toString(), kv.value.toString()))
    this.watcher.on('delete', (kv) => this.apply(kv.key.toString(), undefined))
    this.watcher.on('connected', () => {
      if (this.watchDown) this.options.logger.info('etcd watch connected again')
      this.watchDown = false
      // Events missed while disconnected are replayed from the last revision; a resync also covers
      // a compacted history.
      this.resync().catch((err: unknown) => this.options.logger.warn({ err }, 'etcd resync failed'))
    })
    // Logged once per outage: the watch retries every couple of seconds until etcd is back.
    const down = (err: unknown) => {
      if (this.watchDown) return
      this.watchDown = true
      this.options.logger.warn({ err }, 'etcd watch disconnected; retrying until etcd answers')
    }
    this.watcher.on('disconnected', down)
    this.watcher.on('error', down)
    this.healthTimer = setInterval(() => this.checkHealth(), HEALTH_CHECK_INTERVAL_MS)
    this.checkHealth()
  }

  /** Graceful leave, step one: no longer a member, so every node computes owners without this one. */
  async leave(): Promise<void> {
    this.left = true
    await this.client.delete().key(this.key('members', this.nodeId))
  }

  /** Stops watching and keepalives; with `revoke`, the alive key goes at once (graceful stop). */
  async stop(options: { revoke: boolean }): Promise<void> {
    this.stopped = true
    if (this.healthTimer !== undefined) clearInterval(this.healthTimer)
    await this.watcher?.cancel().catch(() => undefined)
    if (options.revoke) await this.lease?.revoke().catch(() => undefined)
    else this.lease?.release()
    this.client.close()
  }

  // ---- The view ----

  memberIds(): string[] {
    return [...this.members.keys()].sort()
  }

  aliveIds(): string[] {
    return [...this.alive.keys()].sort()
  }

  isAlive(nodeId: string): boolean {
    return this.alive.has(nodeId)
  }

  addressesOf(nodeId: string): NodeAddresses | undefined {
    return this.alive.get(nodeId) ?? this.members.get(nodeId)
  }

  queueNames(): string[] {
    return [...this.queues.keys()].sort()
  }

  partitionsOf(queue: string): number | undefined {
    return this.queues.get(queue)
  }

  ownerOf(queue: string, partition: number): string | undefined {
    return this.owners.get(ownerKey(queue, partition))
  }

  /** Every recorded owner of a queue's partitions, by partition. */
  ownersOf(queue: string): Array<{ partition: number; owner: string | undefined }> {
    const partitions = this.queues.get(queue) ?? 0
    return Array.from({ length: partitions }, (_, partition) => ({
      partition,
      owner: this.ownerOf(queue, partition),
    }))
  }

  // ---- Writes (transactions where two nodes could race) ----

  /** Records a queue and its partition count, unless some node did first; returns the count in force. */
  async registerQueue(queue: string, partitions: number): Promise<number> {
    const key = this.key('queues', queue)
    const value = JSON.stringify({ partitions })
    const result = await this.client
      .if(key, 'Create', '==', 0)
      .then(this.client.put(key).value(value))
      .else(this.client.get(key))
      .commit()
    if (result.succeeded) {
      this.queues.set(queue, partitions)
      return partitions
    }
    const existing = result.responses[0]?.response_range.kvs[0]?.value.toString()
    const recorded = existing === undefined ? partitions : parseQueueRecord(existing)
    this.queues.set(queue, recorded)
    return recorded
  }

  /** Takes a partition nobody owns; false when another node got it first. */
  async claim(queue: string, partition: number): Promise<boolean> {
    const key = this.key('owners', ownerKey(queue, partition))
    const result = await this.client
      .if(key, 'Create', '==', 0)
      .then(this.client.put(key).value(this.nodeId))
      .commit()
    if (result.succeeded) this.owners.set(ownerKey(queue, partition), this.nodeId)
    return result.succeeded
  }

  /** Hands a partition this node owns to `to`; false when etcd says this node is not the owner. */
  async transfer(queue: string, partition: number, to: string): Promise<boolean> {
    const key = this.key('owners', ownerKey(queue, partition))
    const result = await this.client
      .if(key, 'Value', '==', this.nodeId)
      .then(this.client.put(key).value(to))
      .commit()
    if (result.succeeded) this.owners.set(ownerKey(queue, partition), to)
    return result.succeeded
  }

  // ---- Internals ----

  private key(kind: string, name: string): string {
    return `${this.prefix}${kind}/${name}`
  }

  private async grantLease(): Promise<void> {
    const lease = this.client.lease(this.options.leaseTtlSeconds, { autoKeepAlive: true })
    this.lease = lease
    lease.on('keepaliveSucceeded', () => {
      this.lastKeepAliveMs = Date.now()
    })
    lease.on('lost', (err) => {
      // One re-grant loop at a time: a grant that fails inside it also reports its lease lost.
      if (this.stopped || this.lease !== lease || this.regranting) return
      this.options.logger.warn({ err: err.message }, 'etcd lease lost; registering again')
      void this.regrant()
    })
    await lease.put(this.key('alive', this.nodeId)).value(JSON.stringify(this.self))
    this.lastKeepAliveMs = Date.now()
  }

  /** After a lost lease: a new one as soon as etcd answers (bounded backoff, until stopped). */
  private async regrant(): Promise<void> {
    this.regranting = true
    let delayMs = 200
    let attempts = 0
    while (!this.stopped) {
      attempts++
      try {
        await this.grantLease()
        // The member key may have been removed meanwhile (by an operator): make sure it is there.
        if (!this.left)
          await this.client.put(this.key('members', this.nodeId)).value(JSON.stringify(this.self))
        this.regranting = false
        this.options.logger.info({ attempts }, 'etcd lease granted again')
        this.checkHealth()
        this.emit('change')
        return
      } catch (err) {
        // The failed lease is dead already; stop its timers so nothing of it lingers.
        this.lease?.release()
        this.options.logger.debug({ err, attempts }, 'etcd lease grant failed; retrying')
        await new Promise((resolve) => setTimeout(resolve, delayMs))
        delayMs = Math.min(delayMs * 2, 2_000)
      }
    }
    this.regranting = false
  }

  private checkHealth(): void {
    const healthy = Date.now() - this.lastKeepAliveMs < this.options.leaseTtlSeconds * 1000
    if (healthy === this.healthy) return
    this.healthy = healthy
    if (healthy) this.options.logger.info('etcd lease healthy; serving owned partitions')
    else
      this.options.logger.error(
        { leaseTtlSeconds: this.options.leaseTtlSeconds },
        'etcd unreachable for longer than the lease TTL; stopped serving partitions until it is back',
      )
    this.emit('health', healthy)
  }

  /** Reads the whole state again; returns the etcd revision it was read at. */
  private async resync(): Promise<number> {
    const response = await this.client.getAll().prefix(this.prefix).exec()
    this.members.clear()
    this.alive.clear()
    this.queues.clear()
    this.owners.clear()
    for (const kv of response.kvs) this.apply(kv.key.toString(), kv.value.toString(), false)
    this.emit('change')
    return Number(response.header.revision)
  }

  private apply(fullKey: string, value: string | undefined, notify = true): void {
    if (!fullKey.startsWith(this.prefix)) return
    const rest = fullKey.slice(this.prefix.length)
    const slash = rest.indexOf('/')
    const kind = rest.slice(0, slash)
    const name = rest.slice(slash + 1)
    try {
      switch (kind) {
        case 'members':
          if (value === undefined) this.members.delete(name)
          else this.members.set(name, parseAddresses(value))
          break
        case 'alive':
          if (value === undefined) this.alive.delete(name)
          else this.alive.set(name, parseAddresses(value))
          break
        case 'queues':
          if (value === undefined) this.queues.delete(name)
          else this.queues.set(name, parseQueueRecord(value))
          break
        case 'owners':
          if (value === undefined) this.owners.delete(name)
          else this.owners.set(name, value)
          break
        default:
          return
      }
    } catch (err) {
      this.options.logger.error({ key: fullKey, err }, 'unreadable etcd record ignored')
      return
    }
    if (notify) this.emit('change')
  }
}

/** `<queue>/<partition>`: the partition is the last segment (queue names may contain `/`). */
function ownerKey(queue: string, partition: number): string {
  return `${queue}/${partition}`
}

function parseAddresses(value: string): NodeAddresses {
  const parsed = JSON.parse(value) as Partial<NodeAddresses>
  if (
    typeof parsed.nodeId !== 'string' ||
    typeof parsed.grpc !== 'string' ||
    typeof parsed.mqtt !== 'string'
  ) {
    throw new Error(`not a node record: ${value}`)
  }
  return { nodeId: parsed.nodeId, grpc: parsed.grpc, mqtt: parsed.mqtt }
}

function parseQueueRecord(value: string): number {
  const parsed = JSON.parse(value) as { partitions?: unknown }
  if (
    typeof parsed.partitions !== 'number' ||
    !Number.isInteger(parsed.partitions) ||
    parsed.partitions < 1
  ) {
    throw new Error(`not a queue record: ${value}`)
  }
  return parsed.partitions
}
