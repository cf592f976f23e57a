import type { PartitionMeta, QueueStore, StoreOp } from './store.js'
import type { QueueMessage } from './types.js'

/** How many messages of a partition stay in memory for delivery; the rest are read in batches. */
const CACHE_LIMIT = 1024
const READ_BATCH = 128

/**
 * The stored messages of one partition: a contiguous seq range [firstSeq, lastSeq] (messages are
 * deleted only from the front, once every group has settled them), the counters behind depth, and
 * a bounded read cache so that a deep backlog costs disk, not memory.
 */
export class PartitionLog {
  lastSeq = 0
  count = 0
  /** Highest seq whose write is durable; deliveries never run ahead of it. */
  committedSeq = 0
  private readonly cache = new Map<number, QueueMessage>()
  /** This record's key in a group-commit batch (one snapshot per batch). */
  readonly commitKey: string
  /** {@link metaOp} as of the batch's write (a group-commit snapshot). */
  readonly snapshot = (): StoreOp => this.metaOp()

  constructor(
    readonly queue: string,
    readonly partition: number,
    private readonly store: QueueStore,
  ) {
    this.commitKey = `p\u0000${queue}\u0000${partition}`
  }

  /** Takes the stored counters as they are (at start-up, or when a cluster node takes the partition). */
  restore(meta: Pick<PartitionMeta, 'lastSeq' | 'count'>): void {
    this.cache.clear()
    this.lastSeq = meta.lastSeq
    this.committedSeq = meta.lastSeq
    this.count = meta.count
  }

  get firstSeq(): number {
    return this.lastSeq - this.count + 1
  }

  nextSeq(): number {
    return this.lastSeq + 1
  }

  /** Records an appended message (its putMessage op is the caller's to commit). */
  append(message: QueueMessage): void {
    this.lastSeq = message.seq
    this.count++
    if (this.cache.size < CACHE_LIMIT) this.cache.set(message.seq, message)
  }

  markCommitted(seq: number): void {
    if (seq > this.committedSeq) this.committedSeq = seq
  }

  /** Deletes every stored message with seq <= throughSeq; returns the ops to commit. */
  deleteThrough(throughSeq: number): StoreOp[] {
    const ops: StoreOp[] = []
    const last = Math.min(throughSeq, this.lastSeq)
    for (let seq = this.firstSeq; seq <= last; seq++) {
      ops.push({ type: 'deleteMessage', queue: this.queue, partition: this.partition, seq })
      this.cache.delete(seq)
      this.count--
    }
    return ops
  }

  /** Forgets every message (purge); returns nothing to commit: the caller deletes the queue's records. */
  clear(): void {
    this.count = 0
    this.cache.clear()
  }

  metaOp(): StoreOp {
    return {
      type: 'putPartitionMeta',
      meta: { queue: this.queue, partition: this.partition, lastSeq: this.lastSeq, count: this.count },
    }
  }

  cached(seq: number): QueueMessage | undefined {
    return this.cache.get(seq)
  }

  /**
   * Reads up to a batch of stored messages from `seq` on. They join the shared cache while it has
   * room; the caller keeps the batch as its own read-ahead, so a group far behind the others reads
   * sequentially without growing the cache.
   */
  async readFrom(seq: number): Promise<QueueMessage[]> {
    const messages = await this.store.readMessages(this.queue, this.partition, seq, READ_BATCH)
    for (const message of messages) {
      if (this.cache.size >= CACHE_LIMIT) break
      if (message.seq >= this.firstSeq) this.cache.set(message.seq, message)
    }
    return messages
  }
}
