/**
 * Brokers in child processes that a test may kill with SIGKILL: Spool (`spool start`) on a data dir
 * the test chooses, so a second child can start on the same state, and plain aedes
 * (dist/bench/plain-aedes.js), for comparisons with Spool under the same traffic. Each child is
 * killed on `t.after` if still running; each exposes its exit and its stderr for diagnostics.
 */
import type { TestContext } from 'node:test'
import { spawn, type ChildProcess } from 'node:child_process'
import { createInterface } from 'node:readline'
import { spoolStartArgv, TIMEOUT_MS } from './server.js'
import { within } from './wait.js'

/** How a child process ended. */
export interface ChildExit {
  code: number | null
  signal: NodeJS.Signals | null
}

/** A broker running in a child process. */
export interface KillableBroker {
  child: ChildProcess
  mqttPort: number
  /** Resolves once the child has exited. */
  exited: Promise<ChildExit>
  /** Every stdout line so far. */
  lines: string[]
  /** Everything written to stderr so far. */
  stderr(): string
  /** `kill -9`, then waits for the exit. */
  kill9(): Promise<ChildExit>
}

/**
 * Starts `node argv...` and waits for the stdout line from which `portOf` reads the MQTT port.
 */
async function spawnChild(
  t: TestContext,
  argv: string[],
  portOf: (line: string) => number | undefined,
  what: string,
): Promise<KillableBroker> {
  const child = spawn(process.execPath, argv, { stdio: ['ignore', 'pipe', 'pipe'] })
  const exited = new Promise<ChildExit>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  )
  const running = () => child.exitCode === null && child.signalCode === null
  t.after(async () => {
    if (running()) {
      child.kill('SIGKILL')
      await exited
    }
  })
  let stderr = ''
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
  const lines: string[] = []
  const port = new Promise<number>((resolve, reject) => {
    createInterface({ input: child.stdout }).on('line', (line) => {
      lines.push(line)
      const found = portOf(line)
      if (found !== undefined) resolve(found)
    })
    void exited.then(({ code, signal }) =>
      reject(new Error(`${what} exited (${code ?? signal}) before listening: ${stderr}`)),
    )
  })
  const mqttPort = await within(port, TIMEOUT_MS * 2, `${what} to listen`)
  return {
    child,
    mqttPort,
    exited,
    lines,
    stderr: () => stderr,
    kill9: async () => {
      if (running()) child.kill('SIGKILL')
      return exited
    },
  }
}

function jsonField(line: string, field: string, msg?: string): number | undefined {
  try {
    const record = JSON.parse(line) as Record<string, unknown>
    if (msg !== undefined && record['msg'] !== msg) return undefined
    const value = record[field]
    return typeof value === 'number' ? value : undefined
  } catch {
    return undefined // not a JSON line; kept in `lines`
  }
}

/**
 * Starts `spool start` as a child on `dataDir` (MQTT and HTTP on port 0, loopback). Start another on
 * the same `dataDir` after a {@link KillableBroker.kill9} to test recovery. `args` are extra CLI flags.
 */
export function spawnSpoolOn(t: TestContext, dataDir: string, args: string[] = []): Promise<KillableBroker> {
  const argv = [...spoolStartArgv(dataDir), ...args]
  return spawnChild(t, argv, (line) => jsonField(line, 'mqttPort', 'spool started'), 'spool child')
}

export const PLAIN_AEDES_JS = new URL('../../bench/plain-aedes.js', import.meta.url).pathname

/** Starts plain aedes 2.0.0-beta.1 (bench/plain-aedes.ts: in-memory persistence) as a child on port 0. */
export function spawnPlainAedes(t: TestContext): Promise<KillableBroker> {
  return spawnChild(t, [PLAIN_AEDES_JS], (line) => jsonField(line, 'port'), 'plain aedes child')
}
