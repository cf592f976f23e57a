import type { CoreContext } from './core-context.js'
import { QueueError, QueueErrorCodes } from './errors.js'
import type { SnapshotSource } from './group-commit.js'
import type { GroupProgress } from './group-progress.js'
import { formatMessageId } from './message-id.js'
import type { Queue } from './queue.js'
import type { StoreOp } from './store.js'
import type { QueueMessage } from './types.js'

/** Where snapshot keys are collected: a Map handed to one commit, or the next batch directly. */
export interface SnapshotSink {
  set(key: string, source: SnapshotSource): unknown
}

/** No ops for a commit (one shared array, not a new one per publish or delivery). */
export const NO_OPS: readonly StoreOp[] = []

/**
 * The writes every role makes: a message appended and committed, a seq settled for a group with the
 * messages every group has now settled deleted (retention).
 */
export class CoreWrites {
  /** Snapshots put here go straight into the group-commit batch being gathered. */
  private readonly nextBatch: SnapshotSink

  constructor(private readonly ctx: CoreContext) {
    const commits = ctx.commits
    this.nextBatch = { set: (key, source) => commits.addSnapshot(key, source) }
  }

  /** Appends a message to a partition's log (not yet visible to its worker: see {@link commitAppend}). */
  append(
    queue: Queue,
    partition: number,
    content: Pick<QueueMessage, 'payload' | 'properties' | 'enqueuedAtMs'>,
    expiresAtMs?: number,
  ): QueueMessage {
    const log = queue.log(partition)
    const seq = log.nextSeq()
    const message: { -readonly [K in keyof QueueMessage]: QueueMessage[K] } = {
      id: formatMessageId(partition, seq),
      queue: queue.name,
      partition,
      seq,
      payload: content.payload,
      properties: content.properties,
      enqueuedAtMs: content.enqueuedAtMs,
    }
    // Set only when there is one (no spread of a conditional object per publish): the field stays absent.
    if (expiresAtMs !== undefined) message.expiresAtMs = expiresAtMs
    log.append(message)
    return message
  }

  /** Commits an appended message with `ops`, then makes it visible to the partition's worker. */
  async commitAppend(
    queue: Queue,
    message: QueueMessage,
    ops: readonly StoreOp[],
    snapshots: Map<string, SnapshotSource> | undefined,
    sync: boolean,
  ): Promise<void> {
    const log = queue.log(message.partition)
    if (snapshots === undefined) this.ctx.commits.addSnapshot(log.commitKey, log.snapshot)
    else snapshots.set(log.commitKey, log.snapshot)
    const put: StoreOp = { type: 'putMessage', message }
    let batch: readonly StoreOp[] = ops.length === 0 ? [put] : [put, ...ops]
    // The partition count goes with the messages placed by it, so a restart can tell a changed one.
    const partitions = queue.settings.partitions
    const layoutChanged = queue.storedPartitions !== partitions
    if (layoutChanged)
      batch = [...batch, { type: 'putQueueLayout', layout: { queue: queue.name, partitions } }]
    try {
      await this.ctx.commits.commit(batch, snapshots, sync)
    } catch (error) {
      this.ctx.logger.error(
        { err: error, queue: queue.name, partition: message.partition, messageId: message.id },
        'storage write failed',
      )
      throw new QueueError(QueueErrorCodes.storageFailure, 'storage write failed', { cause: error })
    }
    if (layoutChanged) queue.storedPartitions = partitions
    log.markCommitted(message.seq)
    queue.wake(message.partition)
  }

  /** Settles `seq` for the group and commits it, with what retention may now delete. */
  async commitSettled(queue: Queue, progress: GroupProgress, seq: number): Promise<void> {
    // settleOps without a Map per settle: the snapshots go straight into the batch being gathered.
    const ops = this.settleInto(this.nextBatch, queue, progress, seq)
    await this.ctx.commits.commit(ops, undefined, queue.settings.durability.sync)
  }

  /** Settles `seq` for the group and deletes what every group of the queue has now settled. */
  settleOps(
    queue: Queue,
    progress: GroupProgress,
    seq: number,
  ): { ops: StoreOp[]; snapshots: Map<string, SnapshotSource> } {
    const snapshots = new Map<string, SnapshotSource>()
    const ops = this.settleInto(snapshots, queue, progress, seq)
    return { ops, snapshots }
  }

  /** Deletes the messages of a partition that every group has settled (none while no group exists). */
  retentionOps(queue: Queue, partition: number, snapshots: SnapshotSink): StoreOp[] {
    const log = queue.log(partition)
    let floor = Infinity
    for (const group of queue.groups.values()) {
      floor = Math.min(floor, group.progress[partition]?.ackFloor ?? log.firstSeq - 1)
    }
    if (floor === Infinity || floor < log.firstSeq) return []
    snapshots.set(log.commitKey, log.snapshot)
    return log.deleteThrough(floor)
  }

  private settleInto(snapshots: SnapshotSink, queue: Queue, progress: GroupProgress, seq: number): StoreOp[] {
    snapshots.set(progress.commitKey, progress.snapshot)
    return progress.settle(seq) ? this.retentionOps(queue, progress.partition, snapshots) : []
  }
}
