import type { CoreContext } from './core-context.js'
import type { DeadLetters, RedriveOptions } from './dead-letters.js'
import { QueueError, QueueErrorCodes } from './errors.js'
import { GroupProgress } from './group-progress.js'
import type { SnapshotSource } from './group-commit.js'
import type { GroupLifecycle } from './group-lifecycle.js'
import type { Queue } from './queue.js'
import type { QueueSettingsOverrides } from './settings.js'
import type { StoreOp } from './store.js'
import type { QueueMessage, QueueSettings } from './types.js'

/** One consumer group of a queue, as the admin API and metrics see it. */
export interface GroupStats {
  readonly name: string
  /** Client ids of the online members. */
  readonly consumers: string[]
  /** Messages this group has not settled yet (in flight included). */
  readonly backlog: number
  readonly inflight: number
  /** Named after a client id, not by `consumer-group`. */
  readonly implicit: boolean
  /** When a member was last online: now while it has members, else when the last one left. */
  readonly lastActiveAtMs: number
  /** When the group will be deleted if no member comes back; null when it never expires. */
  readonly expiresAtMs: number | null
}

export interface QueueStats {
  readonly name: string
  readonly settings: QueueSettings
  /** Messages stored. */
  readonly depth: number
  readonly inflight: number
  readonly consumers: number
  readonly groups: GroupStats[]
}

/** The queue core as the admin API, the CLI (through it) and metrics see it. */
export interface QueueAdmin {
  listQueues(): QueueStats[]
  /** Throws QUEUE_NOT_FOUND. */
  queueStats(name: string): QueueStats
  /** Creates a queue with its own settings, stored durably; they win over config. */
  createQueue(name: string, overrides: QueueSettingsOverrides): Promise<QueueStats>
  /**
   * Changes settings of a queue (merged over what it has). Partitions may grow, never shrink, and only
   * while the queue holds no message: a key's partition follows from the partition count, so its
   * newer messages would be delivered beside its older ones and per-key order would break.
   */
  updateQueue(name: string, overrides: QueueSettingsOverrides): Promise<QueueStats>
  /** Deletes a queue with its messages and groups; refused while consumers are online. */
  deleteQueue(name: string): Promise<void>
  /**
   * Deletes every stored message of a queue; groups stay, settled up to the last message. Deliveries
   * in flight are forgotten (their settles answer "already settled"). Returns how many were deleted.
   */
  purgeQueue(name: string): Promise<number>
  /** Deletes a consumer group and its progress; refused while it has members online. */
  deleteGroup(queueName: string, groupName: string): Promise<void>
  /** Up to `limit` stored messages, oldest first per partition, without consuming them. */
  peek(name: string, limit: number): Promise<QueueMessage[]>
  /** Dead letters of `name` not yet redriven or purged, oldest first. */
  deadLetters(name: string, limit: number): Promise<QueueMessage[]>
  /**
   * Puts dead letters of `name` back on `name` (one, by its id in the dead-letter queue, or up to
   * `limit`), each atomically with marking it handled in the dead-letter queue. Paced at
   * `ratePerSecond`; stops early when `name` is full. Returns how many went back.
   */
  redrive(name: string, options?: RedriveOptions): Promise<number>
  /** Stored messages of a queue, or undefined if it does not exist. */
  depth(queueName: string): number | undefined
}

/** Administration of the queues of this node. */
export class QueueAdministration implements QueueAdmin {
  constructor(
    private readonly ctx: CoreContext,
    private readonly groups: GroupLifecycle,
    private readonly deadLetterQueues: DeadLetters,
  ) {}

  listQueues(): QueueStats[] {
    return [...this.ctx.registry.queues.values()].map((queue) => this.statsOf(queue))
  }

  queueStats(name: string): QueueStats {
    return this.statsOf(this.ctx.registry.require(name))
  }

  async createQueue(name: string, overrides: QueueSettingsOverrides): Promise<QueueStats> {
    const { registry } = this.ctx
    this.ctx.assertOpen()
    registry.assertQueueName(name)
    if (registry.find(name) !== undefined)
      throw new QueueError(QueueErrorCodes.queueExists, `queue ${name} already exists`)
    const settings = registry.checkedSettings(name, overrides)
    registry.adminSettings.set(name, overrides)
    const queue = registry.getOrCreate(name)
    const snapshots = new Map<string, SnapshotSource>()
    for (const log of queue.logs) snapshots.set(log.commitKey, log.snapshot)
    await this.ctx.commits.commit(
      [{ type: 'putQueueSettings', record: { queue: name, settings: overrides } }],
      snapshots,
      settings.durability.sync,
    )
    return this.statsOf(queue)
  }

  async updateQueue(name: string, overrides: QueueSettingsOverrides): Promise<QueueStats> {
    const { registry } = this.ctx
    this.ctx.assertOpen()
    const queue = registry.require(name)
    const previous = registry.adminSettings.get(name) ?? {}
    const merged: QueueSettingsOverrides = {
      ...previous,
      ...overrides,
      ...(previous.retry || overrides.retry ? { retry: { ...previous.retry, ...overrides.retry } } : {}),
      ...(previous.durability || overrides.durability
        ? { durability: { ...previous.durability, ...overrides.durability } }
        : {}),
    }
    let settings = registry.checkedSettings(name, merged)
    // A partition change from config waits for the queue to be empty; other changes go through.
    if (queue.pendingPartitions !== undefined && overrides.partitions === undefined) {
      settings = { ...settings, partitions: queue.settings.partitions, ordering: queue.settings.ordering }
    }
    if (settings.partitions !== queue.settings.partitions && settings.partitions < queue.logs.length) {
      throw new QueueError(
        QueueErrorCodes.invalidSettings,
        `partitions of queue ${name} can grow but not shrink (has ${queue.logs.length}, asked ${settings.partitions})`,
      )
    }
    const stored = queue.depth()
    if (settings.partitions !== queue.settings.partitions && stored > 0) {
      throw new QueueError(
        QueueErrorCodes.queueNotEmpty,
        `partitions of queue ${name} cannot change while it holds ${stored} messages: keys would move to other partitions and their new messages could be delivered before their old ones; let the groups settle them (or purge the queue) first`,
      )
    }
    await this.ctx.commits.commit(
      [{ type: 'putQueueSettings', record: { queue: name, settings: merged } }],
      new Map(),
      settings.durability.sync,
    )
    registry.adminSettings.set(name, merged)
    queue.applySettings(settings)
    for (const group of queue.groups.values()) this.groups.scheduleExpiry(queue, group)
    return this.statsOf(queue)
  }

  async deleteQueue(name: string): Promise<void> {
    const { registry } = this.ctx
    this.ctx.assertOpen()
    const queue = registry.require(name)
    assertNoConsumers(queue)
    const ops: StoreOp[] = [{ type: 'deleteQueue', queue: name }]
    for (const [clientId, stored] of registry.memberships) {
      const kept = stored.filter((membership) => membership.queue !== name)
      for (const membership of stored)
        if (membership.queue === name) ops.push({ type: 'deleteMembership', membership })
      registry.memberships.set(clientId, kept)
    }
    forgetTimers(queue)
    registry.remove(name)
    await this.ctx.commits.commit(ops, new Map(), queue.settings.durability.sync)
    this.ctx.logger.info({ queue: name }, 'queue deleted')
  }

  async purgeQueue(name: string): Promise<number> {
    const { registry } = this.ctx
    this.ctx.assertOpen()
    const queue = registry.require(name)
    const purged = queue.depth()
    forgetTimers(queue)
    const snapshots = new Map<string, SnapshotSource>()
    for (const log of queue.logs) {
      log.clear()
      log.markCommitted(log.lastSeq)
      snapshots.set(log.commitKey, log.snapshot)
      for (const group of queue.groups.values()) {
        const fresh = new GroupProgress(name, group.name, log.partition, log.lastSeq)
        const old = group.progress[log.partition]
        for (const inflight of old?.inflight.values() ?? []) {
          inflight.member.inflight--
          inflight.member.consumer.inflight--
        }
        group.progress[log.partition] = fresh
        snapshots.set(fresh.commitKey, fresh.snapshot)
      }
    }
    const ops: StoreOp[] = [{ type: 'deleteQueue', queue: name }]
    const stored = registry.adminSettings.get(name)
    if (stored !== undefined)
      ops.push({ type: 'putQueueSettings', record: { queue: name, settings: stored } })
    for (const group of queue.groups.values()) ops.push({ type: 'putGroupRecord', record: group.record() })
    await this.ctx.commits.commit(ops, snapshots, queue.settings.durability.sync)
    this.ctx.logger.info({ queue: name, purged }, 'queue purged')
    if (queue.pendingPartitions !== undefined) registry.applyPendingLayout(queue)
    queue.wakeAll()
    return purged
  }

  async deleteGroup(queueName: string, groupName: string): Promise<void> {
    this.ctx.assertOpen()
    const queue = this.ctx.registry.require(queueName)
    const group = queue.groups.get(groupName)
    if (group === undefined) {
      throw new QueueError(
        QueueErrorCodes.groupNotFound,
        `group ${groupName} does not exist on queue ${queueName}`,
      )
    }
    if (group.members.length > 0) {
      throw new QueueError(
        QueueErrorCodes.queueInUse,
        `group ${groupName} of queue ${queueName} has ${group.members.length} consumers online`,
      )
    }
    await this.groups.remove(queue, group)
  }

  async peek(name: string, limit: number): Promise<QueueMessage[]> {
    const queue = this.ctx.registry.require(name)
    const perPartition = await Promise.all(
      queue.logs.map((log) => this.ctx.store.readMessages(name, log.partition, log.firstSeq, limit)),
    )
    return perPartition
      .flat()
      .sort((a, b) => a.enqueuedAtMs - b.enqueuedAtMs || a.partition - b.partition || a.seq - b.seq)
      .slice(0, limit)
  }

  deadLetters(name: string, limit: number): Promise<QueueMessage[]> {
    return this.deadLetterQueues.list(name, limit)
  }

  redrive(name: string, options?: RedriveOptions): Promise<number> {
    return this.deadLetterQueues.redrive(name, options)
  }

  depth(queueName: string): number | undefined {
    return this.ctx.registry.find(queueName)?.depth()
  }

  private statsOf(queue: Queue): QueueStats {
    const groups: GroupStats[] = []
    let inflight = 0
    const consumers = new Set<string>()
    const now = this.ctx.clock.now()
    for (const group of queue.groups.values()) {
      let groupInflight = 0
      for (const log of queue.servedLogs()) groupInflight += group.progress[log.partition]?.inflight.size ?? 0
      inflight += groupInflight
      const members = group.members.map((member) => member.consumer.connection.clientId)
      for (const member of members) consumers.add(member)
      groups.push({
        name: group.name,
        consumers: members,
        backlog: queue.backlogOf(group),
        inflight: groupInflight,
        implicit: group.implicit,
        lastActiveAtMs: group.idleSinceMs ?? now,
        expiresAtMs: group.expiresAtMs(queue.settings) ?? null,
      })
    }
    return {
      name: queue.name,
      settings: queue.settings,
      depth: queue.depth(),
      inflight,
      consumers: consumers.size,
      groups,
    }
  }
}

function assertNoConsumers(queue: Queue): void {
  for (const group of queue.groups.values()) {
    if (group.members.length > 0) {
      throw new QueueError(
        QueueErrorCodes.queueInUse,
        `queue ${queue.name} has consumers online (group ${group.name}); stop them first`,
      )
    }
  }
}

/** Cancels the deadlines and retry timers of a queue that is being purged or deleted. */
function forgetTimers(queue: Queue): void {
  for (const group of queue.groups.values()) {
    for (const progress of group.progress) {
      for (const inflight of progress?.inflight.values() ?? []) inflight.deadline.cancel()
      for (const entry of progress?.waiting.values() ?? []) entry.cancel()
    }
  }
}
