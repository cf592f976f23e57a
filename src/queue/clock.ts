import { setTimeout as sleep } from 'node:timers/promises'

/** Time as a port, so tests can advance it instead of sleeping. */
export interface Clock {
  now(): number
  setTimer(callback: () => void, delayMs: number): unknown
  clearTimer(handle: unknown): void
  /**
   * Resolves after `delayMs`: a pause that someone awaits (redrive pacing). Unlike the core's
   * timers, which are bookkeeping, it keeps the process alive while it runs.
   */
  sleep(delayMs: number): Promise<void>
}

/** The longest delay `setTimeout` honours (2^31 - 1 ms, about 24.8 days). */
const MAX_TIMER_DELAY_MS = 2 ** 31 - 1

export const systemClock: Clock = {
  now: () => Date.now(),
  setTimer: (callback, delayMs) => {
    // Node fires a longer delay at once (TimeoutOverflowWarning); a far deadline (a group expiry of
    // weeks) is armed again when this one fires early.
    const timer = setTimeout(callback, Math.min(delayMs, MAX_TIMER_DELAY_MS))
    // Timers are bookkeeping (deadlines, retries); they must not keep a stopping process alive.
    timer.unref()
    return timer
  },
  clearTimer: (handle) => clearTimeout(handle as NodeJS.Timeout),
  sleep: (delayMs) => sleep(delayMs),
}
