import type { Clock } from './clock.js'
import { ConsumerGroup, type ConsumerState } from './consumer-group.js'
import { QueueError, QueueErrorCodes } from './errors.js'
import type { QueueLogger } from './logger.js'
import type { DeliveryHost } from './partition-worker.js'
import { Partitioner } from './partitioner.js'
import { Queue } from './queue.js'
import {
  DEAD_LETTER_PREFIX,
  queueNameProblem,
  resolveQueueSettings,
  settingsProblem,
  type QueueSettingsOverrides,
} from './settings.js'
import type { Membership, QueueStore } from './store.js'
import { Orderings, type QueueSettings } from './types.js'

export interface QueueRegistryOptions {
  readonly store: QueueStore
  readonly clock: Clock
  readonly logger: QueueLogger
  /** Settings of every queue not declared below. */
  readonly defaults: QueueSettings
  /** Queues with their own settings, by name (without `$queue/`). */
  readonly declared: Readonly<Record<string, QueueSettingsOverrides>>
  /** A single node serves every partition; a cluster node only those it acquired. */
  readonly servesAll: boolean
  /** Whom the partition workers of a new queue call for each delivery (read when a queue is created). */
  deliveryHost(): DeliveryHost
  /** A group was just created, idle: its expiry is armed. */
  groupCreated(queue: Queue, group: ConsumerGroup): void
}

/** How a publish to a queue not registered here is routed: its settings and a round robin. */
interface Route {
  readonly settings: QueueSettings
  readonly partitioner: Partitioner
}

/**
 * The queues of this node by name, their consumer groups, the connected consumers and the stored
 * memberships, and the settings each queue has. Only {@link getOrCreate} (and {@link groupOf})
 * create; every read leaves the registry as it was.
 */
export class QueueRegistry {
  readonly queues = new Map<string, Queue>()
  /** Connected consumers by client id. */
  readonly consumers = new Map<string, ConsumerState>()
  /** Stored memberships by client id, for persistent sessions. */
  readonly memberships = new Map<string, Membership[]>()
  /** Settings given through the admin API, by queue; they win over config. */
  readonly adminSettings = new Map<string, QueueSettingsOverrides>()
  readonly servesAll: boolean
  /** Queues a cluster node routes publishes for without storing any (forwarded to their owner). */
  private readonly routes = new Map<string, Route>()

  constructor(private readonly options: QueueRegistryOptions) {
    this.servesAll = options.servesAll
  }

  /** The queue, or undefined when it does not exist here. */
  find(name: string): Queue | undefined {
    return this.queues.get(name)
  }

  /** The queue; throws QUEUE_NOT_FOUND when it does not exist here. */
  require(name: string): Queue {
    const queue = this.queues.get(name)
    if (queue === undefined)
      throw new QueueError(QueueErrorCodes.queueNotFound, `queue ${name} does not exist`)
    return queue
  }

  /** The queue, created (with its partition workers) under its current settings on first use. */
  getOrCreate(name: string): Queue {
    let queue = this.queues.get(name)
    if (queue === undefined) {
      queue = new Queue(
        name,
        this.settingsFor(name),
        this.options.store,
        this.options.deliveryHost(),
        this.servesByDefault(name),
      )
      this.queues.set(name, queue)
      this.routes.delete(name)
    }
    return queue
  }

  /** Forgets a deleted queue and its admin settings. */
  remove(name: string): void {
    this.queues.delete(name)
    this.adminSettings.delete(name)
    this.routes.delete(name)
  }

  /** The group of `queue`, created (idle, its expiry armed) on first use. */
  groupOf(queue: Queue, name: string): ConsumerGroup {
    let group = queue.groups.get(name)
    if (group === undefined) {
      group = new ConsumerGroup(queue.name, name, this.options.clock.now())
      queue.groups.set(name, group)
      this.options.groupCreated(queue, group)
    }
    return group
  }

  /** Whether a queue's partitions are served without an acquire: all on a single node, dead letters always. */
  servesByDefault(name: string): boolean {
    return this.servesAll || name.startsWith(DEAD_LETTER_PREFIX)
  }

  /** Settings from defaults, config and the admin API, in that order of precedence (lowest first). */
  settingsFor(name: string): QueueSettings {
    const { defaults, declared } = this.options
    return resolveQueueSettings(defaults, { ...declared[name], ...this.adminSettings.get(name) })
  }

  /** The settings `overrides` would give queue `name`; throws INVALID_SETTINGS when they are out of range. */
  checkedSettings(name: string, overrides: QueueSettingsOverrides): QueueSettings {
    const { defaults, declared } = this.options
    const settings = resolveQueueSettings(defaults, { ...declared[name], ...overrides })
    const problem = settingsProblem(settings)
    if (problem !== undefined) throw new QueueError(QueueErrorCodes.invalidSettings, problem)
    return settings
  }

  /** The settings a queue has, or would have once used; creates nothing. */
  settingsOf(name: string): QueueSettings {
    return this.queues.get(name)?.settings ?? this.routeOf(name).settings
  }

  /** The partition a publish with this key goes to; creates nothing. */
  partitionFor(name: string, partitionKey: string | undefined): number {
    const queue = this.queues.get(name)
    return queue === undefined
      ? this.routeOf(name).partitioner.partitionFor(partitionKey)
      : queue.partitionFor(partitionKey)
  }

  /** {@link queueNameProblem}, answered by the queue itself when it exists (it checked its name once). */
  nameProblem(name: string): string | undefined {
    const queue = this.queues.get(name)
    return queue === undefined ? queueNameProblem(name) : queue.nameProblem
  }

  assertQueueName(name: string): void {
    const problem = this.nameProblem(name)
    if (problem !== undefined) throw new QueueError(QueueErrorCodes.invalidQueueName, problem)
  }

  /** Returns true when the membership was not known yet. */
  rememberMembership(membership: Membership): boolean {
    const stored = this.memberships.get(membership.clientId) ?? []
    if (stored.some((known) => known.queue === membership.queue && known.group === membership.group))
      return false
    stored.push(membership)
    this.memberships.set(membership.clientId, stored)
    return true
  }

  /**
   * At start-up: a queue that holds messages placed with another partition count than its settings
   * now give keeps that count (a key's partition follows from it, and its new messages must not pass
   * its old ones) until it is empty. Single node only: a cluster's count lives in etcd.
   */
  keepStoredLayout(queue: Queue): void {
    const stored = queue.storedPartitions
    const configured = queue.settings.partitions
    if (!this.servesAll || stored === undefined || stored === configured || queue.depth() === 0) return
    const ordering =
      queue.settings.ordering === Orderings.strict && stored !== 1
        ? Orderings.partition
        : queue.settings.ordering
    queue.applySettings({ ...queue.settings, partitions: stored, ordering })
    queue.pendingPartitions = configured
    this.options.logger.warn(
      { queue: queue.name, storedPartitions: stored, configuredPartitions: configured, depth: queue.depth() },
      'queue keeps its stored partition count until it is empty: changing it now would break per-key order',
    )
  }

  /** Applies the configured partition count once the queue that waited for it is empty. */
  applyPendingLayout(queue: Queue): void {
    if (queue.depth() > 0) return
    const partitions = queue.pendingPartitions
    queue.pendingPartitions = undefined
    queue.applySettings(this.settingsFor(queue.name))
    this.options.logger.info(
      { queue: queue.name, partitions },
      'queue is empty: configured partition count applied',
    )
  }

  private routeOf(name: string): Route {
    let route = this.routes.get(name)
    if (route === undefined) {
      const settings = this.settingsFor(name)
      route = { settings, partitioner: new Partitioner(settings.partitions) }
      this.routes.set(name, route)
    }
    return route
  }
}
