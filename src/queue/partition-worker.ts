import type { ConsumerGroup, Member } from './consumer-group.js'
import type { GroupProgress } from './group-progress.js'
import type { QueueLogger } from './logger.js'
import type { PartitionLog } from './partition-log.js'
import { Orderings, type QueueMessage, type QueueSettings } from './types.js'

/** What a worker asks of the manager: the bookkeeping around one delivery. */
export interface DeliveryHost {
  readonly logger: QueueLogger
  deliver(group: ConsumerGroup, progress: GroupProgress, member: Member, message: QueueMessage): void
  /** A seq the group should get is not in storage: a bug or a damaged store; skip it, loudly. */
  skipMissing(group: ConsumerGroup, progress: GroupProgress, seq: number): void
}

/** Deliveries made in one run before the worker yields the event loop to others. */
const DELIVERIES_PER_RUN = 1000

/**
 * Serves one partition of one queue to every group that has online members. Event driven: `wake()`
 * is called when a message is committed, a consumer frees capacity or joins, or a retry comes due;
 * there is no polling. One run at a time; a wake during a run makes it go round once more.
 */
export class PartitionWorker {
  private scheduled = false
  private running = false
  private again = false

  constructor(
    private readonly log: PartitionLog,
    private readonly groups: ReadonlyMap<string, ConsumerGroup>,
    private readonly settings: () => QueueSettings,
    /** False while another cluster node owns the partition: the worker then delivers nothing. */
    private readonly served: () => boolean,
    private readonly host: DeliveryHost,
  ) {}

  wake(): void {
    if (!this.served()) return
    if (this.running) {
      this.again = true
      return
    }
    if (this.scheduled) return
    this.scheduled = true
    queueMicrotask(this.runScheduled)
  }

  /** One function for every wake (a wake comes with each commit and settle). */
  private readonly runScheduled = (): void => void this.run()

  private async run(): Promise<void> {
    this.scheduled = false
    this.running = true
    try {
      let budget = DELIVERIES_PER_RUN
      do {
        this.again = false
        for (const group of this.groups.values()) {
          if (!this.served()) return
          if (group.members.length > 0) budget = await this.serve(group, budget)
        }
      } while (this.again && budget > 0)
      if (budget <= 0) setImmediate(() => this.wake())
    } catch (error) {
      this.host.logger.error(
        { err: error, queue: this.log.queue, partition: this.log.partition },
        'partition worker failed; it runs again on the next wake',
      )
    } finally {
      this.running = false
    }
  }

  /** Delivers to one group while it has candidates and capacity; returns the budget left. */
  private async serve(group: ConsumerGroup, budget: number): Promise<number> {
    const log = this.log
    const progress = group.progressFor(log.partition, log.firstSeq - 1)
    while (budget > 0 && this.served()) {
      const settings = this.settings()
      const keepOrder = settings.ordering !== Orderings.none
      const seq = progress.nextCandidate(keepOrder, log.committedSeq)
      if (seq === undefined) return budget
      let member: Member | undefined
      if (keepOrder) {
        if (progress.inflight.size >= settings.maxInflightPerPartition) return budget
        member = group.assignedMember(log.partition)
        if (member?.hasCapacity(settings.maxInflightPerConsumer) !== true) return budget
      } else {
        member = group.pickMember(settings.maxInflightPerConsumer)
        if (member === undefined) return budget
      }
      const message = log.cached(seq) ?? progress.readAhead.get(seq)
      if (message !== undefined) {
        this.host.deliver(group, progress, member, message)
        budget--
        continue
      }
      const batch = await log.readFrom(seq)
      progress.readAhead = new Map(batch.map((read) => [read.seq, read]))
      // The world may have moved during the read: go round and decide again.
      if (!progress.readAhead.has(seq) && !progress.isSettled(seq))
        this.host.skipMissing(group, progress, seq)
    }
    return budget
  }
}
