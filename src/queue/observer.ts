import type { QueueErrorCode } from './errors.js'
import type { DeadLetterReason, SettleAction } from './types.js'

/**
 * What the core reports as it works, for metrics. Implemented by observability (prom-client) and
 * called synchronously on the hot path: implementations only count, never block or throw.
 */
export interface QueueObserver {
  enqueued(queue: string): void
  publishRefused(queue: string, code: QueueErrorCode): void
  /** `sinceEnqueueMs` is the time from enqueue to this delivery. */
  delivered(queue: string, group: string, deliveryCount: number, sinceEnqueueMs: number): void
  /** `sinceDeliveryMs` is the time from the delivery to its settle, when it was in flight. */
  settled(queue: string, group: string, action: SettleAction, sinceDeliveryMs: number | undefined): void
  timedOut(queue: string, group: string): void
  deadLettered(queue: string, group: string, reason: DeadLetterReason): void
  /** A group had no member for its expiry and was deleted. */
  groupExpired(queue: string, group: string): void
  /** A background write of queue state (nobody awaits it) failed; it is logged too. */
  writeFailed(queue: string): void
  /** One group commit written: how many ops, how long the write took. */
  batchWritten(ops: number, durationMs: number): void
}

export const silentObserver: QueueObserver = {
  enqueued: () => undefined,
  publishRefused: () => undefined,
  delivered: () => undefined,
  settled: () => undefined,
  timedOut: () => undefined,
  deadLettered: () => undefined,
  groupExpired: () => undefined,
  writeFailed: () => undefined,
  batchWritten: () => undefined,
}
