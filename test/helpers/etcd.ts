/**
 * A real single-member etcd (Debian's etcd-server 3.4, `/usr/bin/etcd`) in a child process, for the
 * cluster tests: loopback only, on free ports, with its own temp data dir. It can be stopped, killed
 * and restarted on the same ports and data, so a test can take the coordinator's store away and give
 * it back. No mock: coordination bugs show up against the real lease and watch semantics.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { accessSync, constants } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { createServer, type AddressInfo, type Server } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

/** Where Debian's etcd-server package installs the server. */
export const ETCD_BINARY = '/usr/bin/etcd'

/** How long etcd may take to answer `/health` after a start or restart. */
const HEALTH_TIMEOUT_MS = 15_000
/** How long a SIGTERM may take before the helper kills etcd. */
const STOP_TIMEOUT_MS = 10_000
/** How long a SIGKILLed etcd may take to be reaped. */
const KILL_TIMEOUT_MS = 5_000
const HEALTH_POLL_MS = 50
/** Output kept for error messages: the end of etcd's log. */
const TAIL_CHARS = 8_000

/** True when the etcd binary is installed, so tests can skip with a clear message when it is not. */
export function etcdAvailable(): boolean {
  try {
    accessSync(ETCD_BINARY, constants.X_OK)
    return true
  } catch {
    return false
  }
}

/** The reason to give `test(..., { skip })` when etcd is missing, or false when it is there. */
export function skipWithoutEtcd(): string | false {
  return etcdAvailable() ? false : `${ETCD_BINARY} not installed (Debian package etcd-server)`
}

/** A running (or stopped) etcd started by {@link startEtcd}. */
export interface TestEtcd {
  /** Client URL, `http://127.0.0.1:<port>`; it stays the same across restarts. */
  readonly url: string
  /** Its data directory (removed by {@link cleanup}). */
  readonly dataDir: string
  /** SIGTERM, then waits for the exit (kills it if it does not exit in time, and fails). */
  stop(): Promise<void>
  /** SIGKILL, then waits for the exit: a crash. */
  kill(): Promise<void>
  /** Starts it again on the same ports and data dir (stopping it first if running); waits until healthy. */
  restart(): Promise<void>
  /** Stops it if running and removes its data. Idempotent. */
  cleanup(): Promise<void>
}

export interface StartEtcdOptions {
  /** Member name (`--name`); unique by default. */
  name?: string
}

/**
 * Starts etcd on two free loopback ports (client and peer) with a fresh temp data dir and waits
 * until `GET /health` says `"health":"true"` (at most 15 s; otherwise it fails with the end of
 * etcd's log). Call {@link TestEtcd.cleanup} in `t.after`.
 */
export async function startEtcd(options: StartEtcdOptions = {}): Promise<TestEtcd> {
  if (!etcdAvailable()) throw new Error(`${ETCD_BINARY} not installed (Debian package etcd-server)`)
  const [clientPort, peerPort] = await freePorts(2)
  const root = await mkdtemp(join(tmpdir(), 'spool-etcd-'))
  // A directory etcd creates itself, with the 0700 mode it insists on.
  const dataDir = join(root, 'data')
  const name = options.name ?? `spool-test-${randomBytes(4).toString('hex')}`
  const clientUrl = `http://127.0.0.1:${clientPort}`
  const peerUrl = `http://127.0.0.1:${peerPort}`
  const args = [
    '--name',
    name,
    '--data-dir',
    dataDir,
    '--listen-client-urls',
    clientUrl,
    '--advertise-client-urls',
    clientUrl,
    '--listen-peer-urls',
    peerUrl,
    '--initial-advertise-peer-urls',
    peerUrl,
    '--initial-cluster',
    `${name}=${peerUrl}`,
    '--initial-cluster-state',
    'new',
    '--initial-cluster-token',
    `${name}-token`,
    '--logger',
    'zap',
  ]

  let current: EtcdProcess | undefined
  let removed = false

  const start = async (): Promise<void> => {
    if (removed) throw new Error('etcd test server was cleaned up')
    const started = new EtcdProcess(args)
    current = started
    try {
      await started.waitHealthy(clientUrl, HEALTH_TIMEOUT_MS)
    } catch (error) {
      await started.kill()
      throw error
    }
  }

  const stop = async (): Promise<void> => {
    await current?.stop()
  }

  const handle: TestEtcd = {
    url: clientUrl,
    dataDir,
    stop,
    kill: async () => {
      await current?.kill()
    },
    restart: async () => {
      await stop()
      await start()
    },
    cleanup: async () => {
      try {
        await stop()
      } finally {
        removed = true
        await rm(root, { recursive: true, force: true })
      }
    },
  }
  try {
    await start()
  } catch (error) {
    await handle.cleanup()
    throw error
  }
  return handle
}

/** One run of the etcd binary. */
class EtcdProcess {
  private readonly child: ChildProcess
  private readonly exited: Promise<void>
  private output = ''
  private exitDescription: string | undefined

  constructor(args: string[]) {
    // An ETCD_* variable in the environment would override a flag: start from a clean slate.
    const env: NodeJS.ProcessEnv = {}
    for (const [key, value] of Object.entries(process.env)) {
      if (!key.startsWith('ETCD')) env[key] = value
    }
    this.child = spawn(ETCD_BINARY, args, { stdio: ['ignore', 'pipe', 'pipe'], env })
    // Both pipes are read to the end, so etcd never blocks on a full pipe.
    const keep = (chunk: Buffer) => {
      this.output = (this.output + chunk.toString()).slice(-TAIL_CHARS)
    }
    this.child.stdout?.on('data', keep)
    this.child.stderr?.on('data', keep)
    this.exited = new Promise<void>((resolve) => {
      this.child.once('exit', (code, signal) => {
        this.exitDescription = signal === null ? `exit code ${code}` : `signal ${signal}`
        resolve()
      })
      this.child.once('error', (error) => {
        this.exitDescription = `spawn error: ${error.message}`
        resolve()
      })
    })
  }

  get running(): boolean {
    return this.exitDescription === undefined
  }

  tail(): string {
    return this.output.trimEnd().split('\n').slice(-30).join('\n')
  }

  /** Polls `GET /health` until it says healthy; fails early if etcd exits, and after `timeoutMs`. */
  async waitHealthy(url: string, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs
    let last = 'no answer yet'
    for (let attempt = 0; attempt < timeoutMs / HEALTH_POLL_MS + 1; attempt++) {
      if (!this.running) {
        throw new Error(`etcd exited (${this.exitDescription}) before it was healthy:\n${this.tail()}`)
      }
      const remainingMs = deadline - Date.now()
      if (remainingMs <= 0) break
      try {
        const response = await fetch(`${url}/health`, {
          signal: AbortSignal.timeout(Math.max(1, Math.min(1000, remainingMs))),
        })
        const body = await response.text()
        last = `HTTP ${response.status} ${body.trim()}`
        if (response.ok && (JSON.parse(body) as { health?: unknown }).health === 'true') return
      } catch (error) {
        last = error instanceof Error ? error.message : String(error)
      }
      await Promise.race([this.exited, new Promise((resolve) => setTimeout(resolve, HEALTH_POLL_MS))])
    }
    throw new Error(
      `etcd was not healthy within ${timeoutMs} ms (last /health: ${last}); its log ends with:\n${this.tail()}`,
    )
  }

  /** SIGTERM and wait; if it does not exit in time, SIGKILL and fail (a stop that hangs is a bug). */
  async stop(): Promise<void> {
    if (!this.running) return
    this.child.kill('SIGTERM')
    if (await this.exitWithin(STOP_TIMEOUT_MS)) return
    await this.kill()
    throw new Error(`etcd did not exit within ${STOP_TIMEOUT_MS} ms of SIGTERM; killed:\n${this.tail()}`)
  }

  async kill(): Promise<void> {
    if (!this.running) return
    this.child.kill('SIGKILL')
    if (!(await this.exitWithin(KILL_TIMEOUT_MS))) {
      throw new Error(`etcd (pid ${this.child.pid}) did not exit within ${KILL_TIMEOUT_MS} ms of SIGKILL`)
    }
  }

  private async exitWithin(timeoutMs: number): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined
    const timedOut = new Promise<false>((resolve) => {
      timer = setTimeout(() => resolve(false), timeoutMs)
    })
    try {
      return await Promise.race([this.exited.then(() => true as const), timedOut])
    } finally {
      clearTimeout(timer)
    }
  }
}

/**
 * `count` distinct free ports on 127.0.0.1: listen on port 0 (all at once, so they differ), read the
 * ports back, close. Another process could take one before etcd binds it; on loopback in a test run
 * that is rare, and etcd then fails loudly ("address already in use").
 */
async function freePorts(count: number): Promise<number[]> {
  const servers: Server[] = []
  try {
    for (let i = 0; i < count; i++) {
      const server = createServer()
      servers.push(server)
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject)
        server.listen(0, '127.0.0.1', () => resolve())
      })
    }
    return servers.map((server) => (server.address() as AddressInfo).port)
  } finally {
    await Promise.all(
      servers.map(
        (server) =>
          new Promise<void>((resolve) => {
            if (!server.listening) resolve()
            else server.close(() => resolve())
          }),
      ),
    )
  }
}
