import type { ConsumerGroup } from './consumer-group.js'
import type { CoreContext } from './core-context.js'
import { QueueError, QueueErrorCodes } from './errors.js'
import type { GroupProgress } from './group-progress.js'
import { parseMessageId } from './message-id.js'
import type { Queue } from './queue.js'
import { DEAD_LETTER_PREFIX } from './settings.js'
import type { DeadLetterReason, MessageProperties, QueueMessage } from './types.js'
import type { CoreWrites } from './writes.js'

/**
 * A group that exists on every dead-letter queue and never has members: its progress marks the dead
 * letters an operator has not acted on yet (redrive or purge), and it keeps them stored until then.
 */
export const PENDING_DEAD_LETTERS_GROUP = '$pending'

/** What {@link DeadLetters.redrive} puts back, and how fast. */
export interface RedriveOptions {
  /** One dead letter, by its id in the dead-letter queue. */
  messageId?: string
  /** At most this many (default 1000). */
  limit?: number
  /** Paced at this rate, in the core's clock time. */
  ratePerSecond?: number
}

/**
 * Dead letters: a message that used up its deliveries or its time, or was rejected, moves to
 * `dlq/<queue>` (node-local, always served), where it waits for an operator to redrive or purge it.
 */
export class DeadLetters {
  constructor(
    private readonly ctx: CoreContext,
    private readonly writes: CoreWrites,
  ) {}

  /** Moves a message to `dlq/<queue>` and settles it for the group, in one atomic batch. */
  async deadLetter(
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
    const deadLetter = this.writes.append(deadLetters, deadLetters.partitionFor(undefined), {
      payload: message.payload,
      properties,
      enqueuedAtMs: this.ctx.clock.now(),
    })
    const { ops, snapshots } = this.writes.settleOps(queue, progress, message.seq)
    const pending = deadLetters.groups.get(PENDING_DEAD_LETTERS_GROUP)?.progress[deadLetter.partition]
    if (pending !== undefined) snapshots.set(pending.commitKey, pending.snapshot)
    this.ctx.observer.deadLettered(queue.name, group.name, reason)
    this.ctx.logger.info(
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
    await this.writes.commitAppend(
      deadLetters,
      deadLetter,
      ops,
      snapshots,
      queue.settings.durability.sync || deadLetters.settings.durability.sync,
    )
  }

  /** Dead letters of `name` not yet redriven or purged, oldest first. */
  async list(name: string, limit: number): Promise<QueueMessage[]> {
    const deadLetters = this.ctx.registry.find(DEAD_LETTER_PREFIX + name)
    if (deadLetters === undefined) return []
    const pending = deadLetters.groups.get(PENDING_DEAD_LETTERS_GROUP)
    const found: QueueMessage[] = []
    for (const log of deadLetters.logs) {
      const progress = pending?.progress[log.partition]
      let from = Math.max(log.firstSeq, (progress?.ackFloor ?? 0) + 1)
      while (from <= log.lastSeq && found.length < limit * deadLetters.logs.length) {
        const batch = await this.ctx.store.readMessages(deadLetters.name, log.partition, from, limit)
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
  async redrive(name: string, options: RedriveOptions = {}): Promise<number> {
    const { registry } = this.ctx
    this.ctx.assertOpen()
    if (registry.find(name) === undefined && registry.find(DEAD_LETTER_PREFIX + name) === undefined) {
      throw new QueueError(QueueErrorCodes.queueNotFound, `queue ${name} does not exist`)
    }
    const target = registry.getOrCreate(name)
    const deadLetters = registry.find(DEAD_LETTER_PREFIX + name)
    const candidates =
      options.messageId === undefined
        ? await this.list(name, options.limit ?? 1000)
        : (await this.list(name, Number.MAX_SAFE_INTEGER)).filter((m) => m.id === options.messageId)
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
      const message = this.writes.append(target, partition, {
        payload: deadLetter.payload,
        properties: { ...deadLetter.properties, userProperties },
        enqueuedAtMs: this.ctx.clock.now(),
      })
      const { ops, snapshots } = this.writes.settleOps(deadLetters, progress, deadLetter.seq)
      await this.writes.commitAppend(target, message, ops, snapshots, target.settings.durability.sync)
      redriven++
      if (intervalMs > 0 && redriven < candidates.length) await this.ctx.clock.sleep(intervalMs)
    }
    if (redriven > 0) this.ctx.logger.info({ queue: name, redriven }, 'dead letters redriven')
    return redriven
  }

  /** `dlq/<name>`, with the group that holds dead letters until an operator acts on them. */
  private deadLetterQueueOf(name: string): Queue {
    const { registry } = this.ctx
    const deadLetters = registry.getOrCreate(DEAD_LETTER_PREFIX + name)
    const pending = registry.groupOf(deadLetters, PENDING_DEAD_LETTERS_GROUP)
    for (const log of deadLetters.logs) pending.progressFor(log.partition, log.firstSeq - 1)
    return deadLetters
  }
}
