import type { Clock } from './clock.js'

/** A scheduled callback; `cancel()` is O(1) (lazy removal from the heap). */
export interface TimerEntry {
  readonly dueAtMs: number
  cancel(): void
}

/** An entry of the heap; a class, so that scheduling (once per delivery) allocates no closure. */
class HeapEntry implements TimerEntry {
  cancelled = false

  constructor(
    readonly dueAtMs: number,
    readonly callback: () => void,
    private readonly onCancel: () => void,
  ) {}

  cancel(): void {
    if (this.cancelled) return
    this.cancelled = true
    this.onCancel()
  }
}

/**
 * Every deadline and retry of the core in one binary min-heap, served by a single clock timer armed
 * for the earliest entry: no polling loop, and no per-message timer objects.
 */
export class TimerQueue {
  private readonly heap: HeapEntry[] = []
  private cancelled = 0
  private armedFor = Infinity
  private handle: unknown = undefined
  private stopped = false

  constructor(private readonly clock: Clock) {}

  schedule(dueAtMs: number, callback: () => void): TimerEntry {
    const entry = new HeapEntry(dueAtMs, callback, this.noteCancelled)
    this.push(entry)
    this.arm()
    return entry
  }

  /** Cancels the clock timer; entries are dropped. */
  stop(): void {
    this.stopped = true
    this.heap.length = 0
    this.cancelled = 0
    this.disarm()
  }

  private fire = (): void => {
    this.handle = undefined
    this.armedFor = Infinity
    const now = this.clock.now()
    // Bounded by the heap size at entry: callbacks that schedule new due entries run next turn.
    let budget = this.heap.length
    while (budget-- > 0) {
      const top = this.heap[0]
      if (top === undefined || top.dueAtMs > now) break
      this.pop()
      if (top.cancelled) this.cancelled--
      else top.callback()
    }
    this.arm()
  }

  /**
   * Most deadlines are cancelled (the delivery was settled) long before they are due; rebuild the
   * heap when they are the majority so memory follows live entries, not the delivery rate.
   */
  private readonly noteCancelled = (): void => {
    this.cancelled++
    if (this.cancelled < 1024 || this.cancelled * 2 < this.heap.length) return
    const live = this.heap.filter((entry) => !entry.cancelled)
    this.heap.length = 0
    this.cancelled = 0
    for (const entry of live) this.push(entry)
  }

  private arm(): void {
    if (this.stopped) return
    while (this.heap[0]?.cancelled === true) {
      this.pop()
      this.cancelled--
    }
    const top = this.heap[0]
    if (top === undefined) return this.disarm()
    if (top.dueAtMs >= this.armedFor) return
    this.disarm()
    this.armedFor = top.dueAtMs
    this.handle = this.clock.setTimer(this.fire, Math.max(0, top.dueAtMs - this.clock.now()))
  }

  private disarm(): void {
    if (this.handle !== undefined) this.clock.clearTimer(this.handle)
    this.handle = undefined
    this.armedFor = Infinity
  }

  private push(entry: HeapEntry): void {
    const heap = this.heap
    heap.push(entry)
    let index = heap.length - 1
    while (index > 0) {
      const parent = (index - 1) >> 1
      if (heap[parent]!.dueAtMs <= entry.dueAtMs) break
      heap[index] = heap[parent]!
      index = parent
    }
    heap[index] = entry
  }

  private pop(): void {
    const heap = this.heap
    const last = heap.pop()
    if (last === undefined || heap.length === 0) return
    let index = 0
    for (;;) {
      const left = index * 2 + 1
      if (left >= heap.length) break
      const right = left + 1
      const child = right < heap.length && heap[right]!.dueAtMs < heap[left]!.dueAtMs ? right : left
      if (heap[child]!.dueAtMs >= last.dueAtMs) break
      heap[index] = heap[child]!
      index = child
    }
    heap[index] = last
  }
}
