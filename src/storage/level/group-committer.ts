/**
 * The one group committer of the LevelDB stores (the queue core's `src/queue/group-commit.ts` is
 * the same algorithm at the core's port, with per-record snapshots on top).
 *
 * - Every op added during one event-loop turn goes into one batch, written on `setImmediate`.
 * - At most one batch is being written at a time, so batches land in the order of the calls; ops
 *   added meanwhile wait for the next batch.
 * - A batch is written with `sync` if any of its callers asked for it.
 * - Each caller resolves once its batch has landed (its `onWritten` runs just before).
 * - A failed batch rejects every caller in it. What happens next is the store's choice,
 *   {@link AfterFailure}: `continue` writes the next batch as usual; `refuse` rejects the batch
 *   collected meanwhile and every later call with the same error, until the store is reopened (a new
 *   committer).
 */
import { LevelError, LevelErrorCodes } from './errors.js'

export const AfterFailure = {
  /** A failed batch fails only its own callers (the queue store, the session store). */
  continue: 'continue',
  /**
   * A failed batch poisons the committer (the forward buffer: its in-memory seqs no longer match the
   * disk, so nothing more may be written until a reopen reloads them).
   */
  refuse: 'refuse',
} as const
export type AfterFailure = (typeof AfterFailure)[keyof typeof AfterFailure]

export interface GroupCommitterOptions<Op> {
  /** Writes one batch atomically; never called again before the previous call has settled. */
  readonly write: (ops: Op[], sync: boolean) => Promise<void>
  readonly afterFailure: AfterFailure
}

interface Waiter {
  readonly resolve: () => void
  readonly reject: (error: unknown) => void
  readonly onWritten: (() => void) | undefined
}

export class GroupCommitter<Op> {
  readonly #write: (ops: Op[], sync: boolean) => Promise<void>
  readonly #afterFailure: AfterFailure
  #ops: Op[] = []
  #waiters: Waiter[] = []
  #sync = false
  #scheduled = false
  /** The batch being written; at most one at a time. */
  #writing: Promise<void> | undefined
  /** The error of the failed batch, once a `refuse` committer has had one. */
  #failure: Error | undefined
  #closed = false

  constructor(options: GroupCommitterOptions<Op>) {
    this.#write = options.write
    this.#afterFailure = options.afterFailure
  }

  /** The error that poisoned a `refuse` committer, if one did. */
  get failure(): Error | undefined {
    return this.#failure
  }

  /**
   * Adds `ops` to the batch being collected. Resolves once that batch has landed; `onWritten` runs
   * then, before the promise resolves, in the order of the calls. Rejects with the batch's error if
   * it failed, with the poisoning error of a failed `refuse` committer, or with `LEVEL_CLOSED` after
   * {@link close}.
   */
  add(ops: readonly Op[], sync: boolean, onWritten?: () => void): Promise<void> {
    if (this.#closed) {
      return Promise.reject(new LevelError(LevelErrorCodes.closed, 'the store is closed for writes'))
    }
    if (this.#failure !== undefined) return Promise.reject(this.#failure)
    for (const op of ops) this.#ops.push(op)
    this.#sync ||= sync
    // One promise per call: a shared promise per batch was measured slower (src/queue/group-commit.ts).
    const done = new Promise<void>((resolve, reject) => this.#waiters.push({ resolve, reject, onWritten }))
    this.#schedule()
    return done
  }

  /**
   * Refuses later {@link add}s, then waits until the collected batch and the one being written have
   * settled (their outcomes reach their own callers). Idempotent.
   */
  async close(): Promise<void> {
    this.#closed = true
    while (this.#scheduled || this.#writing !== undefined) {
      await (this.#writing ?? new Promise<void>((resolve) => setImmediate(resolve)))
    }
  }

  #schedule(): void {
    // A batch being written reschedules when it is done: what was collected meanwhile goes next.
    if (this.#scheduled || this.#writing !== undefined) return
    this.#scheduled = true
    setImmediate(this.#flush)
  }

  readonly #flush = (): void => {
    this.#scheduled = false
    if (this.#waiters.length === 0) return
    const ops = this.#ops
    const waiters = this.#waiters
    const sync = this.#sync
    this.#ops = []
    this.#waiters = []
    this.#sync = false
    const failure = this.#failure
    if (failure !== undefined) {
      for (const waiter of waiters) waiter.reject(failure)
      return
    }
    this.#writing = this.#write(ops, sync).then(
      () => {
        for (const waiter of waiters) {
          waiter.onWritten?.()
          waiter.resolve()
        }
      },
      (error: unknown) => {
        if (this.#afterFailure === AfterFailure.refuse) this.#failure ??= asError(error)
        for (const waiter of waiters) waiter.reject(error)
      },
    )
    void this.#writing.finally(() => {
      this.#writing = undefined
      if (this.#waiters.length > 0) this.#schedule()
    })
  }
}

function asError(error: unknown): Error {
  return error instanceof Error ? error : new Error(String(error))
}
