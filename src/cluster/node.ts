/**
 * A node as a cluster member (config `cluster.etcd` set): the etcd coordinator, the rebalancer, the
 * peer gRPC service, the partition-owner announcements, and the routing {@link ClusterQueues} that
 * the MQTT adapter uses instead of the local queue core. Built by the composition root (src/compose.ts)
 * from what it needs: the core's partition-ownership port, the opened forward buffer, the gRPC server
 * to add the peer service to. It joins etcd in {@link ClusterNode.join}, once the listeners are bound
 * (their real ports are what other nodes need).
 */
import type { ClusterView } from '../admin/service.js'
import type { ClusterConfig } from '../config/index.js'
import type { GrpcServer } from '../net/grpc.js'
import type { Logger } from '../observability/logger.js'
import type { PartitionHost } from '../queue/partition-ownership.js'
import type { ForwardBuffer } from '../storage/forward/forward-buffer.js'
import { ClusterQueues } from './cluster-queues.js'
import { EtcdCoordinator } from './coordinator.js'
import type { ClusterFigures } from './metrics.js'
import { attachClusterService } from './peer-server.js'
import { Rebalancer } from './rebalancer.js'

/** Where direct-routing clients find which node owns which partition (retained, JSON). */
export const OWNERSHIP_TOPIC_PREFIX = '$SYS/spool/cluster/partitions/'

/** Publishes a retained message on the node's own broker (the MQTT edge implements it). */
export type RetainedPublisher = (topic: string, payload: Buffer) => void

export interface ClusterNodeOptions {
  readonly nodeId: string
  readonly config: ClusterConfig
  /** `queues.declared`: registered in etcd on joining. */
  readonly declaredQueues: readonly string[]
  /** The local queue core, which serves the partitions this node owns. */
  readonly manager: PartitionHost
  /** Open; closed by whoever opened it, after {@link ClusterNode.close}. */
  readonly buffer: ForwardBuffer
  /** The node's gRPC server (`grpc.port`, required in a cluster): the peer service is added to it. */
  readonly grpc: GrpcServer
  readonly logger: Logger
}

export interface ClusterNode {
  readonly queues: ClusterQueues
  /** The cluster's gauges (cluster/metrics.ts), read at scrape time. */
  readonly figures: ClusterFigures
  /** The `/readyz` check: joined, and the etcd lease is healthy. */
  isReady(): boolean
  /** Members, liveness and partition owners as this node sees them (admin API). */
  view(): ClusterView
  /** Where partition owners are announced (retained, {@link OWNERSHIP_TOPIC_PREFIX}); set before {@link join}. */
  announceOwnershipWith(publish: RetainedPublisher): void
  /** Registers the node in etcd with its bound ports, then starts taking partitions. */
  join(ports: { readonly mqttPort: number; readonly grpcPort: number }): Promise<void>
  /** Ends the open peer Consume streams (first at shutdown: a graceful gRPC stop would wait for them). */
  endStreams(): void
  /** Graceful leave: hand every owned partition to the other live nodes and empty the forward buffer. */
  leave(timeoutMs: number): Promise<void>
  close(): Promise<void>
}

export function createClusterNode(options: ClusterNodeOptions): ClusterNode {
  const { nodeId, config, manager, buffer } = options
  const log = options.logger.child({ component: 'cluster' })
  const coordinator = new EtcdCoordinator({
    endpoints: config.etcd,
    prefix: config.prefix,
    nodeId,
    leaseTtlSeconds: config.leaseTtlSeconds,
    logger: log,
  })
  const queues = new ClusterQueues({
    nodeId,
    manager,
    coordinator,
    buffer,
    routing: config.routing,
    logger: log,
  })
  const ownership = new OwnershipAnnouncer(coordinator, config.routing)
  const rebalancer = new Rebalancer({
    manager,
    coordinator,
    peer: (peerId) => queues.peer(peerId),
    logger: log,
    onServedChanged: () => queues.drainSoon(),
  })
  const peerService = attachClusterService(options.grpc, queues, log)
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

  let closed = false
  return {
    queues,
    figures: {
      etcdHealthy: () => started && coordinator.isHealthy,
      partitionsOwned: () => rebalancer.ownedCount(),
      forwardBufferMessages: () => queues.bufferedCount(),
      nodes: () => ({ members: coordinator.memberIds().length, alive: coordinator.aliveIds().length }),
    },
    isReady: () => started && coordinator.isHealthy,
    announceOwnershipWith(publish) {
      ownership.publish = publish
    },
    async join(ports) {
      try {
        await coordinator.start({
          nodeId,
          grpc: `${config.advertise}:${ports.grpcPort}`,
          mqtt: `${config.advertise}:${ports.mqttPort}`,
        })
      } catch (err) {
        throw new Error(
          `cannot join the cluster: etcd at ${config.etcd.join(',')} did not answer (${err instanceof Error ? err.message : String(err)})`,
          { cause: err },
        )
      }
      for (const queue of options.declaredQueues) await queues.registerQueue(queue)
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
    },
    endStreams() {
      peerService.endStreams()
    },
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
            self: id === nodeId,
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
  /** Set by {@link ClusterNode.announceOwnershipWith}; nothing is announced without it. */
  publish: RetainedPublisher | undefined

  constructor(
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
    const publish = this.publish
    if (publish === undefined) return
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
      publish(OWNERSHIP_TOPIC_PREFIX + queue, Buffer.from(payload))
    }
  }
}
