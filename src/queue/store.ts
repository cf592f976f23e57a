/**
 * The storage port of the queue core. The core is the only writer; it keeps counters and cursors in
 * memory and writes every change as one atomic batch of {@link StoreOp}s (group commit). A store
 * implementation must apply a batch all-or-nothing, and with `sync: true` must not resolve before the
 * batch is on stable storage.
 */
import type { QueueSettingsOverrides } from './settings.js'
import type { QueueMessage } from './types.js'

/** Durable bookkeeping of one partition of one queue. */
export interface PartitionMeta {
  readonly queue: string
  readonly partition: number
  /** Highest sequence number ever assigned (never reused, even after every message is deleted). */
  readonly lastSeq: number
  /** Messages currently stored in the partition. */
  readonly count: number
}

/** Durable progress of one consumer group on one partition. */
export interface GroupPartitionState {
  readonly queue: string
  readonly group: string
  readonly partition: number
  /** Every seq <= ackFloor is settled for this group. */
  readonly ackFloor: number
  /** Settled seqs above the floor, ascending. */
  readonly settledAbove: readonly number[]
  /** Delivered but unsettled: seq -> delivery count so far. */
  readonly attempts: ReadonlyArray<readonly [seq: number, deliveryCount: number]>
}

/** What is durable about a consumer group as a whole (its progress is per partition). */
export interface GroupRecord {
  readonly queue: string
  readonly group: string
  /** Named after a client id because the SUBSCRIBE had no `consumer-group`: a shorter expiry. */
  readonly implicit: boolean
  /**
   * When its last member left; absent while it has members. A node that stops with members online
   * leaves it absent, and the group counts as idle from the next start.
   */
  readonly idleSinceMs?: number
}

/**
 * The partition count a queue's stored messages were placed with: a key's partition follows from it,
 * so per-key order holds only while it stays the same for the messages still stored.
 */
export interface QueueLayout {
  readonly queue: string
  readonly partitions: number
}

/** A client's durable place in a consumer group, for MQTT sessions that outlive a connection. */
export interface Membership {
  readonly clientId: string
  readonly queue: string
  readonly group: string
}

/** Settings of a queue created or changed through the admin API (config-declared ones live in config). */
export interface StoredQueueSettings {
  readonly queue: string
  readonly settings: QueueSettingsOverrides
}

export type StoreOp =
  | { readonly type: 'putMessage'; readonly message: QueueMessage }
  | {
      readonly type: 'deleteMessage'
      readonly queue: string
      readonly partition: number
      readonly seq: number
    }
  | { readonly type: 'putPartitionMeta'; readonly meta: PartitionMeta }
  | { readonly type: 'putGroupState'; readonly state: GroupPartitionState }
  | {
      readonly type: 'deleteGroupState'
      readonly queue: string
      readonly group: string
      readonly partition: number
    }
  | { readonly type: 'putQueueSettings'; readonly record: StoredQueueSettings }
  | { readonly type: 'putGroupRecord'; readonly record: GroupRecord }
  | { readonly type: 'putQueueLayout'; readonly layout: QueueLayout }
  | { readonly type: 'deleteGroupRecord'; readonly queue: string; readonly group: string }
  | { readonly type: 'putMembership'; readonly membership: Membership }
  | { readonly type: 'deleteMembership'; readonly membership: Membership }
  /** Deletes a queue's messages, partition metas, group states and records, layout and settings. */
  | { readonly type: 'deleteQueue'; readonly queue: string }

/** Everything the core needs in memory after a restart (messages themselves are read lazily). */
export interface StoredState {
  readonly partitions: readonly PartitionMeta[]
  readonly groups: readonly GroupPartitionState[]
  readonly groupRecords: readonly GroupRecord[]
  readonly layouts: readonly QueueLayout[]
  readonly memberships: readonly Membership[]
  readonly queueSettings: readonly StoredQueueSettings[]
}

export interface QueueStore {
  open(): Promise<void>
  close(): Promise<void>
  /** Applies `ops` atomically, in order. */
  write(ops: readonly StoreOp[], options: { readonly sync: boolean }): Promise<void>
  /** Up to `limit` messages of a partition with seq >= fromSeq, ascending by seq. */
  readMessages(queue: string, partition: number, fromSeq: number, limit: number): Promise<QueueMessage[]>
  getMessage(queue: string, partition: number, seq: number): Promise<QueueMessage | undefined>
  loadState(): Promise<StoredState>
}
