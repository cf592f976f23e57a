// Model-based test of the queue contract (docs/queue-protocol.md): seeded random sequences of
// operations (publish with and without partition-key, consumers of 1-3 groups joining, leaving,
// reconnecting with persistent sessions, $ack / $nack / $reject / $extend, delivery timeouts,
// kill -9 + restart) run against real `spool start` children with real mqtt.js 5 clients, and every
// trace is checked against a small model of the contract (test/model/checker.ts).
//
// Sequences without a crash step share one broker, each on its own queue; sequences with crash steps
// run in batches on a second broker, which is killed once every sequence of the batch reached a crash
// step (test/model/runner.ts). Every queue is declared in a config file (`--config`) with its seeded
// settings: partitions, ordering, a short deliveryTimeoutMs, short backoffs and a low maxDeliveries.
//
// Environment (defaults are the CI size): MODEL_SEQUENCES (sequences), MODEL_STEPS (at most this many
// steps, at least half), MODEL_SEED (first sequence seed, or `random`; sequence i uses seed + i),
// MODEL_CONCURRENCY (sequences at once on the shared broker), MODEL_CRASH_BATCH (crash sequences
// sharing their kills), MODEL_CRASH_FRACTION, MODEL_TIME_LIMIT_MS (no new
// sequence starts after this), MODEL_TRACE=1 (print the whole trace of a failing sequence),
// A failure prints the replay line: `MODEL_SEED=<seed> MODEL_SEQUENCES=1 MODEL_STEPS=<n> npm run test:model`.
import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { writeFile, mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { spawnSpoolOn, type KillableBroker } from '../helpers/child-broker.js'
import { tempDir, TIMEOUT_MS } from '../helpers/server.js'
import { within } from '../helpers/wait.js'
import { checkSequence, type Violation } from './checker.js'
import { SequenceRun, type BrokerLink } from './runner.js'
import { formatOps, generateSequence, type SequenceSpec } from './sequence.js'
import { formatEvent, type FinalState, type Stamped } from './trace.js'

function intEnv(name: string, fallback: number): number {
  const raw = process.env[name]
  if (raw === undefined || raw === '') return fallback
  const value = Number(raw)
  if (!Number.isSafeInteger(value) || value < 0)
    throw new Error(`${name} must be a non-negative integer, got "${raw}"`)
  return value
}

function numberEnv(name: string, fallback: number): number {
  const raw = process.env[name]
  if (raw === undefined || raw === '') return fallback
  const value = Number(raw)
  if (!Number.isFinite(value) || value < 0) throw new Error(`${name} must be a number >= 0, got "${raw}"`)
  return value
}

const SEQUENCES = intEnv('MODEL_SEQUENCES', 400)
const STEPS = Math.max(1, intEnv('MODEL_STEPS', 20))
const SEED = process.env['MODEL_SEED'] === 'random' ? Date.now() % 1_000_000_000 : intEnv('MODEL_SEED', 1)
const CONCURRENCY = Math.max(1, intEnv('MODEL_CONCURRENCY', 12))
const CRASH_FRACTION = numberEnv('MODEL_CRASH_FRACTION', 0.2)
/** Crash sequences per batch: a batch shares its kills, so smaller batches mean more kills. */
const CRASH_BATCH = Math.max(1, intEnv('MODEL_CRASH_BATCH', 8))
const TIME_LIMIT_MS = intEnv('MODEL_TIME_LIMIT_MS', 70_000)
const FULL_TRACE = process.env['MODEL_TRACE'] === '1'
/** Failing sequences reported in full (the others by their first violation). */
const REPORTED_IN_FULL = 2

interface Outcome {
  spec: SequenceSpec
  events: Stamped[]
  final: FinalState
  violations: Violation[]
  durationMs: number
}

function httpPortOf(broker: KillableBroker): number {
  for (const line of broker.lines) {
    try {
      const record = JSON.parse(line) as { msg?: string; httpPort?: number }
      if (record.msg === 'spool started' && typeof record.httpPort === 'number') return record.httpPort
    } catch {
      // not a JSON log line
    }
  }
  throw new Error('no "spool started" line with httpPort')
}

/** A broker that sequences only share: a crash step on it is a bug in the test. */
class SharedBroker implements BrokerLink {
  readonly httpBase: string
  constructor(readonly broker: KillableBroker) {
    this.httpBase = `http://127.0.0.1:${httpPortOf(broker)}`
  }
  get mqttPort(): number {
    return this.broker.mqttPort
  }
  crash(): Promise<void> {
    return Promise.reject(new Error('a crash step on the shared broker'))
  }
  leave(): void {}
}

/**
 * The broker of the crash batches: killed once every sequence running on it waits at a crash step
 * (sequences that finished no longer count), then restarted on the same data dir.
 */
class CrashingBroker implements BrokerLink {
  crashes = 0
  readonly problems: string[] = []
  private readonly active = new Set<SequenceRun>()
  private readonly waiting = new Map<SequenceRun, { resolve(): void; reject(error: unknown): void }>()
  private crashing = false
  private http: number

  constructor(
    private readonly t: TestContext,
    private readonly dataDir: string,
    private readonly args: string[],
    public broker: KillableBroker,
  ) {
    this.http = httpPortOf(broker)
  }

  get mqttPort(): number {
    return this.broker.mqttPort
  }

  get httpBase(): string {
    return `http://127.0.0.1:${this.http}`
  }

  join(run: SequenceRun): void {
    this.active.add(run)
  }

  leave(run: SequenceRun): void {
    this.active.delete(run)
    this.maybeCrash()
  }

  crash(run: SequenceRun): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.waiting.set(run, { resolve, reject })
      this.maybeCrash()
    })
  }

  private maybeCrash(): void {
    if (this.crashing || this.waiting.size === 0) return
    for (const run of this.active) if (!this.waiting.has(run)) return
    void this.crashNow()
  }

  private async crashNow(): Promise<void> {
    this.crashing = true
    const waiters = [...this.waiting]
    this.waiting.clear()
    try {
      for (const [run] of waiters) run.onKill()
      const exit = await within(this.broker.kill9(), TIMEOUT_MS, 'the killed broker to exit')
      if (exit.signal !== 'SIGKILL') {
        this.problems.push(
          `the broker died of ${exit.signal ?? exit.code} before the kill: ${this.broker.stderr()}`,
        )
      }
      for (const [run] of waiters) run.afterKill()
      this.broker = await spawnSpoolOn(this.t, this.dataDir, this.args)
      this.http = httpPortOf(this.broker)
      this.crashes++
      for (const [, waiter] of waiters) waiter.resolve()
    } catch (error) {
      for (const [, waiter] of waiters) waiter.reject(error)
    } finally {
      this.crashing = false
    }
  }
}

async function runOne(t: TestContext, spec: SequenceSpec, link: BrokerLink): Promise<Outcome> {
  const started = Date.now()
  const run = new SequenceRun(spec, link, t)
  if (link instanceof CrashingBroker) link.join(run)
  const final = await run.run()
  const violations = checkSequence(spec, run.events, final)
  return { spec, events: run.events, final, violations, durationMs: Date.now() - started }
}

/** Runs `specs` on a shared broker, `concurrency` at a time, until the time limit. */
async function runShared(
  t: TestContext,
  specs: SequenceSpec[],
  link: SharedBroker,
  concurrency: number,
  deadline: number,
): Promise<Outcome[]> {
  const outcomes: Outcome[] = []
  let next = 0
  const worker = async () => {
    while (next < specs.length && Date.now() < deadline) {
      const spec = specs[next++]!
      outcomes.push(await runOne(t, spec, link))
    }
  }
  await Promise.all(Array.from({ length: concurrency }, worker))
  return outcomes
}

/** Runs `specs` on the crashing broker in batches of `concurrency` (a batch shares its kills). */
async function runCrashing(
  t: TestContext,
  specs: SequenceSpec[],
  link: CrashingBroker,
  concurrency: number,
  deadline: number,
): Promise<Outcome[]> {
  const outcomes: Outcome[] = []
  for (let at = 0; at < specs.length && Date.now() < deadline; at += concurrency) {
    const batch = specs.slice(at, at + concurrency)
    outcomes.push(...(await Promise.all(batch.map((spec) => runOne(t, spec, link)))))
  }
  return outcomes
}

function replayLine(spec: SequenceSpec): string {
  const extra = CRASH_FRACTION === 0.2 ? '' : ` MODEL_CRASH_FRACTION=${CRASH_FRACTION}`
  return `MODEL_SEED=${spec.seed} MODEL_SEQUENCES=1 MODEL_STEPS=${spec.maxSteps}${extra} npm run test:model`
}

function report(outcome: Outcome): string {
  const { spec, events, violations } = outcome
  const first = violations[0]!
  const from = FULL_TRACE ? 0 : Math.max(0, first.at - 45)
  const to = FULL_TRACE ? events.length : Math.min(events.length, first.at + 6)
  const lines = [
    `sequence seed=${spec.seed} queue=${spec.queue} crashes=${spec.crashes} settings=${JSON.stringify(spec.settings)}`,
    `replay: ${replayLine(spec)}`,
    `steps (${spec.ops.length}): ${formatOps(spec.ops)}`,
    `first violated invariant: [${first.invariant}] at #${first.at}: ${first.text}`,
  ]
  if (violations.length > 1) {
    lines.push(`${violations.length - 1} more, e.g.:`)
    for (const v of violations.slice(1, 6)) lines.push(`  [${v.invariant}] at #${v.at}: ${v.text}`)
  }
  lines.push(`trace #${from}..#${to - 1} of ${events.length}:`)
  for (let i = from; i < to; i++) lines.push(`  ${formatEvent(events[i]!, i)}`)
  return lines.join('\n')
}

void test(
  `queue contract model: ${SEQUENCES} seeded sequences from seed ${SEED}, up to ${STEPS} steps each`,
  { timeout: TIME_LIMIT_MS + 120_000 },
  async (t) => {
    const started = Date.now()
    const deadline = started + TIME_LIMIT_MS
    const specs = Array.from({ length: SEQUENCES }, (_, i) =>
      generateSequence(SEED + i, STEPS, CRASH_FRACTION),
    )
    const root = await tempDir(t, 'spool-model-')
    const config = join(root, 'spool.json')
    await writeFile(
      config,
      JSON.stringify({ queues: { declared: Object.fromEntries(specs.map((s) => [s.queue, s.settings])) } }),
    )
    const args = ['--config', config]
    const plain = specs.filter((s) => !s.crashes)
    const crashing = specs.filter((s) => s.crashes)

    const runs: Array<Promise<Outcome[]>> = []
    let shared: SharedBroker | undefined
    let crashy: CrashingBroker | undefined
    if (plain.length > 0) {
      await mkdir(join(root, 'shared'))
      shared = new SharedBroker(await spawnSpoolOn(t, join(root, 'shared'), args))
      runs.push(runShared(t, plain, shared, CONCURRENCY, deadline))
    }
    if (crashing.length > 0) {
      const dataDir = join(root, 'crashing')
      await mkdir(dataDir)
      crashy = new CrashingBroker(t, dataDir, args, await spawnSpoolOn(t, dataDir, args))
      runs.push(runCrashing(t, crashing, crashy, CRASH_BATCH, deadline))
    }
    const outcomes = (await Promise.all(runs)).flat().sort((a, b) => a.spec.seed - b.spec.seed)

    const count = (kind: Stamped['k']) =>
      outcomes.reduce((sum, o) => sum + o.events.filter((e) => e.k === kind).length, 0)
    const failing = outcomes.filter((o) => o.violations.length > 0)
    const byInvariant = new Map<string, number>()
    for (const o of failing) {
      const name = o.violations[0]!.invariant
      byInvariant.set(name, (byInvariant.get(name) ?? 0) + 1)
    }
    const slowest = outcomes.reduce((max, o) => Math.max(max, o.durationMs), 0)
    t.diagnostic(
      `${outcomes.length} of ${SEQUENCES} sequences run (seeds ${SEED}..${SEED + SEQUENCES - 1}, ` +
        `${outcomes.filter((o) => o.spec.crashes).length} with kill -9, ${crashy?.crashes ?? 0} kills) in ` +
        `${Date.now() - started} ms; slowest ${slowest} ms; steps ${outcomes.reduce((s, o) => s + o.spec.ops.length, 0)}, ` +
        `publishes ${count('pubSent')}, deliveries ${count('deliver')}, settles ${count('settleSent')}, ` +
        `dead letters ${outcomes.reduce((s, o) => s + o.final.deadLetters.length, 0)}`,
    )
    if (outcomes.length < SEQUENCES) {
      t.diagnostic(
        `time limit ${TIME_LIMIT_MS} ms reached: ${SEQUENCES - outcomes.length} sequences not started`,
      )
    }
    for (const [name, n] of byInvariant) t.diagnostic(`${n} sequences first violate [${name}]`)

    for (const link of [shared?.broker, crashy?.broker]) {
      if (link === undefined) continue
      assert.ok(
        link.child.exitCode === null && link.child.signalCode === null,
        `a broker died during the run: ${link.stderr()}`,
      )
    }
    assert.deepEqual(crashy?.problems ?? [], [], 'the crashing broker died only of the kills')
    if (failing.length > 0) {
      const full = failing.slice(0, REPORTED_IN_FULL).map(report)
      const others = failing
        .slice(REPORTED_IN_FULL)
        .map((o) => `seed ${o.spec.seed}: [${o.violations[0]!.invariant}] ${o.violations[0]!.text}`)
      assert.fail(
        `${failing.length} of ${outcomes.length} sequences violate the queue contract ` +
          `(failing seeds: ${failing.map((o) => o.spec.seed).join(' ')})\n\n${full.join('\n\n')}` +
          (others.length > 0 ? `\n\nothers:\n${others.join('\n')}` : ''),
      )
    }
  },
)
