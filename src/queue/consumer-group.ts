import { GroupProgress, type InflightHolder } from './group-progress.js'
import type { GroupRecord } from './store.js'
import type { TimerEntry } from './timer-queue.js'
import type { ConsumerConnection, QueueSettings } from './types.js'

/** A connected client as the core sees it, across all its queues and groups. */
export class ConsumerState {
  /** Unsettled deliveries to this client, across queues: bounded by its Receive Maximum. */
  inflight = 0
  readonly members = new Set<Member>()

  constructor(readonly connection: ConsumerConnection) {}

  hasCapacity(): boolean {
    return this.inflight < this.connection.receiveMaximum
  }
}

/** A consumer's place in one group. */
export class Member implements InflightHolder {
  inflight = 0

  constructor(
    readonly consumer: ConsumerState,
    readonly group: ConsumerGroup,
  ) {}

  hasCapacity(maxInflightPerConsumer: number): boolean {
    return this.inflight < maxInflightPerConsumer && this.consumer.hasCapacity()
  }
}

/**
 * A named consumer group of one queue: its online members and its durable progress per partition.
 * With ordered delivery each partition is served by one member (partition index modulo the members,
 * in join order); reassignment follows joins and leaves.
 */
export class ConsumerGroup {
  readonly members: Member[] = []
  readonly progress: GroupProgress[] = []
  /** Named after a client id (no `consumer-group` on the SUBSCRIBE that created it). */
  implicit = false
  /** Since when the group has had no member online; undefined while it has members. */
  idleSinceMs: number | undefined
  /** Deletes the group once it has been idle for its expiry; set only while idle. */
  expiry: TimerEntry | undefined
  private nextMember = 0

  constructor(
    readonly queue: string,
    readonly name: string,
    idleSinceMs: number,
  ) {
    this.idleSinceMs = idleSinceMs
  }

  /** When an idle group expires under `settings`, or undefined (has members, never expires, internal). */
  expiresAtMs(settings: QueueSettings): number | undefined {
    const afterMs = this.implicit ? settings.implicitGroupExpiryMs : settings.groupExpiryMs
    if (this.idleSinceMs === undefined || afterMs === 0 || this.name.startsWith('$')) return undefined
    return this.idleSinceMs + afterMs
  }

  record(): GroupRecord {
    const { queue, name: group, implicit, idleSinceMs } = this
    return idleSinceMs === undefined ? { queue, group, implicit } : { queue, group, implicit, idleSinceMs }
  }

  progressFor(partition: number, startAfterSeq: number): GroupProgress {
    let progress = this.progress[partition]
    if (progress === undefined) {
      progress = new GroupProgress(this.queue, this.name, partition, startAfterSeq)
      this.progress[partition] = progress
    }
    return progress
  }

  memberOf(consumer: ConsumerState): Member | undefined {
    return this.members.find((member) => member.consumer === consumer)
  }

  assignedMember(partition: number): Member | undefined {
    return this.members[partition % Math.max(1, this.members.length)]
  }

  /** Round robin over the members that have room; for unordered delivery. */
  pickMember(maxInflightPerConsumer: number): Member | undefined {
    const count = this.members.length
    for (let tried = 0; tried < count; tried++) {
      const member = this.members[(this.nextMember + tried) % count]
      if (member?.hasCapacity(maxInflightPerConsumer) === true) {
        this.nextMember = (this.nextMember + tried + 1) % count
        return member
      }
    }
    return undefined
  }
}
