import { QueueAdministration, type QueueAdmin } from './admin.js'
import { systemClock, type Clock } from './clock.js'
import { ConsumerState, Member } from './consumer-group.js'
import { CoreContext } from './core-context.js'
import { DeadLetters } from './dead-letters.js'
import { Deliveries } from './deliveries.js'
import { QueueError, QueueErrorCodes, type QueueErrorCode } from './errors.js'
import { GroupCommit, type SnapshotSource } from './group-commit.js'
import { GroupLifecycle } from './group-lifecycle.js'
import { GroupProgress } from './group-progress.js'
import { silentLogger, type QueueLogger } from './logger.js'
import { storedMessageBytes } from './message-size.js'
import { silentObserver, type QueueObserver } from './observer.js'
import { PartitionOwnership, type PartitionHost, type PartitionSnapshot } from './partition-ownership.js'
import type { Queue } from './queue.js'
import { QueueRegistry } from './registry.js'
import { DEFAULT_QUEUE_SETTINGS, type QueueSettingsOverrides } from './settings.js'
import type { QueueStore, StoreOp } from './store.js'
import { TimerQueue } from './timer-queue.js'
import type {
  ConsumerConnection,
  PublishInput,
  QueueMessage,
  QueueSettings,
  SettleInput,
  SubscribeOptions,
} from './types.js'
import { CoreWrites, NO_OPS } from './writes.js'

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

/**
 * The queue core: owns queues, consumer groups, deliveries and settles, and is the only writer of
 * the store. Everything in memory is derived from the store at {@link open}; every change is
 * written through one {@link GroupCommit}. This class is the producer and membership side and the
 * facade over the roles, which share one {@link CoreContext}: {@link Deliveries} (the state machine
 * of a delivery), {@link DeadLetters}, {@link GroupLifecycle} (expiry), {@link PartitionOwnership}
 * (the cluster's {@link PartitionHost}) and {@link admin} (the {@link QueueAdmin} port).
 */
export class QueueManager implements PartitionHost {
  readonly logger: QueueLogger
  /** Administration: the admin API, the CLI and metrics use this port. */
  readonly admin: QueueAdmin
  private readonly ctx: CoreContext
  private readonly registry: QueueRegistry
  private readonly writes: CoreWrites
  private readonly deliveries: Deliveries
  private readonly groups: GroupLifecycle
  private readonly ownership: PartitionOwnership
  private readonly implicitGroups: boolean

  constructor(options: QueueManagerOptions) {
    const store = options.store
    const clock = options.clock ?? systemClock
    const observer = options.observer ?? silentObserver
    this.logger = options.logger ?? silentLogger
    this.implicitGroups = options.implicitGroups ?? true
    this.registry = new QueueRegistry({
      store,
      clock,
      logger: this.logger,
      defaults: options.defaults ?? DEFAULT_QUEUE_SETTINGS,
      declared: options.declared ?? {},
      servesAll: options.servesAllPartitions ?? true,
      deliveryHost: () => this.deliveries,
      groupCreated: (queue, group) => this.groups.scheduleExpiry(queue, group),
    })
    this.ctx = new CoreContext(
      store,
      new GroupCommit(store, observer),
      new TimerQueue(clock),
      clock,
      this.logger,
      observer,
      this.registry,
    )
    this.writes = new CoreWrites(this.ctx)
    const deadLetters = new DeadLetters(this.ctx, this.writes)
    this.deliveries = new Deliveries(this.ctx, this.writes, deadLetters)
    this.groups = new GroupLifecycle(this.ctx, this.writes)
    this.ownership = new PartitionOwnership(this.ctx, this.deliveries)
    this.admin = new QueueAdministration(this.ctx, this.groups, deadLetters)
  }

  /** Opens the store and rebuilds queues, groups and memberships from it. */
  async open(): Promise<void> {
    const { registry } = this
    await this.ctx.store.open()
    const state = await this.ctx.store.loadState()
    for (const record of state.queueSettings) registry.adminSettings.set(record.queue, record.settings)
    for (const meta of state.partitions) {
      const queue = registry.getOrCreate(meta.queue)
      queue.ensurePartitions(meta.partition + 1)
      queue.log(meta.partition).restore(meta)
    }
    for (const stored of state.groups) {
      const queue = registry.getOrCreate(stored.queue)
      queue.ensurePartitions(stored.partition + 1)
      const group = registry.groupOf(queue, stored.group)
      group.progress[stored.partition] = GroupProgress.fromState(stored)
    }
    for (const membership of state.memberships) registry.rememberMembership(membership)
    for (const layout of state.layouts) {
      const queue = registry.find(layout.queue)
      if (queue === undefined) continue
      queue.storedPartitions = layout.partitions
      registry.keepStoredLayout(queue)
    }
    this.ctx.opened = true
    await this.groups.restore(state.groupRecords)
    this.logger.info(
      { queues: registry.queues.size, groups: state.groups.length, memberships: state.memberships.length },
      'queue state loaded',
    )
  }

  /** Stops timers and writes what is pending; in-flight deliveries stay unsettled in storage. */
  async close(): Promise<void> {
    if (!this.ctx.opened) return
    this.ctx.opened = false
    this.ctx.timers.stop()
    await this.ctx.commits.close()
    await this.ctx.store.close()
  }

  // ---- Producer ----

  async publish(input: PublishInput): Promise<QueueMessage> {
    this.ctx.assertOpen()
    const queue = this.checkedPublish(input)
    if (queue.pendingPartitions !== undefined) this.registry.applyPendingLayout(queue)
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
    const now = this.ctx.clock.now()
    const expiresAtMs =
      input.messageExpirySeconds === undefined ? undefined : now + input.messageExpirySeconds * 1000
    const message = this.writes.append(
      queue,
      partition,
      { payload: input.payload, properties: input.properties, enqueuedAtMs: now },
      expiresAtMs,
    )
    await this.writes.commitAppend(queue, message, NO_OPS, undefined, settings.durability.sync)
    this.ctx.observer.enqueued(queue.name)
    return message
  }

  /** Checks name and size like {@link publish}, and creates no queue (a cluster node forwarding it). */
  checkPublish(input: PublishInput): void {
    const problem = this.registry.nameProblem(input.queue)
    if (problem !== undefined) this.refusePublish(input, QueueErrorCodes.invalidQueueName, problem)
    this.checkSize(input, this.registry.settingsOf(input.queue))
  }

  /** Counts a refused publish and throws its QueueError. */
  private refusePublish(input: PublishInput, code: QueueErrorCode, message: string): never {
    this.ctx.observer.publishRefused(input.queue, code)
    throw new QueueError(code, message)
  }

  private checkedPublish(input: PublishInput): Queue {
    const problem = this.registry.nameProblem(input.queue)
    if (problem !== undefined) this.refusePublish(input, QueueErrorCodes.invalidQueueName, problem)
    const queue = this.registry.getOrCreate(input.queue)
    this.checkSize(input, queue.settings)
    return queue
  }

  private checkSize(input: PublishInput, settings: QueueSettings): void {
    const bytes = storedMessageBytes(input.queue, input.payload, input.properties)
    if (bytes > settings.maxMessageBytes) {
      this.refusePublish(
        input,
        QueueErrorCodes.messageTooLarge,
        `message of ${bytes} bytes (payload ${input.payload.byteLength}, queue name and properties ${bytes - input.payload.byteLength}) exceeds maxMessageBytes ${settings.maxMessageBytes} of queue ${input.queue}`,
      )
    }
  }

  // ---- Membership ----

  async subscribe(
    connection: ConsumerConnection,
    queueName: string,
    groupName: string,
    options: SubscribeOptions = {},
  ): Promise<void> {
    const { registry } = this
    this.ctx.assertOpen()
    registry.assertQueueName(queueName)
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
    const queue = registry.getOrCreate(queueName)
    const created = !queue.groups.has(groupName)
    const group = registry.groupOf(queue, groupName)
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
    if (options.persistentSession === true && registry.rememberMembership(membership)) {
      ops.push({ type: 'putMembership', membership })
    }
    const snapshots = new Map<string, SnapshotSource>()
    // A new group starts at the oldest stored message of each partition, and exists durably from now.
    // Only served partitions: one this node does not serve may hold progress imported from another
    // node, which its acquire reads back; there the group starts when the partition is acquired.
    if (created)
      for (const log of queue.servedLogs()) {
        const progress = group.progressFor(log.partition, log.firstSeq - 1)
        snapshots.set(progress.commitKey, progress.snapshot)
      }
    queue.wakeAll()
    if (ops.length > 0 || snapshots.size > 0) await this.ctx.commits.commit(ops, snapshots, false)
  }

  async resumeSession(connection: ConsumerConnection): Promise<Array<{ queue: string; group: string }>> {
    const stored = [...(this.registry.memberships.get(connection.clientId) ?? [])]
    for (const membership of stored) await this.subscribe(connection, membership.queue, membership.group)
    return stored.map(({ queue, group }) => ({ queue, group }))
  }

  async endSession(clientId: string): Promise<void> {
    const stored = this.registry.memberships.get(clientId)
    if (stored === undefined) return
    this.registry.memberships.delete(clientId)
    const ops = stored.map((membership): StoreOp => ({ type: 'deleteMembership', membership }))
    await this.ctx.commits.commit(ops, new Map(), false)
  }

  unsubscribe(connection: ConsumerConnection, queueName: string): void {
    const { memberships } = this.registry
    const consumer = this.registry.consumers.get(connection.clientId)
    if (consumer?.connection !== connection) return
    for (const member of [...consumer.members]) {
      if (member.group.queue === queueName) this.removeMember(member)
    }
    const stored = memberships.get(connection.clientId)
    const forgotten = stored?.filter((membership) => membership.queue === queueName) ?? []
    if (forgotten.length > 0) {
      memberships.set(
        connection.clientId,
        stored!.filter((membership) => membership.queue !== queueName),
      )
      const ops = forgotten.map((membership): StoreOp => ({ type: 'deleteMembership', membership }))
      this.ctx.commits
        .commit(ops, new Map(), false)
        .catch((error: unknown) => this.ctx.logWriteFailure(error, { queue: queueName }))
    }
  }

  disconnect(connection: ConsumerConnection): void {
    const consumer = this.registry.consumers.get(connection.clientId)
    if (consumer?.connection !== connection) return
    for (const member of [...consumer.members]) this.removeMember(member)
    this.registry.consumers.delete(connection.clientId)
  }

  settle(connection: ConsumerConnection, input: SettleInput): Promise<void> {
    return this.deliveries.settle(connection, input)
  }

  private removeMember(member: Member): void {
    const group = member.group
    const queue = this.registry.getOrCreate(group.queue)
    this.deliveries.returnInflight(queue, member)
    group.members.splice(group.members.indexOf(member), 1)
    member.consumer.members.delete(member)
    this.logger.debug(
      { queue: queue.name, group: group.name, clientId: member.consumer.connection.clientId },
      'consumer left group',
    )
    if (group.members.length === 0) this.groups.idle(queue, group)
    queue.wakeAll()
  }

  private consumerFor(connection: ConsumerConnection): ConsumerState {
    const { consumers } = this.registry
    const existing = consumers.get(connection.clientId)
    if (existing?.connection === connection) return existing
    // A new connection under the same client id takes over (MQTT session takeover).
    if (existing !== undefined) this.disconnect(existing.connection)
    const consumer = new ConsumerState(connection)
    consumers.set(connection.clientId, consumer)
    return consumer
  }

  // ---- PartitionHost: the cluster's port, served by PartitionOwnership ----

  partitionFor(queueName: string, partitionKey: string | undefined): number {
    return this.ownership.partitionFor(queueName, partitionKey)
  }

  settingsOf(queueName: string): QueueSettings {
    return this.ownership.settingsOf(queueName)
  }

  serves(queueName: string, partition: number): boolean {
    return this.ownership.serves(queueName, partition)
  }

  acquirePartition(queueName: string, partition: number): Promise<void> {
    return this.ownership.acquirePartition(queueName, partition)
  }

  releasePartition(queueName: string, partition: number): void {
    this.ownership.releasePartition(queueName, partition)
  }

  partitionSnapshot(queueName: string, partition: number): Promise<PartitionSnapshot> {
    return this.ownership.partitionSnapshot(queueName, partition)
  }

  readPartition(
    queueName: string,
    partition: number,
    fromSeq: number,
    limit: number,
  ): Promise<QueueMessage[]> {
    return this.ownership.readPartition(queueName, partition, fromSeq, limit)
  }

  importPartition(snapshot: PartitionSnapshot, batches: AsyncIterable<QueueMessage[]>): Promise<number> {
    return this.ownership.importPartition(snapshot, batches)
  }

  dropPartition(queueName: string, partition: number): Promise<void> {
    return this.ownership.dropPartition(queueName, partition)
  }
}
