import type { Clock } from './clock.js'
import { QueueError, QueueErrorCodes } from './errors.js'
import type { GroupCommit } from './group-commit.js'
import type { QueueLogger } from './logger.js'
import type { QueueObserver } from './observer.js'
import type { QueueRegistry } from './registry.js'
import type { QueueStore } from './store.js'
import type { TimerQueue } from './timer-queue.js'

/** Where a failed background write happened, as far as the caller knows. */
export interface WriteFailureContext {
  readonly queue: string
  readonly partition?: number
  readonly group?: string
  readonly messageId?: string
}

/**
 * What every role of the core shares: one instance, handed to each (never copied), so that there is
 * one store writer, one timer heap, one registry of queues and one open/closed state.
 */
export class CoreContext {
  /** True between a successful open and the start of close. */
  opened = false

  constructor(
    readonly store: QueueStore,
    readonly commits: GroupCommit,
    readonly timers: TimerQueue,
    readonly clock: Clock,
    readonly logger: QueueLogger,
    readonly observer: QueueObserver,
    readonly registry: QueueRegistry,
  ) {}

  assertOpen(): void {
    if (!this.opened) throw new QueueError(QueueErrorCodes.closed, 'queue manager is not open')
  }

  /** A write nobody awaits (a delivery's attempt, a retry, a group record) failed: logged and counted. */
  logWriteFailure(error: unknown, where: WriteFailureContext): void {
    this.logger.error({ err: error, ...where }, 'queue state write failed')
    this.observer.writeFailed(where.queue)
  }
}
