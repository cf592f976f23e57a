import type { ConsumerGroup } from './consumer-group.js'
import { PartitionLog } from './partition-log.js'
import { PartitionWorker, type DeliveryHost } from './partition-worker.js'
import { Partitioner } from './partitioner.js'
import { queueNameProblem } from './settings.js'
import type { QueueStore } from './store.js'
import type { QueueSettings } from './types.js'

/** One queue: its partitions (log + worker each), its consumer groups and its settings. */
export class Queue {
  readonly logs: PartitionLog[] = []
  readonly workers: PartitionWorker[] = []
  readonly groups = new Map<string, ConsumerGroup>()
  /** The partition count the store has for this queue's messages, once known (a layout record). */
  storedPartitions: number | undefined
  /**
   * The configured partition count, while the queue keeps {@link storedPartitions} because it still
   * holds messages placed with it; applied once the queue is empty.
   */
  pendingPartitions: number | undefined
  /**
   * What is wrong with the name ({@link queueNameProblem}), worked out once: the manager checks the
   * name of every publish and settle against the queue it names, when that queue exists.
   */
  readonly nameProblem: string | undefined
  private partitioner: Partitioner
  /**
   * The partitions this node serves, or undefined for all of them (a single node). In a cluster a
   * partition is served only between its acquire and release, while this node owns it.
   */
  private readonly served: Set<number> | undefined

  constructor(
    readonly name: string,
    private currentSettings: QueueSettings,
    private readonly store: QueueStore,
    private readonly host: DeliveryHost,
    servesAll = true,
  ) {
    this.nameProblem = queueNameProblem(name)
    this.served = servesAll ? undefined : new Set()
    this.partitioner = new Partitioner(currentSettings.partitions)
    this.ensurePartitions(currentSettings.partitions)
  }

  get settings(): QueueSettings {
    return this.currentSettings
  }

  /** New settings apply to the next publish and delivery; partitions only ever grow. */
  applySettings(settings: QueueSettings): void {
    this.currentSettings = settings
    this.partitioner = new Partitioner(settings.partitions)
    this.ensurePartitions(settings.partitions)
    this.wakeAll()
  }

  /** Partitions found in storage beyond the configured count stay served until drained. */
  ensurePartitions(count: number): void {
    for (let partition = this.logs.length; partition < count; partition++) {
      const log = new PartitionLog(this.name, partition, this.store)
      this.logs.push(log)
      this.workers.push(
        new PartitionWorker(
          log,
          this.groups,
          () => this.settings,
          () => this.isServed(partition),
          this.host,
        ),
      )
    }
  }

  partitionFor(partitionKey: string | undefined): number {
    return this.partitioner.partitionFor(partitionKey)
  }

  log(partition: number): PartitionLog {
    const log = this.logs[partition]
    if (log === undefined) throw new RangeError(`queue ${this.name} has no partition ${partition}`)
    return log
  }

  isServed(partition: number): boolean {
    return this.served === undefined || this.served.has(partition)
  }

  /** Marks a partition served or not; a node that serves every partition ignores this. */
  setServed(partition: number, served: boolean): void {
    if (served) this.served?.add(partition)
    else this.served?.delete(partition)
  }

  /** The logs of the partitions this node serves. */
  servedLogs(): PartitionLog[] {
    return this.served === undefined ? this.logs : this.logs.filter((log) => this.isServed(log.partition))
  }

  /** Stored messages of the served partitions (O(partitions)). */
  depth(): number {
    let depth = 0
    for (const log of this.servedLogs()) depth += log.count
    return depth
  }

  /** Messages `group` has not settled yet in the partitions served here (in flight included). */
  backlogOf(group: ConsumerGroup): number {
    let backlog = 0
    for (const log of this.servedLogs()) {
      const progress = group.progress[log.partition]
      backlog += progress === undefined ? log.count : progress.backlog(log.committedSeq)
    }
    return backlog
  }

  wakeAll(): void {
    for (const worker of this.workers) worker.wake()
  }

  wake(partition: number): void {
    this.workers[partition]?.wake()
  }
}
