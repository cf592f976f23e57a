import type { CoreContext } from './core-context.js'
import type { Deliveries } from './deliveries.js'
import { QueueError, QueueErrorCodes } from './errors.js'
import { GroupProgress } from './group-progress.js'
import { assertPartitionNumber } from './message-id.js'
import type { Queue } from './queue.js'
import type { GroupPartitionState, PartitionMeta, StoreOp } from './store.js'
import type { PublishInput, QueueMessage, QueueService, QueueSettings } from './types.js'

/** A partition's stored bookkeeping, as one node hands it to another. */
export interface PartitionSnapshot {
  readonly meta: PartitionMeta
  readonly groups: readonly GroupPartitionState[]
}

/**
 * The local queue core as a cluster node drives it (src/cluster depends on this port, not on the
 * manager): the queue service itself, plus routing reads and the serving and hand-over of partitions.
 * A node serves a partition only between {@link acquirePartition} and {@link releasePartition}.
 */
export interface PartitionHost extends QueueService {
  /** Stores the message here (the local core never forwards): resolves with it once durable. */
  publish(input: PublishInput): Promise<QueueMessage>
  /**
   * Refuses (throws a QueueError) what `publish` would refuse for its name or size, without storing
   * anything: for a node that keeps a message until the partition's owner takes it.
   */
  checkPublish(input: PublishInput): void
  /** The partition a publish with this key goes to; refuses a bad queue name; creates no queue. */
  partitionFor(queueName: string, partitionKey: string | undefined): number
  /** The settings a queue has (or would have, once used) on this node; creates no queue. */
  settingsOf(queueName: string): QueueSettings
  serves(queueName: string, partition: number): boolean
  /**
   * Starts serving a partition this node now owns: its counters and group progress are read back from
   * storage (written there by this node earlier or by {@link importPartition}), then its worker runs.
   */
  acquirePartition(queueName: string, partition: number): Promise<void>
  /**
   * Stops serving a partition: no more deliveries, publishes or settles; deliveries in flight return
   * (their attempts stay counted) and pending retries are dropped (they are due again on acquire).
   */
  releasePartition(queueName: string, partition: number): void
  /** The bookkeeping of a partition this node does not serve, for handing it to another node. */
  partitionSnapshot(queueName: string, partition: number): Promise<PartitionSnapshot>
  /** Stored messages of a partition from `fromSeq` on, for streaming it to another node. */
  readPartition(queueName: string, partition: number, fromSeq: number, limit: number): Promise<QueueMessage[]>
  /**
   * Stores a partition handed over by another node, durably (the last batch is synced), without
   * serving it: the node serves it after it owns it, through {@link acquirePartition}. Groups known
   * here but absent from the snapshot start over at the partition's oldest message. Returns how many
   * messages were stored.
   */
  importPartition(snapshot: PartitionSnapshot, batches: AsyncIterable<QueueMessage[]>): Promise<number>
  /** Deletes what this node stored of a partition it handed to another node. */
  dropPartition(queueName: string, partition: number): Promise<void>
}

/** The partition half of {@link PartitionHost}, implemented by {@link PartitionOwnership}. */
export type PartitionOwnershipApi = Omit<PartitionHost, keyof QueueService | 'checkPublish'>

/** Writes of a partition import go to storage in batches of this many messages. */
const IMPORT_BATCH = 500

/** Which partitions this node serves, and their hand-over between nodes. */
export class PartitionOwnership implements PartitionOwnershipApi {
  constructor(
    private readonly ctx: CoreContext,
    private readonly deliveries: Deliveries,
  ) {}

  partitionFor(queueName: string, partitionKey: string | undefined): number {
    this.ctx.registry.assertQueueName(queueName)
    return this.ctx.registry.partitionFor(queueName, partitionKey)
  }

  settingsOf(queueName: string): QueueSettings {
    this.ctx.registry.assertQueueName(queueName)
    return this.ctx.registry.settingsOf(queueName)
  }

  serves(queueName: string, partition: number): boolean {
    const queue = this.ctx.registry.find(queueName)
    if (queue === undefined) return this.ctx.registry.servesByDefault(queueName)
    return partition < queue.logs.length && queue.isServed(partition)
  }

  async acquirePartition(queueName: string, partition: number): Promise<void> {
    const { registry } = this.ctx
    this.ctx.assertOpen()
    registry.assertQueueName(queueName)
    assertPartitionNumber(partition)
    const queue = registry.getOrCreate(queueName)
    queue.ensurePartitions(partition + 1)
    if (queue.isServed(partition)) return
    await this.ctx.commits.commit([], new Map(), false) // everything written so far has landed
    const state = await this.ctx.store.loadState()
    if (queue.isServed(partition)) return
    const meta = state.partitions.find((m) => m.queue === queueName && m.partition === partition)
    const log = queue.log(partition)
    log.restore(meta ?? { lastSeq: 0, count: 0 })
    const stored = new Map<string, GroupPartitionState>()
    for (const group of state.groups) {
      if (group.queue !== queueName || group.partition !== partition) continue
      stored.set(group.group, group)
      registry.groupOf(queue, group.group)
    }
    for (const group of queue.groups.values()) {
      const state = stored.get(group.name)
      group.progress[partition] =
        state === undefined
          ? new GroupProgress(queueName, group.name, partition, log.firstSeq - 1)
          : GroupProgress.fromState(state)
    }
    queue.setServed(partition, true)
    this.ctx.logger.info({ queue: queueName, partition, depth: log.count }, 'partition acquired')
    queue.wake(partition)
  }

  releasePartition(queueName: string, partition: number): void {
    const queue = this.ctx.registry.find(queueName)
    if (queue === undefined || partition >= queue.logs.length || !queue.isServed(partition)) return
    if (this.ctx.registry.servesByDefault(queueName)) return
    queue.setServed(partition, false)
    let returned = 0
    for (const group of queue.groups.values()) {
      const progress = group.progress[partition]
      if (progress === undefined) continue
      for (const entry of progress.waiting.values()) entry.cancel()
      progress.waiting.clear()
      for (const seq of [...progress.inflight.keys()]) {
        this.deliveries.releaseInflight(queue, progress, seq)
        returned++
      }
    }
    this.ctx.logger.info({ queue: queueName, partition, returned }, 'partition released')
  }

  async partitionSnapshot(queueName: string, partition: number): Promise<PartitionSnapshot> {
    const queue = this.releasedPartitionOf(queueName, partition)
    await this.ctx.commits.commit([], new Map(), false)
    const log = queue.log(partition)
    const groups: GroupPartitionState[] = []
    for (const group of queue.groups.values()) {
      const progress = group.progress[partition]
      if (progress !== undefined) groups.push(progress.toState())
    }
    return { meta: { queue: queueName, partition, lastSeq: log.lastSeq, count: log.count }, groups }
  }

  readPartition(
    queueName: string,
    partition: number,
    fromSeq: number,
    limit: number,
  ): Promise<QueueMessage[]> {
    return this.ctx.store.readMessages(queueName, partition, fromSeq, limit)
  }

  async importPartition(
    snapshot: PartitionSnapshot,
    batches: AsyncIterable<QueueMessage[]>,
  ): Promise<number> {
    const { queue: queueName, partition } = snapshot.meta
    this.ctx.assertOpen()
    this.ctx.registry.assertQueueName(queueName)
    assertPartitionNumber(partition)
    const queue = this.ctx.registry.getOrCreate(queueName)
    queue.ensurePartitions(partition + 1)
    this.releasedPartitionOf(queueName, partition)
    let imported = 0
    let ops: StoreOp[] = []
    for await (const batch of batches) {
      for (const message of batch) {
        if (message.queue !== queueName || message.partition !== partition) {
          throw new QueueError(
            QueueErrorCodes.invalidPartition,
            `message ${message.id} of ${message.queue} does not belong to partition ${partition} of ${queueName}`,
          )
        }
        ops.push({ type: 'putMessage', message })
        imported++
      }
      if (ops.length >= IMPORT_BATCH) {
        await this.ctx.commits.commit(ops, new Map(), false)
        ops = []
      }
    }
    const incoming = new Set(snapshot.groups.map((group) => group.group))
    ops.push({ type: 'putPartitionMeta', meta: snapshot.meta })
    for (const state of snapshot.groups) ops.push({ type: 'putGroupState', state })
    for (const group of queue.groups.keys()) {
      if (!incoming.has(group)) ops.push({ type: 'deleteGroupState', queue: queueName, group, partition })
    }
    await this.ctx.commits.commit(ops, new Map(), true)
    return imported
  }

  async dropPartition(queueName: string, partition: number): Promise<void> {
    const queue = this.releasedPartitionOf(queueName, partition)
    const log = queue.log(partition)
    const deletes = log.deleteThrough(log.lastSeq)
    for (let at = 0; at < deletes.length; at += IMPORT_BATCH)
      await this.ctx.commits.commit(deletes.slice(at, at + IMPORT_BATCH), new Map(), false)
    const ops: StoreOp[] = [log.metaOp()]
    for (const group of queue.groups.values()) {
      group.progress[partition] = new GroupProgress(queueName, group.name, partition, log.lastSeq)
      ops.push({ type: 'deleteGroupState', queue: queueName, group: group.name, partition })
    }
    await this.ctx.commits.commit(ops, new Map(), false)
  }

  private releasedPartitionOf(queueName: string, partition: number): Queue {
    const queue = this.ctx.registry.require(queueName)
    if (partition >= queue.logs.length || queue.isServed(partition)) {
      throw new QueueError(
        QueueErrorCodes.partitionNotServed,
        `partition ${partition} of queue ${queueName} must be released (not served) first`,
      )
    }
    return queue
  }
}
