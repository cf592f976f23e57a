import { setTimeout as sleep } from 'node:timers/promises'
import { retryDelayMs } from './backoff.js'
import { systemClock, type Clock } from './clock.js'
import { ConsumerGroup, ConsumerState, Member } from './consumer-group.js'
import { QueueError, QueueErrorCodes, type QueueErrorCode } from './errors.js'
import { GroupCommit, type SnapshotSource } from './group-commit.js'
import { GroupProgress, type Inflight } from './group-progress.js'
import { silentLogger, type QueueLogger } from './logger.js'
import { storedMessageBytes } from './message-size.js'
import { silentObserver, type QueueObserver } from './observer.js'
import type { DeliveryHost } from './partition-worker.js'
import { assertPartitionNumber, formatMessageId, parseMessageId } from './message-id.js'
import { Queue } from './queue.js'
import {
  DEAD_LETTER_PREFIX,
  queueNameProblem,
  resolveQueueSettings,
  settingsProblem,
  type QueueSettingsOverrides,
} from './settings.js'
import type {
  GroupPartitionState,
  GroupRecord,
  Membership,
  PartitionMeta,
  QueueStore,
  StoreOp,
} from './store.js'
import { TimerQueue } from './timer-queue.js'
import {
  DEFAULT_QUEUE_SETTINGS,
  DeadLetterReasons,
  Orderings,
  SettleActions,
  type ConsumerConnection,
  type DeadLetterReason,
  type MessageProperties,
  type PublishInput,
  type QueueMessage,
  type QueueService,
  type QueueSettings,
  type SettleInput,
  type SubscribeOptions,
} from './types.js'

export interface QueueManagerOptions {
  store: QueueStore
  /** Settings of every queue not declared below. */
  defaults?: QueueSettings
  /** Queues with their own settings, by name (without `$queue/`). */
  declared?: Readonly<Record<string, QueueSettingsOverrides>>
  clock?: Clock
  logger?: QueueLogger
  observer?: QueueObserver
  /**
   * False on a cluster node: a partition is served only after {@link QueueManager.acquirePartition}
   * (the node owns it) and until {@link QueueManager.releasePartition}. Dead-letter queues are
   * node-local and always served. Default true (a single node serves everything).
   */
  servesAllPartitions?: boolean
  /**
   * Whether a consumer that names no group may join the one derived from its client id (an implicit
   * group, see {@link SubscribeOptions.implicitGroup}). Default true.
   */
  implicitGroups?: boolean
}

/** A partition's stored bookkeeping, as one node hands it to another. */
export interface PartitionSnapshot {
  readonly meta: PartitionMeta
  readonly groups: readonly GroupPartitionState[]
}

/** Writes of a partition import go to storage in batches of this many messages. */
const IMPORT_BATCH = 500

const NO_OPS: readonly StoreOp[] = []

/** Where snapshot keys are collected: a Map handed to one commit, or the next batch directly. */
interface SnapshotSink {
  set(key: string, source: SnapshotSource): unknown
}

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

/**
 * A group that exists on every dead-letter queue and never has members: its progress marks the dead
 * letters an operator has not acted on yet (redrive or purge), and it keeps them stored until then.
 */
export const PENDING_DEAD_LETTERS_GROUP = '$pending'

export { DEAD_LETTER_PREFIX, parseMessageId }

/**
 * The queue core: owns queues, consumer groups, deliveries and settles, and is the only writer of
 * the store. Everything in memory is derived from the store at {@link open}; every change is
 * written through one {@link GroupCommit}.
 */
export class QueueManager implements QueueService, DeliveryHost {
  readonly logger: QueueLogger
  private readonly store: QueueStore
  private readonly clock: Clock
  private readonly timers: TimerQueue
  private readonly commits: GroupCommit
  private readonly defaults: QueueSettings
  private readonly declared: Readonly<Record<string, QueueSettingsOverrides>>
  /** Settings given through the admin API, by queue; they win over config. */
  private readonly adminSettings = new Map<string, QueueSettingsOverrides>()
  private readonly observer: QueueObserver
  private readonly queues = new Map<string, Queue>()
  private readonly consumers = new Map<string, ConsumerState>()
  /** Stored memberships by client id, for persistent sessions. */
  private readonly memberships = new Map<string, Membership[]>()
  private readonly servesAll: boolean
  private readonly implicitGroups: boolean
  private opened = false
  /** Snapshots put here go straight into the group-commit batch being gathered. */
  private readonly nextBatch: SnapshotSink = {
    set: (key, source) => this.commits.addSnapshot(key, source),
  }

  constructor(options: QueueManagerOptions) {
    this.store = options.store
    this.clock = options.clock ?? systemClock
    this.logger = options.logger ?? silentLogger
    this.defaults = options.defaults ?? DEFAULT_QUEUE_SETTINGS
    this.declared = options.declared ?? {}
    this.observer = options.observer ?? silentObserver
    this.servesAll = options.servesAllPartitions ?? true
    this.implicitGroups = options.implicitGroups ?? true
    this.timers = new TimerQueue(this.clock)
    this.commits = new GroupCommit(this.store, this.observer)
  }

  /** Opens the store and rebuilds queues, groups and memberships from it. */
  async open(): Promise<void> {
    await this.store.open()
    const state = await this.store.loadState()
    for (const record of state.queueSettings) this.adminSettings.set(record.queue, record.settings)
    for (const meta of state.partitions) {
      const queue = this.queueNamed(meta.queue)
      queue.ensurePartitions(meta.partition + 1)
      queue.log(meta.partition).restore(meta)
    }
    for (const stored of state.groups) {
      const queue = this.queueNamed(stored.queue)
      queue.ensurePartitions(stored.partition + 1)
      const group = this.groupOf(queue, stored.group)
      group.progress[stored.partition] = GroupProgress.fromState(stored)
    }
    for (const membership of state.memberships) this.rememberMembership(membership)
    for (const layout of state.layouts) {
      const queue = this.queues.get(layout.queue)
      if (queue === undefined) continue
      queue.storedPartitions = layout.partitions
      this.keepStoredLayout(queue)
    }
    this.opened = true
    await this.restoreGroupRecords(state.groupRecords)
    this.logger.info(
      { queues: this.queues.size, groups: state.groups.length, memberships: state.memberships.length },
      'queue state loaded',
    )
  }

  /** Stops timers and writes what is pending; in-flight deliveries stay unsettled in storage. */
  async close(): Promise<void> {
    if (!this.opened) return
    this.opened = false
    this.timers.stop()
    await this.commits.close()
    await this.store.close()
  }

  async publish(input: PublishInput): Promise<QueueMessage> {
    this.assertOpen()
    const queue = this.checkedPublish(input)
    if (queue.pendingPartitions !== undefined) this.applyPendingLayout(queue)
    const settings = queue.settings
    const partition = input.partition ?? queue.partitionFor(input.partitionKey)
    if (
      !Number.isSafeInteger(partition) ||
      partition < 0 ||
      partition >= queue.logs.length ||
      !queue.isServed(partition)
    ) {
      this.refusePublish(
        input,
        QueueErrorCodes.partitionNotServed,
        `partition ${partition} of queue ${queue.name} is not served by this node`,
      )
    }
    if (queue.depth() >= settings.maxDepth) {
      this.refusePublish(
        input,
        QueueErrorCodes.queueFull,
        `queue ${queue.name} is full (maxDepth ${settings.maxDepth} messages)`,
      )
    }
    const now = this.clock.now()
    const expiresAtMs =
      input.messageExpirySeconds === undefined ? undefined : now + input.messageExpirySeconds * 1000
    const message = this.append(
      queue,
      partition,
      { payload: input.payload, properties: input.properties, enqueuedAtMs: now },
      expiresAtMs,
    )
    await this.commitAppend(queue, message, NO_OPS, undefined, settings.durability.sync)
    this.observer.enqueued(queue.name)
    return message
  }

  /**
   * Refuses (throws a QueueError) what {@link publish} would refuse for its name or size, without
   * storing anything: for a cluster node that keeps a message until the partition's owner takes it.
   */
  checkPublish(input: PublishInput): void {
    this.checkedPublish(input)
  }

  /** Counts a refused publish and throws its QueueError. */
  private refusePublish(input: PublishInput, code: QueueErrorCode, message: string): never {
    this.observer.publishRefused(input.queue, code)
    throw new QueueError(code, message)
  }

  private checkedPublish(input: PublishInput): Queue {
    const problem = this.nameProblem(input.queue)
    if (problem !== undefined) this.refusePublish(input, QueueErrorCodes.invalidQueueName, problem)
    const queue = this.queueNamed(input.queue)
    const settings = queue.settings
    const bytes = storedMessageBytes(queue.name, input.payload, input.properties)
    if (bytes > settings.maxMessageBytes) {
      this.refusePublish(
        input,
        QueueErrorCodes.messageTooLarge,
        `message of ${bytes} bytes (payload ${input.payload.byteLength}, queue name and properties ${bytes - input.payload.byteLength}) exceeds maxMessageBytes ${settings.maxMessageBytes} of queue ${queue.name}`,
      )
    }
    return queue
  }

  async subscribe(
    connection: ConsumerConnection,
    queueName: string,
    groupName: string,
    options: SubscribeOptions = {},
  ): Promise<void> {
    this.assertOpen()
    this.assertQueueName(queueName)
    if (groupName.length === 0 || groupName.startsWith('$')) {
      throw new QueueError(
        QueueErrorCodes.invalidGroupName,
        `consumer group "${groupName}" is not allowed: it must be non-empty and not start with "$"`,
      )
    }
    const implicit = options.implicitGroup === true
    if (implicit && !this.implicitGroups) {
      throw new QueueError(
        QueueErrorCodes.groupRequired,
        `queue ${queueName}: set the consumer-group user property on the SUBSCRIBE (implicit groups are off on this broker)`,
      )
    }
    const queue = this.queueNamed(queueName)
    const created = !queue.groups.has(groupName)
    const group = this.groupOf(queue, groupName)
    const ops: StoreOp[] = []
    // The group record changes when the group comes back from idle (a new one is idle until now) and
    // when a consumer names an implicit group: it is implicit only while nobody has named it.
    const wasIdle = group.members.length === 0
    const namedNow = group.implicit && !implicit
    if (created) group.implicit = implicit
    else if (namedNow) group.implicit = false
    const consumer = this.consumerFor(connection)
    if (group.memberOf(consumer) === undefined) {
      const member = new Member(consumer, group)
      group.members.push(member)
      consumer.members.add(member)
      this.logger.debug(
        { queue: queueName, group: groupName, clientId: connection.clientId, members: group.members.length },
        'consumer joined group',
      )
    }
    if (group.idleSinceMs !== undefined && group.members.length > 0) {
      group.idleSinceMs = undefined
      group.expiry?.cancel()
      group.expiry = undefined
    }
    if (wasIdle || namedNow) ops.push({ type: 'putGroupRecord', record: group.record() })
    const membership = { clientId: connection.clientId, queue: queueName, group: groupName }
    if (options.persistentSession === true && this.rememberMembership(membership)) {
      ops.push({ type: 'putMembership', membership })
    }
    const snapshots = new Map<string, SnapshotSource>()
    // A new group starts at the oldest stored message of each partition, and exists durably from now.
    // Only served partitions: one this node does not serve may hold progress imported from another
    // node, which its acquire reads back; there the group starts when the partition is acquired.
    if (created)
      for (const log of queue.servedLogs())
        this.addProgressSnapshot(snapshots, group.progressFor(log.partition, log.firstSeq - 1))
    queue.wakeAll()
    if (ops.length > 0 || snapshots.size > 0) await this.commits.commit(ops, snapshots, false)
  }

  async resumeSession(connection: ConsumerConnection): Promise<Array<{ queue: string; group: string }>> {
    const stored = [...(this.memberships.get(connection.clientId) ?? [])]
    for (const membership of stored) await this.subscribe(connection, membership.queue, membership.group)
    return stored.map(({ queue, group }) => ({ queue, group }))
  }

  async endSession(clientId: string): Promise<void> {
    const stored = this.memberships.get(clientId)
    if (stored === undefined) return
    this.memberships.delete(clientId)
    const ops = stored.map((membership): StoreOp => ({ type: 'deleteMembership', membership }))
    await this.commits.commit(ops, new Map(), false)
  }

  unsubscribe(connection: ConsumerConnection, queueName: string): void {
    const consumer = this.consumers.get(connection.clientId)
    if (consumer?.connection !== connection) return
    for (const member of [...consumer.members]) {
      if (member.group.queue === queueName) this.removeMember(member)
    }
    const stored = this.memberships.get(connection.clientId)
    const forgotten = stored?.filter((membership) => membership.queue === queueName) ?? []
    if (forgotten.length > 0) {
      this.memberships.set(
        connection.clientId,
        stored!.filter((membership) => membership.queue !== queueName),
      )
      const ops = forgotten.map((membership): StoreOp => ({ type: 'deleteMembership', membership }))
      this.commits
        .commit(ops, new Map(), false)
        .catch((error: unknown) => this.logWriteFailure(error, queueName))
    }
  }

  disconnect(connection: ConsumerConnection): void {
    const consumer = this.consumers.get(connection.clientId)
    if (consumer?.connection !== connection) return
    for (const member of [...consumer.members]) this.removeMember(member)
    this.consumers.delete(connection.clientId)
  }

  async settle(connection: ConsumerConnection, input: SettleInput): Promise<void> {
    this.assertOpen()
    const queue = this.queues.get(input.queue)
    if (queue === undefined) throw this.unknown(input, `queue ${input.queue} does not exist`)
    const parsed = parseMessageId(input.messageId)
    if (parsed === undefined || parsed.partition >= queue.logs.length) {
      throw this.unknown(input, `message-id "${input.messageId}" is not a message id of queue ${queue.name}`)
    }
    if (!queue.isServed(parsed.partition)) {
      throw new QueueError(
        QueueErrorCodes.partitionNotServed,
        `cannot ${input.action} ${input.messageId}: partition ${parsed.partition} of queue ${queue.name} is not served by this node (it moved; the delivery will be made again)`,
      )
    }
    const group = this.groupForSettle(connection, queue, input)
    const progress = group.progress[parsed.partition]
    const log = queue.log(parsed.partition)
    const seq = parsed.seq
    if (progress === undefined || seq > log.committedSeq || seq < 1) {
      throw this.unknown(input, `message ${input.messageId} is unknown in queue ${queue.name}`)
    }
    if (progress.isSettled(seq)) {
      throw this.unknown(input, `message ${input.messageId} is already settled for group ${group.name}`)
    }
    if (!progress.attempts.has(seq)) {
      throw this.unknown(input, `message ${input.messageId} has not been delivered to group ${group.name}`)
    }
    const inflight = progress.inflight.get(seq)
    if (inflight !== undefined && inflight.member.consumer.connection !== connection) {
      throw this.unknown(input, `message ${input.messageId} is in flight to another consumer`)
    }
    if (
      inflight === undefined &&
      (input.action === SettleActions.nack || input.action === SettleActions.extend)
    ) {
      throw this.unknown(
        input,
        `message ${input.messageId} is not in flight (its delivery timed out or returned)`,
      )
    }
    switch (input.action) {
      case SettleActions.extend: {
        inflight!.deadline.cancel()
        inflight!.deadline = this.deadlineFor(queue, group, progress, seq)
        return
      }
      case SettleActions.ack: {
        this.releaseInflight(queue, progress, seq)
        this.observer.settled(queue.name, group.name, input.action, this.sinceDelivery(inflight))
        const settled = this.commitSettled(queue, progress, seq)
        // Not in flight: it waited for its retry, and an ordered partition waited behind it.
        if (inflight === undefined) queue.wake(progress.partition)
        return settled
      }
      case SettleActions.nack: {
        const released = this.releaseInflight(queue, progress, seq)!
        this.observer.settled(queue.name, group.name, input.action, this.sinceDelivery(inflight))
        const delayMs = input.delayMs ?? retryDelayMs(queue.settings.retry, progress.attempts.get(seq) ?? 1)
        return this.retryLater(queue, group, progress, released.message, delayMs)
      }
      case SettleActions.reject: {
        const released = this.releaseInflight(queue, progress, seq)
        this.observer.settled(queue.name, group.name, input.action, this.sinceDelivery(inflight))
        const message = released?.message ?? (await this.readMessage(queue, parsed.partition, seq))
        const deadLettered = this.deadLetter(
          queue,
          group,
          progress,
          message,
          DeadLetterReasons.rejected,
          input.reason,
        )
        if (inflight === undefined) queue.wake(progress.partition)
        return deadLettered
      }
    }
  }

  /** DeliveryHost: bookkeeping of one delivery, then the write to the consumer. */
  deliver(group: ConsumerGroup, progress: GroupProgress, member: Member, message: QueueMessage): void {
    const queue = this.queueNamed(group.queue)
    const now = this.clock.now()
    if (message.expiresAtMs !== undefined && message.expiresAtMs <= now) {
      progress.skip(message.seq)
      void this.deadLetter(queue, group, progress, message, DeadLetterReasons.expired).catch(
        (error: unknown) => this.logWriteFailure(error, queue.name),
      )
      return
    }
    // Deliveries it used up before a crash (in flight when the process died) count: no delivery
    // beyond maxDeliveries, also after a restart.
    if ((progress.attempts.get(message.seq) ?? 0) >= queue.settings.retry.maxDeliveries) {
      progress.skip(message.seq)
      void this.deadLetter(queue, group, progress, message, DeadLetterReasons.maxDeliveries).catch(
        (error: unknown) => this.logWriteFailure(error, queue.name),
      )
      return
    }
    const deliveryCount = progress.take(message.seq)
    member.inflight++
    member.consumer.inflight++
    const inflight: Inflight = {
      message,
      member,
      deliveredAtMs: now,
      deadline: this.deadlineFor(queue, group, progress, message.seq),
    }
    progress.inflight.set(message.seq, inflight)
    this.observer.delivered(queue.name, group.name, deliveryCount, now - message.enqueuedAtMs)
    // The attempt is durable before the consumer sees the delivery: after a crash, a redelivery
    // always says delivery-count + 1, never 1 again.
    this.commits.addSnapshot(progress.commitKey, progress.snapshot)
    this.commits.commit(NO_OPS, undefined, false).then(
      () => {
        // Released meanwhile (consumer gone, timed out): the message is already back in line.
        if (progress.inflight.get(message.seq) !== inflight) return
        member.consumer.connection.deliver({ message, group: group.name, deliveryCount })
      },
      (error: unknown) => this.logWriteFailure(error, queue.name),
    )
  }

  skipMissing(group: ConsumerGroup, progress: GroupProgress, seq: number): void {
    this.logger.error(
      { queue: group.queue, group: group.name, partition: progress.partition, seq },
      'message missing from storage; skipped',
    )
    const queue = this.queueNamed(group.queue)
    progress.skip(seq)
    void this.commitSettled(queue, progress, seq).catch((error: unknown) =>
      this.logWriteFailure(error, queue.name),
    )
  }

  // ---- Partition ownership (a cluster node serves only the partitions it owns) ----

  /** The partition a publish with this key goes to; refuses a bad queue name. */
  partitionFor(queueName: string, partitionKey: string | undefined): number {
    this.assertQueueName(queueName)
    return this.queueNamed(queueName).partitionFor(partitionKey)
  }

  /** The settings a queue has (or would have, once used) on this node. */
  settingsOf(queueName: string): QueueSettings {
    this.assertQueueName(queueName)
    return this.queueNamed(queueName).settings
  }

  serves(queueName: string, partition: number): boolean {
    const queue = this.queues.get(queueName)
    if (queue === undefined) return this.servesAll || queueName.startsWith(DEAD_LETTER_PREFIX)
    return partition < queue.logs.length && queue.isServed(partition)
  }

  /**
   * Starts serving a partition this node now owns: its counters and group progress are read back from
   * storage (written there by this node earlier or by {@link importPartition}), then its worker runs.
   */
  async acquirePartition(queueName: string, partition: number): Promise<void> {
    this.assertOpen()
    this.assertQueueName(queueName)
    assertPartitionNumber(partition)
    const queue = this.queueNamed(queueName)
    queue.ensurePartitions(partition + 1)
    if (queue.isServed(partition)) return
    await this.commits.commit([], new Map(), false) // everything written so far has landed
    const state = await this.store.loadState()
    if (queue.isServed(partition)) return
    const meta = state.partitions.find((m) => m.queue === queueName && m.partition === partition)
    const log = queue.log(partition)
    log.restore(meta ?? { lastSeq: 0, count: 0 })
    const stored = new Map<string, GroupPartitionState>()
    for (const group of state.groups) {
      if (group.queue !== queueName || group.partition !== partition) continue
      stored.set(group.group, group)
      this.groupOf(queue, group.group)
    }
    for (const group of queue.groups.values()) {
      const state = stored.get(group.name)
      group.progress[partition] =
        state === undefined
          ? new GroupProgress(queueName, group.name, partition, log.firstSeq - 1)
          : GroupProgress.fromState(state)
    }
    queue.setServed(partition, true)
    this.logger.info({ queue: queueName, partition, depth: log.count }, 'partition acquired')
    queue.wake(partition)
  }

  /**
   * Stops serving a partition: no more deliveries, publishes or settles; deliveries in flight return
   * (their attempts stay counted) and pending retries are dropped (they are due again on acquire).
   */
  releasePartition(queueName: string, partition: number): void {
    const queue = this.queues.get(queueName)
    if (queue === undefined || partition >= queue.logs.length || !queue.isServed(partition)) return
    if (this.servesAll || queueName.startsWith(DEAD_LETTER_PREFIX)) return
    queue.setServed(partition, false)
    let returned = 0
    for (const group of queue.groups.values()) {
      const progress = group.progress[partition]
      if (progress === undefined) continue
      for (const entry of progress.waiting.values()) entry.cancel()
      progress.waiting.clear()
      for (const seq of [...progress.inflight.keys()]) {
        this.releaseInflight(queue, progress, seq)
        returned++
      }
    }
    this.logger.info({ queue: queueName, partition, returned }, 'partition released')
  }

  /** The bookkeeping of a partition this node does not serve, for handing it to another node. */
  async partitionSnapshot(queueName: string, partition: number): Promise<PartitionSnapshot> {
    const queue = this.releasedPartitionOf(queueName, partition)
    await this.commits.commit([], new Map(), false)
    const log = queue.log(partition)
    const groups: GroupPartitionState[] = []
    for (const group of queue.groups.values()) {
      const progress = group.progress[partition]
      if (progress !== undefined) groups.push(progress.toState())
    }
    return { meta: { queue: queueName, partition, lastSeq: log.lastSeq, count: log.count }, groups }
  }

  /** Stored messages of a partition from `fromSeq` on, for streaming it to another node. */
  readPartition(
    queueName: string,
    partition: number,
    fromSeq: number,
    limit: number,
  ): Promise<QueueMessage[]> {
    return this.store.readMessages(queueName, partition, fromSeq, limit)
  }

  /**
   * Stores a partition handed over by another node, durably (the last batch is synced), without
   * serving it: the node serves it after it owns it, through {@link acquirePartition}. Groups known
   * here but absent from the snapshot start over at the partition's oldest message.
   */
  async importPartition(
    snapshot: PartitionSnapshot,
    batches: AsyncIterable<QueueMessage[]>,
  ): Promise<number> {
    const { queue: queueName, partition } = snapshot.meta
    this.assertOpen()
    this.assertQueueName(queueName)
    assertPartitionNumber(partition)
    const queue = this.queueNamed(queueName)
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
        await this.commits.commit(ops, new Map(), false)
        ops = []
      }
    }
    const incoming = new Set(snapshot.groups.map((group) => group.group))
    ops.push({ type: 'putPartitionMeta', meta: snapshot.meta })
    for (const state of snapshot.groups) ops.push({ type: 'putGroupState', state })
    for (const group of queue.groups.keys()) {
      if (!incoming.has(group)) ops.push({ type: 'deleteGroupState', queue: queueName, group, partition })
    }
    await this.commits.commit(ops, new Map(), true)
    return imported
  }

  /** Deletes what this node stored of a partition it handed to another node. */
  async dropPartition(queueName: string, partition: number): Promise<void> {
    const queue = this.releasedPartitionOf(queueName, partition)
    const log = queue.log(partition)
    const deletes = log.deleteThrough(log.lastSeq)
    for (let at = 0; at < deletes.length; at += IMPORT_BATCH)
      await this.commits.commit(deletes.slice(at, at + IMPORT_BATCH), new Map(), false)
    const ops: StoreOp[] = [log.metaOp()]
    for (const group of queue.groups.values()) {
      group.progress[partition] = new GroupProgress(queueName, group.name, partition, log.lastSeq)
      ops.push({ type: 'deleteGroupState', queue: queueName, group: group.name, partition })
    }
    await this.commits.commit(ops, new Map(), false)
  }

  private releasedPartitionOf(queueName: string, partition: number): Queue {
    const queue = this.existingQueue(queueName)
    if (partition >= queue.logs.length || queue.isServed(partition)) {
      throw new QueueError(
        QueueErrorCodes.partitionNotServed,
        `partition ${partition} of queue ${queueName} must be released (not served) first`,
      )
    }
    return queue
  }

  /** Stored messages of a queue, or undefined if it does not exist. */
  depth(queueName: string): number | undefined {
    return this.queues.get(queueName)?.depth()
  }

  // ---- Administration (admin API, CLI, metrics) ----

  listQueues(): QueueStats[] {
    return [...this.queues.values()].map((queue) => this.statsOf(queue))
  }

  queueStats(name: string): QueueStats {
    return this.statsOf(this.existingQueue(name))
  }

  /** Creates a queue with its own settings, stored durably; they win over config. */
  async createQueue(name: string, overrides: QueueSettingsOverrides): Promise<QueueStats> {
    this.assertOpen()
    this.assertQueueName(name)
    if (this.queues.has(name))
      throw new QueueError(QueueErrorCodes.queueExists, `queue ${name} already exists`)
    const settings = this.checkedSettings(name, overrides)
    this.adminSettings.set(name, overrides)
    const queue = this.queueNamed(name)
    const snapshots = new Map<string, SnapshotSource>()
    for (const log of queue.logs) snapshots.set(log.commitKey, log.snapshot)
    await this.commits.commit(
      [{ type: 'putQueueSettings', record: { queue: name, settings: overrides } }],
      snapshots,
      settings.durability.sync,
    )
    return this.statsOf(queue)
  }

  /**
   * Changes settings of a queue (merged over what it has). Partitions may grow, never shrink, and only
   * while the queue holds no message: a key's partition follows from the partition count, so its
   * newer messages would be delivered beside its older ones and per-key order would break.
   */
  async updateQueue(name: string, overrides: QueueSettingsOverrides): Promise<QueueStats> {
    this.assertOpen()
    const queue = this.existingQueue(name)
    const previous = this.adminSettings.get(name) ?? {}
    const merged: QueueSettingsOverrides = {
      ...previous,
      ...overrides,
      ...(previous.retry || overrides.retry ? { retry: { ...previous.retry, ...overrides.retry } } : {}),
      ...(previous.durability || overrides.durability
        ? { durability: { ...previous.durability, ...overrides.durability } }
        : {}),
    }
    let settings = this.checkedSettings(name, merged)
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
    await this.commits.commit(
      [{ type: 'putQueueSettings', record: { queue: name, settings: merged } }],
      new Map(),
      settings.durability.sync,
    )
    this.adminSettings.set(name, merged)
    queue.applySettings(settings)
    for (const group of queue.groups.values()) this.scheduleExpiry(queue, group)
    return this.statsOf(queue)
  }

  /** Deletes a queue with its messages and groups; refused while consumers are online. */
  async deleteQueue(name: string): Promise<void> {
    this.assertOpen()
    const queue = this.existingQueue(name)
    this.assertNoConsumers(queue)
    const ops: StoreOp[] = [{ type: 'deleteQueue', queue: name }]
    for (const [clientId, stored] of this.memberships) {
      const kept = stored.filter((membership) => membership.queue !== name)
      for (const membership of stored)
        if (membership.queue === name) ops.push({ type: 'deleteMembership', membership })
      this.memberships.set(clientId, kept)
    }
    this.forgetTimers(queue)
    this.queues.delete(name)
    this.adminSettings.delete(name)
    await this.commits.commit(ops, new Map(), queue.settings.durability.sync)
    this.logger.info({ queue: name }, 'queue deleted')
  }

  /**
   * Deletes every stored message of a queue; groups stay, settled up to the last message. Deliveries
   * in flight are forgotten (their settles answer "already settled"). Returns how many were deleted.
   */
  async purgeQueue(name: string): Promise<number> {
    this.assertOpen()
    const queue = this.existingQueue(name)
    const purged = queue.depth()
    this.forgetTimers(queue)
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
        this.addProgressSnapshot(snapshots, fresh)
      }
    }
    const ops: StoreOp[] = [{ type: 'deleteQueue', queue: name }]
    const stored = this.adminSettings.get(name)
    if (stored !== undefined)
      ops.push({ type: 'putQueueSettings', record: { queue: name, settings: stored } })
    for (const group of queue.groups.values()) ops.push({ type: 'putGroupRecord', record: group.record() })
    await this.commits.commit(ops, snapshots, queue.settings.durability.sync)
    this.logger.info({ queue: name, purged }, 'queue purged')
    if (queue.pendingPartitions !== undefined) this.applyPendingLayout(queue)
    queue.wakeAll()
    return purged
  }

  /** Deletes a consumer group and its progress; refused while it has members online. */
  async deleteGroup(queueName: string, groupName: string): Promise<void> {
    this.assertOpen()
    const queue = this.existingQueue(queueName)
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
    await this.removeGroup(queue, group)
  }

  /** Deletes a group without members and the messages only it still held (an admin delete, an expiry). */
  private async removeGroup(queue: Queue, group: ConsumerGroup): Promise<void> {
    for (const progress of group.progress)
      for (const entry of progress?.waiting.values() ?? []) entry.cancel()
    group.expiry?.cancel()
    group.expiry = undefined
    queue.groups.delete(group.name)
    const ops: StoreOp[] = [{ type: 'deleteGroupRecord', queue: queue.name, group: group.name }]
    const snapshots = new Map<string, SnapshotSource>()
    for (const log of queue.logs) {
      ops.push({ type: 'deleteGroupState', queue: queue.name, group: group.name, partition: log.partition })
      ops.push(...this.retentionOps(queue, log.partition, snapshots))
    }
    await this.commits.commit(ops, snapshots, queue.settings.durability.sync)
  }

  /** Up to `limit` stored messages, oldest first per partition, without consuming them. */
  async peek(name: string, limit: number): Promise<QueueMessage[]> {
    const queue = this.existingQueue(name)
    const perPartition = await Promise.all(
      queue.logs.map((log) => this.store.readMessages(name, log.partition, log.firstSeq, limit)),
    )
    return perPartition
      .flat()
      .sort((a, b) => a.enqueuedAtMs - b.enqueuedAtMs || a.partition - b.partition || a.seq - b.seq)
      .slice(0, limit)
  }

  /** Dead letters of `name` not yet redriven or purged, oldest first. */
  async deadLetters(name: string, limit: number): Promise<QueueMessage[]> {
    const deadLetters = this.queues.get(DEAD_LETTER_PREFIX + name)
    if (deadLetters === undefined) return []
    const pending = deadLetters.groups.get(PENDING_DEAD_LETTERS_GROUP)
    const found: QueueMessage[] = []
    for (const log of deadLetters.logs) {
      const progress = pending?.progress[log.partition]
      let from = Math.max(log.firstSeq, (progress?.ackFloor ?? 0) + 1)
      while (from <= log.lastSeq && found.length < limit * deadLetters.logs.length) {
        const batch = await this.store.readMessages(deadLetters.name, log.partition, from, limit)
        if (batch.length === 0) break
        for (const message of batch) if (progress?.isSettled(message.seq) !== true) found.push(message)
        from = batch.at(-1)!.seq + 1
        if (found.length >= limit) break
      }
    }
    return found.sort((a, b) => a.enqueuedAtMs - b.enqueuedAtMs).slice(0, limit)
  }

  /**
   * Puts dead letters of `name` back on `name` (one, by its id in the dead-letter queue, or up to
   * `limit`), each atomically with marking it handled in the dead-letter queue. Paced at
   * `ratePerSecond`; stops early when `name` is full. Returns how many went back.
   */
  async redrive(
    name: string,
    options: { messageId?: string; limit?: number; ratePerSecond?: number } = {},
  ): Promise<number> {
    this.assertOpen()
    if (!this.queues.has(name) && !this.queues.has(DEAD_LETTER_PREFIX + name)) {
      throw new QueueError(QueueErrorCodes.queueNotFound, `queue ${name} does not exist`)
    }
    const target = this.queueNamed(name)
    const deadLetters = this.queues.get(DEAD_LETTER_PREFIX + name)
    const candidates =
      options.messageId === undefined
        ? await this.deadLetters(name, options.limit ?? 1000)
        : (await this.deadLetters(name, Number.MAX_SAFE_INTEGER)).filter((m) => m.id === options.messageId)
    if (options.messageId !== undefined && candidates.length === 0) {
      throw new QueueError(
        QueueErrorCodes.unknownMessage,
        `no pending dead letter ${options.messageId} in ${DEAD_LETTER_PREFIX}${name}`,
      )
    }
    const pending = deadLetters?.groups.get(PENDING_DEAD_LETTERS_GROUP)
    const intervalMs = options.ratePerSecond === undefined ? 0 : 1000 / options.ratePerSecond
    let redriven = 0
    for (const deadLetter of candidates) {
      if (deadLetters === undefined || pending === undefined) break
      if (target.depth() >= target.settings.maxDepth) break
      const progress = pending.progressFor(
        deadLetter.partition,
        deadLetters.log(deadLetter.partition).firstSeq - 1,
      )
      if (progress.isSettled(deadLetter.seq)) continue
      const original = parseMessageId(
        deadLetter.properties.userProperties?.find(([key]) => key === 'dlq-original-message-id')?.[1] ?? '',
      )
      const partition =
        original !== undefined && original.partition < target.settings.partitions
          ? original.partition
          : target.partitionFor(undefined)
      // In a cluster, a dead letter goes back only into a partition this node serves now.
      if (!target.isServed(partition)) continue
      const userProperties = (deadLetter.properties.userProperties ?? []).filter(
        ([key]) => !key.startsWith('dlq-') && key !== 'reason',
      )
      const message = this.append(target, partition, {
        payload: deadLetter.payload,
        properties: { ...deadLetter.properties, userProperties },
        enqueuedAtMs: this.clock.now(),
      })
      const { ops, snapshots } = this.settleOps(deadLetters, progress, deadLetter.seq)
      await this.commitAppend(target, message, ops, snapshots, target.settings.durability.sync)
      redriven++
      if (intervalMs > 0 && redriven < candidates.length) {
        // Pacing is wall-clock time for the operator's sake, not queue time: a plain timer.
        await sleep(intervalMs)
      }
    }
    if (redriven > 0) this.logger.info({ queue: name, redriven }, 'dead letters redriven')
    return redriven
  }

  private append(
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
  private async commitAppend(
    queue: Queue,
    message: QueueMessage,
    ops: readonly StoreOp[],
    snapshots: Map<string, SnapshotSource> | undefined,
    sync: boolean,
  ): Promise<void> {
    const log = queue.log(message.partition)
    if (snapshots === undefined) this.commits.addSnapshot(log.commitKey, log.snapshot)
    else snapshots.set(log.commitKey, log.snapshot)
    const put: StoreOp = { type: 'putMessage', message }
    let batch: readonly StoreOp[] = ops.length === 0 ? [put] : [put, ...ops]
    // The partition count goes with the messages placed by it, so a restart can tell a changed one.
    const partitions = queue.settings.partitions
    const layoutChanged = queue.storedPartitions !== partitions
    if (layoutChanged)
      batch = [...batch, { type: 'putQueueLayout', layout: { queue: queue.name, partitions } }]
    try {
      await this.commits.commit(batch, snapshots, sync)
    } catch (error) {
      this.logger.error(
        { err: error, queue: queue.name, partition: message.partition },
        'storage write failed',
      )
      throw new QueueError(QueueErrorCodes.storageFailure, 'storage write failed', { cause: error })
    }
    if (layoutChanged) queue.storedPartitions = partitions
    log.markCommitted(message.seq)
    queue.wake(message.partition)
  }

  /**
   * At start-up: a queue that holds messages placed with another partition count than its settings
   * now give keeps that count (a key's partition follows from it, and its new messages must not pass
   * its old ones) until it is empty. Single node only: a cluster's count lives in etcd.
   */
  private keepStoredLayout(queue: Queue): void {
    const stored = queue.storedPartitions
    const configured = queue.settings.partitions
    if (!this.servesAll || stored === undefined || stored === configured || queue.depth() === 0) return
    const ordering =
      queue.settings.ordering === Orderings.strict && stored !== 1
        ? Orderings.partition
        : queue.settings.ordering
    queue.applySettings({ ...queue.settings, partitions: stored, ordering })
    queue.pendingPartitions = configured
    this.logger.warn(
      { queue: queue.name, storedPartitions: stored, configuredPartitions: configured, depth: queue.depth() },
      'queue keeps its stored partition count until it is empty: changing it now would break per-key order',
    )
  }

  /** Applies the configured partition count once the queue that waited for it is empty. */
  private applyPendingLayout(queue: Queue): void {
    if (queue.depth() > 0) return
    const partitions = queue.pendingPartitions
    queue.pendingPartitions = undefined
    queue.applySettings(this.settingsFor(queue.name))
    this.logger.info({ queue: queue.name, partitions }, 'queue is empty: configured partition count applied')
  }

  private deadlineFor(queue: Queue, group: ConsumerGroup, progress: GroupProgress, seq: number) {
    return this.timers.schedule(this.clock.now() + queue.settings.deliveryTimeoutMs, () => {
      const released = this.releaseInflight(queue, progress, seq)
      if (released === undefined) return
      this.observer.timedOut(queue.name, group.name)
      this.logger.info(
        {
          queue: queue.name,
          group: group.name,
          partition: progress.partition,
          messageId: released.message.id,
        },
        'delivery timed out',
      )
      const delayMs = retryDelayMs(queue.settings.retry, progress.attempts.get(seq) ?? 1)
      void this.retryLater(queue, group, progress, released.message, delayMs).catch((error: unknown) =>
        this.logWriteFailure(error, queue.name),
      )
    })
  }

  /** Ends an in-flight delivery (settled, failed or returned) and frees the consumer's capacity. */
  private releaseInflight(queue: Queue, progress: GroupProgress, seq: number) {
    const inflight = progress.inflight.get(seq)
    if (inflight === undefined) return undefined
    progress.inflight.delete(seq)
    inflight.deadline.cancel()
    const member = inflight.member
    const consumerWasFull = !member.consumer.hasCapacity()
    const memberWasFull = !member.hasCapacity(queue.settings.maxInflightPerConsumer)
    member.inflight--
    member.consumer.inflight--
    // A member at maxInflightPerConsumer held up every partition of this queue, not just this one.
    if (memberWasFull) queue.wakeAll()
    else queue.wake(progress.partition)
    // A consumer at its Receive Maximum may be waited on by partitions of other queues too.
    if (consumerWasFull)
      for (const other of member.consumer.members) this.queueNamed(other.group.queue).wakeAll()
    return inflight
  }

  /** A failed delivery: due again after `delayMs`, or dead-lettered once retries are spent. */
  private async retryLater(
    queue: Queue,
    group: ConsumerGroup,
    progress: GroupProgress,
    message: QueueMessage,
    delayMs: number,
  ): Promise<void> {
    const retry = queue.settings.retry
    const seq = message.seq
    const now = this.clock.now()
    if ((progress.attempts.get(seq) ?? 0) >= retry.maxDeliveries) {
      return this.deadLetter(queue, group, progress, message, DeadLetterReasons.maxDeliveries)
    }
    if (now + delayMs - message.enqueuedAtMs > retry.totalTimeoutMs) {
      return this.deadLetter(queue, group, progress, message, DeadLetterReasons.timeout)
    }
    if (delayMs <= 0) {
      progress.giveBack(seq)
      queue.wake(progress.partition)
      return
    }
    progress.waiting.set(
      seq,
      this.timers.schedule(now + delayMs, () => {
        progress.waiting.delete(seq)
        progress.giveBack(seq)
        queue.wake(progress.partition)
      }),
    )
    // Without a waiting entry the partition may deliver past it (ordered mode): wake to re-check.
    queue.wake(progress.partition)
  }

  /** Moves a message to `dlq/<queue>` and settles it for the group, in one atomic batch. */
  private async deadLetter(
    queue: Queue,
    group: ConsumerGroup,
    progress: GroupProgress,
    message: QueueMessage,
    reason: DeadLetterReason,
    rejectReason?: string,
  ): Promise<void> {
    const deadLetters = this.deadLetterQueueOf(queue.name)
    const userProperties: Array<[string, string]> = [
      ...(message.properties.userProperties ?? []),
      ['dlq-reason', reason],
      ['dlq-original-queue', queue.name],
      ['dlq-original-group', group.name],
      ['dlq-original-message-id', message.id],
      ['dlq-delivery-count', String(progress.attempts.get(message.seq) ?? 0)],
    ]
    if (rejectReason !== undefined) userProperties.push(['reason', rejectReason])
    const properties: MessageProperties = { ...message.properties, userProperties }
    const deadLetter = this.append(deadLetters, deadLetters.partitionFor(undefined), {
      payload: message.payload,
      properties,
      enqueuedAtMs: this.clock.now(),
    })
    const { ops, snapshots } = this.settleOps(queue, progress, message.seq)
    const pending = deadLetters.groups.get(PENDING_DEAD_LETTERS_GROUP)?.progress[deadLetter.partition]
    if (pending !== undefined) this.addProgressSnapshot(snapshots, pending)
    this.observer.deadLettered(queue.name, group.name, reason)
    this.logger.info(
      {
        queue: queue.name,
        group: group.name,
        partition: message.partition,
        messageId: message.id,
        reason,
        deadLetterId: deadLetter.id,
      },
      'message dead-lettered',
    )
    await this.commitAppend(
      deadLetters,
      deadLetter,
      ops,
      snapshots,
      queue.settings.durability.sync || deadLetters.settings.durability.sync,
    )
  }

  private sinceDelivery(inflight: { deliveredAtMs: number } | undefined): number | undefined {
    return inflight === undefined ? undefined : this.clock.now() - inflight.deliveredAtMs
  }

  /** `dlq/<name>`, with the group that holds dead letters until an operator acts on them. */
  private deadLetterQueueOf(name: string): Queue {
    const deadLetters = this.queueNamed(DEAD_LETTER_PREFIX + name)
    const pending = this.groupOf(deadLetters, PENDING_DEAD_LETTERS_GROUP)
    for (const log of deadLetters.logs) pending.progressFor(log.partition, log.firstSeq - 1)
    return deadLetters
  }

  private settingsFor(name: string): QueueSettings {
    return resolveQueueSettings(this.defaults, { ...this.declared[name], ...this.adminSettings.get(name) })
  }

  private checkedSettings(name: string, overrides: QueueSettingsOverrides): QueueSettings {
    const settings = resolveQueueSettings(this.defaults, { ...this.declared[name], ...overrides })
    const problem = settingsProblem(settings)
    if (problem !== undefined) throw new QueueError(QueueErrorCodes.invalidSettings, problem)
    return settings
  }

  private statsOf(queue: Queue): QueueStats {
    const groups: GroupStats[] = []
    let inflight = 0
    const consumers = new Set<string>()
    const now = this.clock.now()
    for (const group of queue.groups.values()) {
      let groupInflight = 0
      for (const log of queue.servedLogs()) groupInflight += group.progress[log.partition]?.inflight.size ?? 0
      inflight += groupInflight
      const members = group.members.map((member) => member.consumer.connection.clientId)
      for (const member of members) consumers.add(member)
      groups.push({
        name: group.name,
        consumers: members,
        backlog: this.backlogOf(queue, group),
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

  /** Messages the group has not settled yet in the partitions served here (in flight included). */
  private backlogOf(queue: Queue, group: ConsumerGroup): number {
    let backlog = 0
    for (const log of queue.servedLogs()) {
      const progress = group.progress[log.partition]
      backlog += progress === undefined ? log.count : progress.backlog(log.committedSeq)
    }
    return backlog
  }

  private existingQueue(name: string): Queue {
    const queue = this.queues.get(name)
    if (queue === undefined)
      throw new QueueError(QueueErrorCodes.queueNotFound, `queue ${name} does not exist`)
    return queue
  }

  private assertNoConsumers(queue: Queue): void {
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
  private forgetTimers(queue: Queue): void {
    for (const group of queue.groups.values()) {
      for (const progress of group.progress) {
        for (const inflight of progress?.inflight.values() ?? []) inflight.deadline.cancel()
        for (const entry of progress?.waiting.values() ?? []) entry.cancel()
      }
    }
  }

  private async commitSettled(queue: Queue, progress: GroupProgress, seq: number): Promise<void> {
    // settleOps without a Map per settle: the snapshots go straight into the batch being gathered.
    const ops = this.settleInto(this.nextBatch, queue, progress, seq)
    await this.commits.commit(ops, undefined, queue.settings.durability.sync)
  }

  /** Settles `seq` for the group and deletes what every group of the queue has now settled. */
  private settleOps(queue: Queue, progress: GroupProgress, seq: number) {
    const snapshots = new Map<string, SnapshotSource>()
    const ops = this.settleInto(snapshots, queue, progress, seq)
    return { ops, snapshots }
  }

  private settleInto(snapshots: SnapshotSink, queue: Queue, progress: GroupProgress, seq: number) {
    snapshots.set(progress.commitKey, progress.snapshot)
    return progress.settle(seq) ? this.retentionOps(queue, progress.partition, snapshots) : []
  }

  /** Deletes the messages of a partition that every group has settled (none while no group exists). */
  private retentionOps(queue: Queue, partition: number, snapshots: SnapshotSink): StoreOp[] {
    const log = queue.log(partition)
    let floor = Infinity
    for (const group of queue.groups.values()) {
      floor = Math.min(floor, group.progress[partition]?.ackFloor ?? log.firstSeq - 1)
    }
    if (floor === Infinity || floor < log.firstSeq) return []
    snapshots.set(log.commitKey, log.snapshot)
    return log.deleteThrough(floor)
  }

  private addProgressSnapshot(snapshots: Map<string, SnapshotSource>, progress: GroupProgress): void {
    snapshots.set(progress.commitKey, progress.snapshot)
  }

  private removeMember(member: Member): void {
    const group = member.group
    const queue = this.queueNamed(group.queue)
    for (const progress of group.progress) {
      if (progress === undefined) continue
      for (const [seq, inflight] of [...progress.inflight]) {
        if (inflight.member !== member) continue
        const released = this.releaseInflight(queue, progress, seq)!
        // A consumer that goes away returns its deliveries at once, not after a backoff.
        void this.retryLater(queue, group, progress, released.message, 0).catch((error: unknown) =>
          this.logWriteFailure(error, queue.name),
        )
      }
    }
    group.members.splice(group.members.indexOf(member), 1)
    member.consumer.members.delete(member)
    this.logger.debug(
      { queue: queue.name, group: group.name, clientId: member.consumer.connection.clientId },
      'consumer left group',
    )
    if (group.members.length === 0) this.groupIdle(queue, group)
    queue.wakeAll()
  }

  // ---- Group lifecycle: a group with no member for its expiry is deleted ----

  /** The last member left: the group's expiry clock starts, durably. */
  private groupIdle(queue: Queue, group: ConsumerGroup): void {
    group.idleSinceMs = this.clock.now()
    this.scheduleExpiry(queue, group)
    this.commits
      .commit([{ type: 'putGroupRecord', record: group.record() }], new Map(), false)
      .catch((error: unknown) => this.logWriteFailure(error, queue.name))
  }

  /** (Re)arms the expiry of an idle group under the queue's current settings. */
  private scheduleExpiry(queue: Queue, group: ConsumerGroup): void {
    group.expiry?.cancel()
    group.expiry = undefined
    const dueAtMs = group.expiresAtMs(queue.settings)
    if (dueAtMs === undefined || group.members.length > 0) return
    group.expiry = this.timers.schedule(dueAtMs, () => {
      group.expiry = undefined
      void this.expireGroup(queue, group).catch((error: unknown) => this.logWriteFailure(error, queue.name))
    })
  }

  private async expireGroup(queue: Queue, group: ConsumerGroup): Promise<void> {
    if (!this.opened || queue.groups.get(group.name) !== group || group.members.length > 0) return
    const backlog = this.backlogOf(queue, group)
    this.logger.info(
      {
        queue: queue.name,
        group: group.name,
        implicit: group.implicit,
        idleSinceMs: group.idleSinceMs,
        backlog,
      },
      'consumer group expired: no member for its expiry; its messages are released',
    )
    this.observer.groupExpired(queue.name, group.name)
    await this.removeGroup(queue, group)
  }

  /**
   * Groups as stored: implicit or not, idle since when. A group without a record (written before
   * records existed, or imported from another node), or one that had members when the node stopped,
   * is idle from now, and that is written down so the next restart does not move its clock again.
   */
  private async restoreGroupRecords(records: readonly GroupRecord[]): Promise<void> {
    const now = this.clock.now()
    const stored = new Map<string, GroupRecord>()
    for (const record of records) stored.set(`${record.queue}\u0000${record.group}`, record)
    const ops: StoreOp[] = []
    for (const record of records) this.groupOf(this.queueNamed(record.queue), record.group)
    for (const queue of this.queues.values()) {
      for (const group of queue.groups.values()) {
        if (group.name.startsWith('$')) continue
        const record = stored.get(`${queue.name}\u0000${group.name}`)
        group.implicit = record?.implicit ?? false
        group.idleSinceMs = record?.idleSinceMs ?? now
        if (record?.idleSinceMs === undefined) ops.push({ type: 'putGroupRecord', record: group.record() })
        this.scheduleExpiry(queue, group)
      }
    }
    if (ops.length > 0) await this.commits.commit(ops, new Map(), false)
  }

  private groupForSettle(connection: ConsumerConnection, queue: Queue, input: SettleInput): ConsumerGroup {
    if (input.group !== undefined) {
      const group = queue.groups.get(input.group)
      if (group === undefined)
        throw this.unknown(input, `group ${input.group} does not exist on queue ${queue.name}`)
      return group
    }
    // Runs on every $ack without group-id: count the client's groups of this queue, keep the first.
    let only: ConsumerGroup | undefined
    let groups = 0
    const members = this.consumers.get(connection.clientId)?.members
    if (members !== undefined)
      for (const member of members) {
        if (member.group.queue !== queue.name) continue
        only ??= member.group
        groups++
      }
    if (only === undefined) {
      throw this.unknown(
        input,
        `client is not a consumer of queue ${queue.name}; set the group-id user property`,
      )
    }
    if (groups > 1) {
      throw new QueueError(
        QueueErrorCodes.ambiguousGroup,
        `client consumes queue ${queue.name} in ${groups} groups; set the group-id user property`,
      )
    }
    return only
  }

  private async readMessage(queue: Queue, partition: number, seq: number): Promise<QueueMessage> {
    const message =
      queue.log(partition).cached(seq) ?? (await this.store.getMessage(queue.name, partition, seq))
    if (message === undefined) {
      throw new QueueError(QueueErrorCodes.storageFailure, `message ${partition}-${seq} missing from storage`)
    }
    return message
  }

  private consumerFor(connection: ConsumerConnection): ConsumerState {
    const existing = this.consumers.get(connection.clientId)
    if (existing?.connection === connection) return existing
    // A new connection under the same client id takes over (MQTT session takeover).
    if (existing !== undefined) this.disconnect(existing.connection)
    const consumer = new ConsumerState(connection)
    this.consumers.set(connection.clientId, consumer)
    return consumer
  }

  private queueNamed(name: string): Queue {
    let queue = this.queues.get(name)
    if (queue === undefined) {
      const settings = this.settingsFor(name)
      queue = new Queue(
        name,
        settings,
        this.store,
        this,
        this.servesAll || name.startsWith(DEAD_LETTER_PREFIX),
      )
      this.queues.set(name, queue)
    }
    return queue
  }

  private groupOf(queue: Queue, name: string): ConsumerGroup {
    let group = queue.groups.get(name)
    if (group === undefined) {
      group = new ConsumerGroup(queue.name, name, this.clock.now())
      queue.groups.set(name, group)
      this.scheduleExpiry(queue, group)
    }
    return group
  }

  /** Returns true when the membership was not known yet. */
  private rememberMembership(membership: Membership): boolean {
    const stored = this.memberships.get(membership.clientId) ?? []
    if (stored.some((known) => known.queue === membership.queue && known.group === membership.group))
      return false
    stored.push(membership)
    this.memberships.set(membership.clientId, stored)
    return true
  }

  private assertQueueName(name: string): void {
    const problem = this.nameProblem(name)
    if (problem !== undefined) throw new QueueError(QueueErrorCodes.invalidQueueName, problem)
  }

  /** {@link queueNameProblem}, answered by the queue itself when it exists (it checked its name once). */
  private nameProblem(name: string): string | undefined {
    const queue = this.queues.get(name)
    return queue === undefined ? queueNameProblem(name) : queue.nameProblem
  }

  private assertOpen(): void {
    if (!this.opened) throw new QueueError(QueueErrorCodes.closed, 'queue manager is not open')
  }

  private unknown(input: SettleInput, detail: string): QueueError {
    return new QueueError(QueueErrorCodes.unknownMessage, `cannot ${input.action}: ${detail}`)
  }

  private logWriteFailure(error: unknown, queue: string): void {
    this.logger.error({ err: error, queue }, 'queue state write failed')
  }
}
