/**
 * Turns a node into a cluster member (config `cluster.etcd` set): the forward buffer under
 * `<dataDir>/forward`, the etcd coordinator, the rebalancer, the peer gRPC service, and the routing
 * {@link ClusterQueues} that the MQTT adapter uses instead of the local queue core. Registration in
 * etcd waits until the listeners are bound (their real ports are what other nodes need).
 */
import { join } from 'node:path'
import type { Logger } from '../observability/logger.js'
import type { ClusterView } from '../admin/service.js'
import type { PartitionHost } from '../queue/partition-ownership.js'
import type { ServerContext } from '../server.js'
import { ClusterQueues } from './cluster-queues.js'
import { EtcdCoordinator } from './coordinator.js'
import { ForwardBuffer } from '../storage/forward/forward-buffer.js'
import { registerClusterMetrics } from './metrics.js'
import { attachClusterService } from './peer-server.js'
import { Rebalancer } from './rebalancer.js'

/** Where direct-routing clients find which node owns which partition (retained, JSON). */
export const OWNERSHIP_TOPIC_PREFIX = '$SYS/spool/cluster/partitions/'

export interface ClusterNode {
  readonly queues: ClusterQueues
  readonly coordinator: EtcdCoordinator
  /** Members, liveness and partition owners as this node sees them (admin API). */
  view(): ClusterView
  /** Graceful leave: hand every owned partition to the other live nodes and empty the forward buffer. */
  leave(timeoutMs: number): Promise<void>
  close(): Promise<void>
}

export async function attachCluster(
  ctx: ServerContext,
  manager: PartitionHost,
  logger: Logger,
): Promise<ClusterNode> {
  const config = ctx.config.cluster
  const grpc = ctx.grpc
  if (grpc === null) throw new Error('a cluster node needs grpc.port')
  const log = logger.child({ component: 'cluster' })
  const buffer = new ForwardBuffer(join(ctx.dataDir, 'forward'))
  await buffer.open()
  const coordinator = new EtcdCoordinator({
    endpoints: config.etcd,
    prefix: config.prefix,
    nodeId: ctx.config.nodeId,
    leaseTtlSeconds: config.leaseTtlSeconds,
    logger: log,
  })
  const queues = new ClusterQueues({
    nodeId: ctx.config.nodeId,
    manager,
    coordinator,
    buffer,
    routing: config.routing,
    logger: log,
  })
  const ownership = new OwnershipAnnouncer(ctx, coordinator, config.routing)
  const rebalancer = new Rebalancer({
    manager,
    coordinator,
    peer: (nodeId) => queues.peer(nodeId),
    logger: log,
    onServedChanged: () => queues.drainSoon(),
  })
  const peerService = attachClusterService(grpc, queues, log)
  let started = false

  coordinator.on('change', () => {
    queues.refreshPeers()
    rebalancer.schedule()
    queues.drainSoon()
    ownership.announceSoon()
  })
  coordinator.on('health', (healthy: boolean) => {
    if (!healthy) rebalancer.releaseAll()
    rebalancer.schedule()
  })
  ctx.addReadinessCheck('cluster', () => started && coordinator.isHealthy)
  registerClusterMetrics(ctx.metrics.registry, {
    etcdHealthy: () => started && coordinator.isHealthy,
    partitionsOwned: () => rebalancer.ownedCount(),
    forwardBufferMessages: () => queues.bufferedCount(),
    nodes: () => ({ members: coordinator.memberIds().length, alive: coordinator.aliveIds().length }),
  })
  ctx.onStopping(() => peerService.endStreams())
  ctx.onListening(async (ports) => {
    if (ports.grpcPort === null) throw new Error('a cluster node needs grpc.port')
    try {
      await coordinator.start({
        nodeId: ctx.config.nodeId,
        grpc: `${config.advertise}:${ports.grpcPort}`,
        mqtt: `${config.advertise}:${ports.mqttPort}`,
      })
    } catch (err) {
      throw new Error(
        `cannot join the cluster: etcd at ${config.etcd.join(',')} did not answer (${err instanceof Error ? err.message : String(err)})`,
        { cause: err },
      )
    }
    for (const queue of Object.keys(ctx.config.queues.declared)) await queues.registerQueue(queue)
    started = true
    log.info(
      {
        etcd: config.etcd,
        routing: config.routing,
        members: coordinator.memberIds(),
        alive: coordinator.aliveIds(),
      },
      'joined the cluster',
    )
    queues.refreshPeers()
    rebalancer.schedule()
  })

  let closed = false
  return {
    queues,
    coordinator,
    view() {
      const owned = new Map<string, number>()
      const queueOwners = coordinator.queueNames().map((name) => ({
        name,
        owners: coordinator.ownersOf(name).map(({ partition, owner }) => {
          if (owner !== undefined) owned.set(owner, (owned.get(owner) ?? 0) + 1)
          return { partition, owner: owner ?? null }
        }),
      }))
      const ids = [...new Set([...coordinator.memberIds(), ...coordinator.aliveIds()])].sort()
      return {
        mode: 'cluster',
        routing: config.routing,
        healthy: coordinator.isHealthy,
        nodes: ids.map((id) => {
          const addresses = coordinator.addressesOf(id)
          return {
            id,
            self: id === ctx.config.nodeId,
            alive: coordinator.isAlive(id),
            ...(addresses === undefined ? {} : { mqtt: addresses.mqtt, grpc: addresses.grpc }),
            partitions: owned.get(id) ?? 0,
          }
        }),
        queues: queueOwners,
        forwardBuffer: queues.bufferedCount(),
      }
    },
    async leave(timeoutMs) {
      if (!started || !coordinator.isHealthy) return
      const deadline = Date.now() + timeoutMs
      await coordinator.leave()
      rebalancer.startLeaving()
      while (rebalancer.ownedCount() > 0 && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 50))
        rebalancer.schedule()
        await rebalancer.idle()
      }
      const left = await queues.flushBuffer(Math.max(0, deadline - Date.now()))
      log.info(
        { partitionsKept: rebalancer.ownedCount(), bufferedKept: left },
        'left the cluster' + (left > 0 ? '; buffered messages stay on disk until this node returns' : ''),
      )
    },
    async close() {
      if (closed) return
      closed = true
      ownership.stop()
      rebalancer.stop()
      queues.close()
      await coordinator.stop({ revoke: true })
      await buffer.close()
    },
  }
}

/**
 * Publishes each queue's partition owners, retained, on `$SYS/spool/cluster/partitions/<queue>`, so
 * clients (direct routing) can connect to the right node; only queues whose owners changed.
 */
class OwnershipAnnouncer {
  private readonly last = new Map<string, string>()
  private scheduled: NodeJS.Timeout | undefined
  private stopped = false

  constructor(
    private readonly ctx: ServerContext,
    private readonly coordinator: EtcdCoordinator,
    private readonly routing: string,
  ) {}

  announceSoon(): void {
    if (this.scheduled !== undefined || this.stopped) return
    this.scheduled = setTimeout(() => {
      this.scheduled = undefined
      this.announce()
    }, 100)
  }

  stop(): void {
    this.stopped = true
    if (this.scheduled !== undefined) clearTimeout(this.scheduled)
  }

  private announce(): void {
    for (const queue of this.coordinator.queueNames()) {
      const partitions = this.coordinator.ownersOf(queue).map(({ partition, owner }) => ({
        partition,
        owner: owner ?? null,
        mqtt: owner === undefined ? null : (this.coordinator.addressesOf(owner)?.mqtt ?? null),
        alive: owner !== undefined && this.coordinator.isAlive(owner),
      }))
      const payload = JSON.stringify({ queue, routing: this.routing, partitions })
      if (this.last.get(queue) === payload) continue
      this.last.set(queue, payload)
      this.ctx.aedes.publish(
        {
          cmd: 'publish',
          topic: OWNERSHIP_TOPIC_PREFIX + queue,
          payload: Buffer.from(payload),
          qos: 0,
          retain: true,
          dup: false,
        },
        () => undefined,
      )
    }
  }
}
