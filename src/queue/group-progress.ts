import type { GroupPartitionState, StoreOp } from './store.js'
import type { TimerEntry } from './timer-queue.js'
import type { ConsumerConnection, QueueMessage } from './types.js'

/**
 * Who holds a delivery in flight, as settling and releasing it need it: the group member and its
 * client, with their in-flight counts. consumer-group.ts's `Member` is one; declared here so that this
 * module does not import consumer-group.ts, which builds a GroupProgress per partition (no cycle).
 */
export interface InflightHolder {
  inflight: number
  readonly consumer: {
    inflight: number
    readonly connection: ConsumerConnection
    /** The client's memberships, across queues (whose partitions to wake when it has room again). */
    readonly members: ReadonlySet<{ readonly group: { readonly queue: string } }>
    hasCapacity(): boolean
  }
  hasCapacity(maxInflightPerConsumer: number): boolean
}

/** A delivery that waits for its settle. */
export interface Inflight {
  readonly message: QueueMessage
  readonly member: InflightHolder
  readonly deliveredAtMs: number
  deadline: TimerEntry
}

/**
 * One consumer group's progress through one partition. Every seq in (ackFloor, nextFresh) is in
 * exactly one of: settled, inflight, waiting (backoff), returned (due for redelivery). Seqs from
 * nextFresh up were never delivered to this group.
 */
export class GroupProgress {
  ackFloor: number
  nextFresh: number
  readonly settled = new Set<number>()
  /** Deliveries so far of each unsettled seq that was delivered at least once. */
  readonly attempts = new Map<number, number>()
  readonly inflight = new Map<number, Inflight>()
  readonly waiting = new Map<number, TimerEntry>()
  /** Due for redelivery, ascending. */
  readonly returned: number[] = []
  /** This group's last batch read from storage, for messages the partition cache had no room for. */
  readAhead = new Map<number, QueueMessage>()
  /** This record's key in a group-commit batch (one snapshot per batch). */
  readonly commitKey: string
  /** The op that stores this progress as it is when the batch is written (a group-commit snapshot). */
  readonly snapshot = (): StoreOp => ({ type: 'putGroupState', state: this.toState() })

  constructor(
    readonly queue: string,
    readonly group: string,
    readonly partition: number,
    startAfterSeq: number,
  ) {
    this.ackFloor = startAfterSeq
    this.nextFresh = startAfterSeq + 1
    this.commitKey = `g\u0000${queue}\u0000${group}\u0000${partition}`
  }

  /** Restores stored progress: every unsettled, once-delivered seq comes back as due for redelivery. */
  static fromState(state: GroupPartitionState): GroupProgress {
    const progress = new GroupProgress(state.queue, state.group, state.partition, state.ackFloor)
    let highest = state.ackFloor
    for (const seq of state.settledAbove) {
      progress.settled.add(seq)
      highest = Math.max(highest, seq)
    }
    for (const [seq, count] of state.attempts) {
      progress.attempts.set(seq, count)
      highest = Math.max(highest, seq)
    }
    for (let seq = state.ackFloor + 1; seq <= highest; seq++) {
      if (!progress.settled.has(seq)) progress.returned.push(seq)
    }
    progress.nextFresh = highest + 1
    return progress
  }

  toState(): GroupPartitionState {
    return {
      queue: this.queue,
      group: this.group,
      partition: this.partition,
      ackFloor: this.ackFloor,
      settledAbove: [...this.settled].sort((a, b) => a - b),
      attempts: [...this.attempts],
    }
  }

  /**
   * The next seq to deliver, or undefined. With `keepOrder`, nothing is delivered past a seq that
   * waits for its backoff, so a partition's order holds across retries.
   */
  nextCandidate(keepOrder: boolean, committedSeq: number): number | undefined {
    let blockedFrom = Infinity
    if (keepOrder) for (const seq of this.waiting.keys()) blockedFrom = Math.min(blockedFrom, seq)
    const retry = this.returned[0]
    if (retry !== undefined) return retry < blockedFrom ? retry : undefined
    const fresh = this.nextFresh
    return fresh <= committedSeq && fresh < blockedFrom ? fresh : undefined
  }

  /** Marks `seq` (from {@link nextCandidate}) as delivered; returns its delivery count. */
  take(seq: number): number {
    this.skip(seq)
    const count = (this.attempts.get(seq) ?? 0) + 1
    this.attempts.set(seq, count)
    return count
  }

  /** Passes over `seq` (from {@link nextCandidate}) without delivering it, e.g. an expired message. */
  skip(seq: number): void {
    if (this.returned[0] === seq) this.returned.shift()
    else if (seq === this.nextFresh) this.nextFresh++
  }

  /** Puts `seq` back for redelivery now. */
  giveBack(seq: number): void {
    const index = this.returned.findIndex((other) => other > seq)
    if (index === -1) this.returned.push(seq)
    else this.returned.splice(index, 0, seq)
  }

  isSettled(seq: number): boolean {
    return seq <= this.ackFloor || this.settled.has(seq)
  }

  /** Marks `seq` settled; returns true when the ack floor moved. */
  settle(seq: number): boolean {
    this.attempts.delete(seq)
    this.waiting.get(seq)?.cancel()
    this.waiting.delete(seq)
    const index = this.returned.indexOf(seq)
    if (index !== -1) this.returned.splice(index, 1)
    if (this.isSettled(seq)) return false
    this.settled.add(seq)
    const floorBefore = this.ackFloor
    while (this.settled.delete(this.ackFloor + 1)) this.ackFloor++
    return this.ackFloor !== floorBefore
  }

  /** Unsettled messages of this group in the partition, given the partition's last committed seq. */
  backlog(committedSeq: number): number {
    return Math.max(0, committedSeq - this.ackFloor - this.settled.size)
  }
}
