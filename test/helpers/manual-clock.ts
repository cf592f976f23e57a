import type { Clock } from '../../src/queue/clock.js'

/** A clock that moves only when the test says so. */
export class ManualClock implements Clock {
  private current = 1_700_000_000_000
  private timers: Array<{ dueAtMs: number; callback: () => void; id: number }> = []
  private nextId = 1

  now(): number {
    return this.current
  }

  setTimer(callback: () => void, delayMs: number): unknown {
    const id = this.nextId++
    this.timers.push({ dueAtMs: this.current + delayMs, callback, id })
    return id
  }

  clearTimer(handle: unknown): void {
    this.timers = this.timers.filter((timer) => timer.id !== handle)
  }

  sleep(delayMs: number): Promise<void> {
    return new Promise((resolve) => this.setTimer(resolve, delayMs))
  }

  /** Moves time forward, firing due timers in order. */
  advance(ms: number): void {
    const target = this.current + ms
    for (let fired = 0; fired < 10_000; fired++) {
      this.timers.sort((a, b) => a.dueAtMs - b.dueAtMs)
      const next = this.timers[0]
      if (next === undefined || next.dueAtMs > target) break
      this.timers.shift()
      this.current = Math.max(this.current, next.dueAtMs)
      next.callback()
    }
    this.current = target
  }
}
