/**
 * The load generator's parent side: a pool of forked load processes (bench/load-worker.ts), so that
 * the mqtt.js clients of one run are spread over several processes and the load generator is not the
 * bottleneck. `runLoad` splits a run's publishers and consumers over the pool, starts them together,
 * waits until every message was published and (with consumers) delivered, or until the time limit,
 * and merges the per-message counts into lost and duplicate figures.
 */
import { fork, type ChildProcess } from 'node:child_process'
import { join } from 'node:path'

export interface PublisherSpec {
  /** Index of its first message; it sends first .. first + count - 1. */
  first: number
  count: number
  topic: string
  /** 0: publish to `topic`; n > 0: to `${topic}/${index % n}` (one topic per consumer). */
  spreadTopics: number
  /** Most QoS 1 publishes without their PUBACK. */
  window: number
  /** Messages per second; 0 = as fast as the window allows. */
  ratePerSec: number
}

export interface ConsumerSpec {
  filter: string
  userProperties?: Record<string, string>
  /** Spool queues: settle each delivery with a QoS 1 publish here; null: a plain subscriber. */
  ackTopic: string | null
  receiveMaximum: number
}

export interface WorkerJob {
  port: number
  payloadBytes: number
  totalMessages: number
  timeLimitMs: number
  recordLatency: boolean
  /** Fresh random bytes in every payload (costs load-generator CPU; for disk-size figures). */
  randomPayloads: boolean
  publishers: PublisherSpec[]
  consumers: ConsumerSpec[]
}

export interface WorkerResult {
  counts: Uint8Array
  latenciesUs: Float64Array
  done: number
  lastDoneUs: number
  published: number
  refused: number
  firstPublishUs: number
  lastPublishUs: number
  errors: string[]
}

export type ToWorker = { type: 'job'; job: WorkerJob } | { type: 'go' } | { type: 'stop' } | { type: 'exit' }

export type FromWorker =
  | { type: 'hello' }
  | { type: 'ready' }
  | { type: 'progress'; done: number; settled: number }
  | { type: 'result'; result: WorkerResult | null }
  | { type: 'error'; message: string }

class Worker {
  private waiting: { type: FromWorker['type']; resolve: (m: FromWorker) => void } | null = null
  done = 0
  settled = 0
  failure: string | null = null

  constructor(readonly child: ChildProcess) {
    child.on('message', (message: FromWorker) => {
      if (message.type === 'progress') {
        this.done = message.done
        this.settled = message.settled
        return
      }
      if (message.type === 'error') {
        this.failure ??= message.message
        return
      }
      if (this.waiting !== null && this.waiting.type === message.type) {
        const { resolve } = this.waiting
        this.waiting = null
        resolve(message)
      }
    })
  }

  next<T extends FromWorker['type']>(type: T, timeoutMs: number): Promise<Extract<FromWorker, { type: T }>> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting = null
        reject(new Error(`load process ${this.child.pid}: no '${type}' within ${timeoutMs} ms`))
      }, timeoutMs)
      const check = setInterval(() => {
        if (this.failure !== null || this.child.exitCode !== null) {
          clearTimeout(timer)
          clearInterval(check)
          this.waiting = null
          reject(new Error(`load process ${this.child.pid}: ${this.failure ?? 'exited'}`))
        }
      }, 20)
      this.waiting = {
        type,
        resolve: (message) => {
          clearTimeout(timer)
          clearInterval(check)
          resolve(message as Extract<FromWorker, { type: T }>)
        },
      }
    })
  }

  send(message: ToWorker): void {
    this.child.send(message)
  }
}

export class LoadPool {
  private constructor(private readonly workers: Worker[]) {}

  static async start(processes: number): Promise<LoadPool> {
    const script = join(new URL('.', import.meta.url).pathname, 'load-worker.js')
    const workers = Array.from(
      { length: processes },
      () =>
        new Worker(
          fork(script, [], { serialization: 'advanced', stdio: ['ignore', 'inherit', 'inherit', 'ipc'] }),
        ),
    )
    await Promise.all(workers.map((worker) => worker.next('hello', 10_000)))
    return new LoadPool(workers)
  }

  get size(): number {
    return this.workers.length
  }

  async close(): Promise<void> {
    await Promise.all(
      this.workers.map(async (worker) => {
        if (worker.child.exitCode !== null) return
        const exited = new Promise((resolve) => worker.child.once('exit', resolve))
        worker.send({ type: 'exit' })
        await exited
      }),
    )
  }

  /**
   * Runs one bounded load; see {@link LoadSpec}. `phase` is called when the clients start sending
   * and when the last message completed (or the time limit passed), to sample CPU use in between.
   */
  async run(spec: LoadSpec, phase: (at: 'go' | 'done') => void = () => undefined): Promise<LoadResult> {
    const plan = this.plan(spec)
    const involved = plan.filter((entry) => entry.job.publishers.length + entry.job.consumers.length > 0)
    for (const worker of involved) worker.worker.failure = null
    for (const { worker, job } of involved) {
      worker.done = 0
      worker.settled = 0
      worker.send({ type: 'job', job })
    }
    await Promise.all(involved.map(({ worker }) => worker.next('ready', 60_000)))
    phase('go')
    const startedUs = Number(process.hrtime.bigint() / 1000n)
    for (const { worker } of involved) worker.send({ type: 'go' })
    const deadline = performance.now() + spec.timeLimitMs
    let timedOut = false
    for (;;) {
      const failed = involved.find(({ worker }) => worker.failure !== null)
      if (failed !== undefined) throw new Error(`load process failed: ${failed.worker.failure}`)
      const settled = involved.reduce((sum, { worker }) => sum + worker.settled, 0)
      const done = involved.reduce((sum, { worker }) => sum + worker.done, 0)
      if (settled >= spec.messages && (spec.consumers.length === 0 || done >= spec.messages)) break
      if (performance.now() > deadline) {
        timedOut = true
        break
      }
      await new Promise((resolve) => setTimeout(resolve, 20))
    }
    phase('done')
    // A short grace so that a duplicate arriving right behind the last message is counted too.
    if (spec.consumers.length > 0) await new Promise((resolve) => setTimeout(resolve, 100))
    for (const { worker } of involved) worker.send({ type: 'stop' })
    const results = (await Promise.all(involved.map(({ worker }) => worker.next('result', 60_000))))
      .map((message) => message.result)
      .filter((result): result is WorkerResult => result !== null)
    return merge(spec, startedUs, results, timedOut)
  }

  /** Which clients run in which process: consumers and publishers in separate processes when possible. */
  private plan(spec: LoadSpec): Array<{ worker: Worker; job: WorkerJob }> {
    const jobs = this.workers.map((worker) => ({
      worker,
      job: {
        port: spec.port,
        payloadBytes: spec.payloadBytes,
        totalMessages: spec.messages,
        timeLimitMs: spec.timeLimitMs,
        recordLatency: spec.recordLatency,
        randomPayloads: spec.randomPayloads === true,
        publishers: [] as PublisherSpec[],
        consumers: [] as ConsumerSpec[],
      },
    }))
    const size = jobs.length
    const publisherProcs =
      spec.consumers.length === 0 || size === 1
        ? Math.min(size, spec.publishers)
        : Math.min(spec.publishers, Math.ceil(size / 2))
    const consumerProcs = Math.max(1, Math.min(spec.consumers.length, size - publisherProcs))
    spec.consumers.forEach((consumer, i) => jobs[i % consumerProcs]!.job.consumers.push(consumer))
    const offset = spec.consumers.length === 0 ? 0 : consumerProcs % size
    const per = Math.floor(spec.messages / spec.publishers)
    const extra = spec.messages % spec.publishers
    let first = 0
    for (let i = 0; i < spec.publishers; i++) {
      const count = per + (i < extra ? 1 : 0)
      jobs[(offset + (i % publisherProcs)) % size]!.job.publishers.push({
        first,
        count,
        topic: spec.topic,
        spreadTopics: spec.spreadTopics,
        window: spec.window,
        ratePerSec: spec.ratePerSec / spec.publishers,
      })
      first += count
    }
    return jobs
  }
}

export interface LoadSpec {
  port: number
  /** Messages published in all (indices 0 .. messages - 1). */
  messages: number
  payloadBytes: number
  publishers: number
  topic: string
  spreadTopics: number
  window: number
  /** Total publish rate over all publishers; 0 = unpaced. */
  ratePerSec: number
  consumers: ConsumerSpec[]
  recordLatency: boolean
  randomPayloads?: boolean
  timeLimitMs: number
}

export interface LoadResult {
  /** Messages per second: completed deliveries (or, without consumers, acknowledged publishes). */
  msgsPerSec: number
  seconds: number
  published: number
  refused: number
  /** With consumers: messages never delivered; without: publishes not acknowledged. */
  lost: number
  duplicates: number
  timedOut: boolean
  /** Sorted publish-to-delivery latencies, microseconds (when recorded). */
  latenciesUs: Float64Array
  errors: string[]
}

function merge(spec: LoadSpec, startedUs: number, results: WorkerResult[], timedOut: boolean): LoadResult {
  const published = results.reduce((sum, r) => sum + r.published, 0)
  const refused = results.reduce((sum, r) => sum + r.refused, 0)
  const errors = results.flatMap((r) => r.errors).slice(0, 10)
  let lost = 0
  let duplicates = 0
  let endUs: number
  let completed: number
  if (spec.consumers.length > 0) {
    const counts = new Uint16Array(spec.messages)
    for (const r of results) {
      if (r.counts.length !== spec.messages) continue
      for (let i = 0; i < counts.length; i++) counts[i]! += r.counts[i]!
    }
    for (const count of counts) {
      if (count === 0) lost++
      else duplicates += count - 1
    }
    endUs = Math.max(...results.map((r) => r.lastDoneUs))
    completed = spec.messages - lost
  } else {
    lost = spec.messages - published
    endUs = Math.max(...results.map((r) => r.lastPublishUs))
    completed = published
  }
  const latencyTotal = results.reduce((sum, r) => sum + r.latenciesUs.length, 0)
  const latenciesUs = new Float64Array(latencyTotal)
  let at = 0
  for (const r of results) {
    latenciesUs.set(r.latenciesUs, at)
    at += r.latenciesUs.length
  }
  latenciesUs.sort()
  const seconds = Math.max(1e-6, (endUs - startedUs) / 1e6)
  return {
    msgsPerSec: completed / seconds,
    seconds,
    published,
    refused,
    lost,
    duplicates,
    timedOut,
    latenciesUs,
    errors,
  }
}
