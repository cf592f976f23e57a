import { retryDelayMs } from './backoff.js'
import type { ConsumerGroup, Member } from './consumer-group.js'
import type { CoreContext } from './core-context.js'
import type { DeadLetters } from './dead-letters.js'
import { QueueError, QueueErrorCodes } from './errors.js'
import type { GroupCommit } from './group-commit.js'
import type { GroupProgress, Inflight } from './group-progress.js'
import type { QueueLogger } from './logger.js'
import { formatMessageId, parseMessageId } from './message-id.js'
import type { QueueObserver } from './observer.js'
import type { DeliveryHost } from './partition-worker.js'
import type { Queue } from './queue.js'
import type { QueueRegistry } from './registry.js'
import type { TimerEntry } from './timer-queue.js'
import {
  DeadLetterReasons,
  SettleActions,
  type ConsumerConnection,
  type QueueMessage,
  type SettleInput,
} from './types.js'
import { NO_OPS, type CoreWrites } from './writes.js'

/**
 * The state machine of one delivery: delivered (in flight, with a deadline), then acked, nacked
 * (due again after a backoff), extended, rejected or timed out, and dead-lettered once its
 * deliveries or its time are used up. The partition workers call {@link deliver}; consumers settle.
 */
export class Deliveries implements DeliveryHost {
  readonly logger: QueueLogger
  // The shared collaborators, by reference (the same objects as in the context), for the hot path.
  private readonly registry: QueueRegistry
  private readonly commits: GroupCommit
  private readonly observer: QueueObserver

  constructor(
    private readonly ctx: CoreContext,
    private readonly writes: CoreWrites,
    private readonly deadLetters: DeadLetters,
  ) {
    this.logger = ctx.logger
    this.registry = ctx.registry
    this.commits = ctx.commits
    this.observer = ctx.observer
  }

  /** DeliveryHost: bookkeeping of one delivery, then the write to the consumer. */
  deliver(group: ConsumerGroup, progress: GroupProgress, member: Member, message: QueueMessage): void {
    const queue = this.registry.getOrCreate(group.queue)
    const now = this.ctx.clock.now()
    if (message.expiresAtMs !== undefined && message.expiresAtMs <= now) {
      progress.skip(message.seq)
      void this.deadLetters
        .deadLetter(queue, group, progress, message, DeadLetterReasons.expired)
        .catch((error: unknown) => this.logFailure(error, group, message))
      return
    }
    // Deliveries it used up before a crash (in flight when the process died) count: no delivery
    // beyond maxDeliveries, also after a restart.
    if ((progress.attempts.get(message.seq) ?? 0) >= queue.settings.retry.maxDeliveries) {
      progress.skip(message.seq)
      void this.deadLetters
        .deadLetter(queue, group, progress, message, DeadLetterReasons.maxDeliveries)
        .catch((error: unknown) => this.logFailure(error, group, message))
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
      (error: unknown) => this.logFailure(error, group, message),
    )
  }

  /** DeliveryHost: a seq the group should get is not in storage; skipped, loudly. */
  skipMissing(group: ConsumerGroup, progress: GroupProgress, seq: number): void {
    this.logger.error(
      { queue: group.queue, group: group.name, partition: progress.partition, seq },
      'message missing from storage; skipped',
    )
    const queue = this.registry.getOrCreate(group.queue)
    progress.skip(seq)
    void this.writes.commitSettled(queue, progress, seq).catch((error: unknown) =>
      this.ctx.logWriteFailure(error, {
        queue: queue.name,
        partition: progress.partition,
        group: group.name,
      }),
    )
  }

  /** `$ack`, `$nack`, `$extend` or `$reject` of a delivery made to `connection`. */
  async settle(connection: ConsumerConnection, input: SettleInput): Promise<void> {
    this.ctx.assertOpen()
    const queue = this.registry.find(input.queue)
    if (queue === undefined) throw unknown(input, `queue ${input.queue} does not exist`)
    const parsed = parseMessageId(input.messageId)
    if (parsed === undefined || parsed.partition >= queue.logs.length) {
      throw unknown(input, `message-id "${input.messageId}" is not a message id of queue ${queue.name}`)
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
      throw unknown(input, `message ${input.messageId} is unknown in queue ${queue.name}`)
    }
    if (progress.isSettled(seq)) {
      throw unknown(input, `message ${input.messageId} is already settled for group ${group.name}`)
    }
    if (!progress.attempts.has(seq)) {
      throw unknown(input, `message ${input.messageId} has not been delivered to group ${group.name}`)
    }
    const inflight = progress.inflight.get(seq)
    if (inflight !== undefined && inflight.member.consumer.connection !== connection) {
      throw unknown(input, `message ${input.messageId} is in flight to another consumer`)
    }
    if (
      inflight === undefined &&
      (input.action === SettleActions.nack || input.action === SettleActions.extend)
    ) {
      throw unknown(input, `message ${input.messageId} is not in flight (its delivery timed out or returned)`)
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
        const settled = this.writes.commitSettled(queue, progress, seq)
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
        const deadLettered = this.deadLetters.deadLetter(
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

  /** A member leaves its group: its deliveries in flight return at once, not after a backoff. */
  returnInflight(queue: Queue, member: Member): void {
    const group = member.group
    for (const progress of group.progress) {
      if (progress === undefined) continue
      for (const [seq, inflight] of [...progress.inflight]) {
        if (inflight.member !== member) continue
        const released = this.releaseInflight(queue, progress, seq)!
        void this.retryLater(queue, group, progress, released.message, 0).catch((error: unknown) =>
          this.logFailure(error, group, released.message),
        )
      }
    }
  }

  /** Ends an in-flight delivery (settled, failed or returned) and frees the consumer's capacity. */
  releaseInflight(queue: Queue, progress: GroupProgress, seq: number): Inflight | undefined {
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
      for (const other of member.consumer.members) this.registry.getOrCreate(other.group.queue).wakeAll()
    return inflight
  }

  private deadlineFor(queue: Queue, group: ConsumerGroup, progress: GroupProgress, seq: number): TimerEntry {
    return this.ctx.timers.schedule(this.ctx.clock.now() + queue.settings.deliveryTimeoutMs, () => {
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
        this.logFailure(error, group, released.message),
      )
    })
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
    const now = this.ctx.clock.now()
    if ((progress.attempts.get(seq) ?? 0) >= retry.maxDeliveries) {
      return this.deadLetters.deadLetter(queue, group, progress, message, DeadLetterReasons.maxDeliveries)
    }
    if (now + delayMs - message.enqueuedAtMs > retry.totalTimeoutMs) {
      return this.deadLetters.deadLetter(queue, group, progress, message, DeadLetterReasons.timeout)
    }
    if (delayMs <= 0) {
      progress.giveBack(seq)
      queue.wake(progress.partition)
      return
    }
    progress.waiting.set(
      seq,
      this.ctx.timers.schedule(now + delayMs, () => {
        progress.waiting.delete(seq)
        progress.giveBack(seq)
        queue.wake(progress.partition)
      }),
    )
    // Without a waiting entry the partition may deliver past it (ordered mode): wake to re-check.
    queue.wake(progress.partition)
  }

  private groupForSettle(connection: ConsumerConnection, queue: Queue, input: SettleInput): ConsumerGroup {
    if (input.group !== undefined) {
      const group = queue.groups.get(input.group)
      if (group === undefined)
        throw unknown(input, `group ${input.group} does not exist on queue ${queue.name}`)
      return group
    }
    // Runs on every $ack without group-id: count the client's groups of this queue, keep the first.
    let only: ConsumerGroup | undefined
    let groups = 0
    const members = this.registry.consumers.get(connection.clientId)?.members
    if (members !== undefined)
      for (const member of members) {
        if (member.group.queue !== queue.name) continue
        only ??= member.group
        groups++
      }
    if (only === undefined) {
      throw unknown(input, `client is not a consumer of queue ${queue.name}; set the group-id user property`)
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
      queue.log(partition).cached(seq) ?? (await this.ctx.store.getMessage(queue.name, partition, seq))
    if (message === undefined) {
      throw new QueueError(
        QueueErrorCodes.storageFailure,
        `message ${formatMessageId(partition, seq)} missing from storage`,
      )
    }
    return message
  }

  private sinceDelivery(inflight: { deliveredAtMs: number } | undefined): number | undefined {
    return inflight === undefined ? undefined : this.ctx.clock.now() - inflight.deliveredAtMs
  }

  /** A background write for one message of one group failed (only called on failure). */
  private logFailure(error: unknown, group: ConsumerGroup, message: QueueMessage): void {
    this.ctx.logWriteFailure(error, {
      queue: group.queue,
      partition: message.partition,
      group: group.name,
      messageId: message.id,
    })
  }
}

function unknown(input: SettleInput, detail: string): QueueError {
  return new QueueError(QueueErrorCodes.unknownMessage, `cannot ${input.action}: ${detail}`)
}
