/**
 * Makes this node's partitions match etcd and the ownership strategy, one step at a time, whenever
 * the cluster changes (docs/cluster.md#rebalance):
 *
 * - a partition nobody owns is claimed (etcd transaction) by the node the strategy picks among the
 *   live members, which then serves it;
 * - a partition this node owns but the strategy gives to another live member is handed over: stop
 *   delivering, return deliveries in flight, stream messages and group progress to the new owner,
 *   and only when it has them durably, record the new owner in etcd (transaction: only if this
 *   node is still the owner), then delete the local copy;
 * - a partition owned elsewhere is never served here (fencing), nor is anything while the etcd
 *   lease is unhealthy.
 *
 * The strategy runs over the members (nodes that joined and did not leave), not only the live ones:
 * a crashed node keeps its partitions (its data is on its disk) and they wait for it.
 */
import type { Logger } from '../observability/logger.js'
import type { PartitionHost } from '../queue/partition-ownership.js'
import type { EtcdCoordinator } from './coordinator.js'
import type { PeerClient } from './peer-client.js'
import { hashOwner } from './strategy.js'

/** After a failed hand-over the partition is served here again and the move retried after this. */
const HANDOVER_RETRY_MS = 2_000

export interface RebalancerOptions {
  readonly manager: PartitionHost
  readonly coordinator: EtcdCoordinator
  readonly peer: (nodeId: string) => PeerClient | undefined
  readonly logger: Logger
  /** Called after a partition started or stopped being served here (to drain forward buffers). */
  readonly onServedChanged: () => void
}

export class Rebalancer {
  private running = false
  private again = false
  private stopped = false
  private leaving = false
  private readonly retryAfter = new Map<string, number>()
  private retryTimer: NodeJS.Timeout | undefined
  private idleWaiters: Array<() => void> = []

  constructor(private readonly options: RebalancerOptions) {}

  /** Reconciles soon; calls during a run make it run once more. */
  schedule(): void {
    if (this.stopped) return
    if (this.running) {
      this.again = true
      return
    }
    this.running = true
    setImmediate(() => void this.run())
  }

  /** Graceful leave: from now on every owned partition is handed to the live members. */
  startLeaving(): void {
    this.leaving = true
    this.schedule()
  }

  /** Partitions this node still owns according to etcd. */
  ownedCount(): number {
    const { coordinator } = this.options
    let owned = 0
    for (const queue of coordinator.queueNames())
      for (const { owner } of coordinator.ownersOf(queue)) if (owner === coordinator.nodeId) owned++
    return owned
  }

  /** Resolves when no reconcile is running or scheduled. */
  idle(): Promise<void> {
    if (!this.running) return Promise.resolve()
    return new Promise((resolve) => this.idleWaiters.push(resolve))
  }

  stop(): void {
    this.stopped = true
    if (this.retryTimer !== undefined) clearTimeout(this.retryTimer)
  }

  /** Stops serving everything (fencing); etcd records stay as they are. */
  releaseAll(): void {
    const { coordinator, manager } = this.options
    for (const queue of coordinator.queueNames()) {
      const partitions = coordinator.partitionsOf(queue) ?? 0
      for (let partition = 0; partition < partitions; partition++) manager.releasePartition(queue, partition)
    }
    this.options.onServedChanged()
  }

  private async run(): Promise<void> {
    try {
      do {
        this.again = false
        await this.reconcile()
      } while (this.again && !this.stopped)
    } catch (err) {
      this.options.logger.error({ err }, 'rebalance step failed; retrying')
      this.retryLater(HANDOVER_RETRY_MS)
    } finally {
      this.running = false
      for (const resolve of this.idleWaiters.splice(0)) resolve()
    }
  }

  private async reconcile(): Promise<void> {
    const { coordinator, manager } = this.options
    const me = coordinator.nodeId
    if (!coordinator.isHealthy) {
      this.releaseAll()
      return
    }
    let changed = false
    for (const queue of coordinator.queueNames()) {
      const partitions = coordinator.partitionsOf(queue) ?? 0
      for (let partition = 0; partition < partitions; partition++) {
        if (this.stopped || !coordinator.isHealthy) return
        const owner = coordinator.ownerOf(queue, partition)
        if (owner === undefined) {
          if (this.leaving || hashOwner(queue, partition, this.liveMembers()) !== me) continue
          if (await coordinator.claim(queue, partition)) {
            this.options.logger.info({ queue, partition }, 'partition claimed')
            await manager.acquirePartition(queue, partition)
            changed = true
          }
        } else if (owner === me) {
          const target = this.targetFor(queue, partition)
          const key = `${queue}/${partition}`
          const waitUntil = this.retryAfter.get(key) ?? 0
          if (target !== undefined && target !== me && Date.now() >= waitUntil) {
            changed = true
            if (await this.handOver(queue, partition, target)) continue
            this.retryAfter.set(key, Date.now() + HANDOVER_RETRY_MS)
            this.retryLater(HANDOVER_RETRY_MS)
          }
          if (!manager.serves(queue, partition)) {
            await manager.acquirePartition(queue, partition)
            changed = true
          }
        } else if (manager.serves(queue, partition)) {
          manager.releasePartition(queue, partition)
          changed = true
        }
      }
    }
    if (changed) this.options.onServedChanged()
  }

  /** The live node that should own the partition, or undefined to keep it where it is. */
  private targetFor(queue: string, partition: number): string | undefined {
    const { coordinator } = this.options
    const me = coordinator.nodeId
    if (this.leaving) {
      const live = this.liveMembers().filter((node) => node !== me)
      const preferred = hashOwner(
        queue,
        partition,
        coordinator.memberIds().filter((node) => node !== me),
      )
      if (preferred !== undefined && coordinator.isAlive(preferred)) return preferred
      return hashOwner(queue, partition, live)
    }
    const target = hashOwner(queue, partition, coordinator.memberIds())
    // Only to a node that is up; a member that is down gets its partitions when it is back.
    return target !== undefined && coordinator.isAlive(target) ? target : undefined
  }

  private liveMembers(): string[] {
    const { coordinator } = this.options
    return coordinator.memberIds().filter((node) => coordinator.isAlive(node))
  }

  private async handOver(queue: string, partition: number, target: string): Promise<boolean> {
    const { manager, coordinator, logger } = this.options
    const peer = this.options.peer(target)
    if (peer === undefined) return false
    const started = Date.now()
    manager.releasePartition(queue, partition)
    this.options.onServedChanged()
    try {
      const snapshot = await manager.partitionSnapshot(queue, partition)
      const imported = await peer.importPartition(snapshot, (from, limit) =>
        manager.readPartition(queue, partition, from, limit),
      )
      let transferred: boolean
      try {
        transferred = await coordinator.transfer(queue, partition, target)
      } catch (err) {
        // The outcome is unknown: serving here again could overlap with the target. Stay released;
        // the next look at etcd decides (owner still this node: the hand-over is simply retried).
        logger.warn({ queue, partition, target, err }, 'hand-over outcome unknown; waiting for etcd')
        this.retryLater(HANDOVER_RETRY_MS)
        return true
      }
      if (!transferred) {
        logger.warn(
          { queue, partition, target },
          'hand-over not recorded: this node no longer owns the partition',
        )
        return true
      }
      await manager.dropPartition(queue, partition)
      logger.info(
        { queue, partition, to: target, messages: imported, ms: Date.now() - started },
        'partition handed over',
      )
      return true
    } catch (err) {
      logger.warn({ queue, partition, target, err }, 'hand-over failed; serving the partition here again')
      return false
    }
  }

  private retryLater(delayMs: number): void {
    if (this.retryTimer !== undefined || this.stopped) return
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined
      this.schedule()
    }, delayMs)
  }
}
