import type { ConsumerGroup } from './consumer-group.js'
import type { CoreContext } from './core-context.js'
import type { SnapshotSource } from './group-commit.js'
import type { Queue } from './queue.js'
import type { GroupRecord, StoreOp } from './store.js'
import type { CoreWrites } from './writes.js'

/**
 * Group lifecycle: a group with no member online for its expiry (`groupExpiryMs`, or
 * `implicitGroupExpiryMs` for a group named after a client id) is deleted, and the messages only it
 * still held go with it. Idle-since is stored, so a restart does not reset the clock.
 */
export class GroupLifecycle {
  constructor(
    private readonly ctx: CoreContext,
    private readonly writes: CoreWrites,
  ) {}

  /** The last member left: the group's expiry clock starts, durably. */
  idle(queue: Queue, group: ConsumerGroup): void {
    group.idleSinceMs = this.ctx.clock.now()
    this.scheduleExpiry(queue, group)
    this.ctx.commits
      .commit([{ type: 'putGroupRecord', record: group.record() }], new Map(), false)
      .catch((error: unknown) => this.ctx.logWriteFailure(error, { queue: queue.name, group: group.name }))
  }

  /** (Re)arms the expiry of an idle group under the queue's current settings. */
  scheduleExpiry(queue: Queue, group: ConsumerGroup): void {
    group.expiry?.cancel()
    group.expiry = undefined
    const dueAtMs = group.expiresAtMs(queue.settings)
    if (dueAtMs === undefined || group.members.length > 0) return
    group.expiry = this.ctx.timers.schedule(dueAtMs, () => {
      group.expiry = undefined
      void this.expire(queue, group).catch((error: unknown) =>
        this.ctx.logWriteFailure(error, { queue: queue.name, group: group.name }),
      )
    })
  }

  /**
   * Groups as stored: implicit or not, idle since when. A group without a record (written before
   * records existed, or imported from another node), or one that had members when the node stopped,
   * is idle from now, and that is written down so the next restart does not move its clock again.
   */
  async restore(records: readonly GroupRecord[]): Promise<void> {
    const { registry } = this.ctx
    const now = this.ctx.clock.now()
    const stored = new Map<string, GroupRecord>()
    for (const record of records) stored.set(`${record.queue}\u0000${record.group}`, record)
    const ops: StoreOp[] = []
    for (const record of records) registry.groupOf(registry.getOrCreate(record.queue), record.group)
    for (const queue of registry.queues.values()) {
      for (const group of queue.groups.values()) {
        if (group.name.startsWith('$')) continue
        const record = stored.get(`${queue.name}\u0000${group.name}`)
        group.implicit = record?.implicit ?? false
        group.idleSinceMs = record?.idleSinceMs ?? now
        if (record?.idleSinceMs === undefined) ops.push({ type: 'putGroupRecord', record: group.record() })
        this.scheduleExpiry(queue, group)
      }
    }
    if (ops.length > 0) await this.ctx.commits.commit(ops, new Map(), false)
  }

  /** Deletes a group without members and the messages only it still held (an admin delete, an expiry). */
  async remove(queue: Queue, group: ConsumerGroup): Promise<void> {
    for (const progress of group.progress)
      for (const entry of progress?.waiting.values() ?? []) entry.cancel()
    group.expiry?.cancel()
    group.expiry = undefined
    queue.groups.delete(group.name)
    const ops: StoreOp[] = [{ type: 'deleteGroupRecord', queue: queue.name, group: group.name }]
    const snapshots = new Map<string, SnapshotSource>()
    for (const log of queue.logs) {
      ops.push({ type: 'deleteGroupState', queue: queue.name, group: group.name, partition: log.partition })
      ops.push(...this.writes.retentionOps(queue, log.partition, snapshots))
    }
    await this.ctx.commits.commit(ops, snapshots, queue.settings.durability.sync)
  }

  private async expire(queue: Queue, group: ConsumerGroup): Promise<void> {
    if (!this.ctx.opened || queue.groups.get(group.name) !== group || group.members.length > 0) return
    const backlog = queue.backlogOf(group)
    this.ctx.logger.info(
      {
        queue: queue.name,
        group: group.name,
        implicit: group.implicit,
        idleSinceMs: group.idleSinceMs,
        backlog,
      },
      'consumer group expired: no member for its expiry; its messages are released',
    )
    this.ctx.observer.groupExpired(queue.name, group.name)
    await this.remove(queue, group)
  }
}
