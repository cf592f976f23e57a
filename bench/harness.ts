/**
 * Benchmark plumbing on the broker side: start Spool, plain aedes and mosquitto as child processes
 * (loopback only, stopped by PID), read a process's memory from /proc, size a data directory, and
 * small helpers (median, percentiles, time limits, an HTTP GET on loopback).
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises'
import { request } from 'node:http'
import { createConnection, createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'

export const LOOPBACK = '127.0.0.1'
export const MOSQUITTO_BIN = process.env.BENCH_MOSQUITTO ?? '/usr/sbin/mosquitto'

export type BrokerName = 'spool' | 'aedes' | 'mosquitto'

export interface BrokerProcess {
  readonly name: BrokerName
  readonly pid: number
  readonly port: number
  /** Spool only: the HTTP port (`/readyz`, admin API); null for the peers. */
  readonly httpPort: number | null
  /** Spool only: its data directory. */
  readonly dataDir: string | null
  /** SIGTERM to the PID, then waits for the exit (SIGKILL after 20 s). */
  stop(): Promise<void>
}

const distRoot = new URL('..', import.meta.url).pathname

interface Started {
  child: ChildProcess
  exited: Promise<void>
}

function spawnBroker(command: string, args: string[]): Started {
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'inherit'] })
  if (child.pid === undefined) throw new Error(`could not start ${command}`)
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  return { child, exited }
}

async function stopByPid(started: Started): Promise<void> {
  const { child, exited } = started
  if (child.exitCode !== null || child.signalCode !== null) return
  process.kill(child.pid!, 'SIGTERM')
  const forced = setTimeout(() => {
    if (child.exitCode === null && child.signalCode === null) process.kill(child.pid!, 'SIGKILL')
  }, 20_000)
  await exited
  clearTimeout(forced)
}

/** Resolves with the first stdout JSON record for which `pick` returns a value. */
function waitForRecord<T>(
  started: Started,
  what: string,
  pick: (record: Record<string, unknown>) => T | undefined,
  timeoutMs = 60_000,
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`${what} did not start within ${timeoutMs} ms`)),
      timeoutMs,
    )
    const lines = createInterface({ input: started.child.stdout! })
    lines.on('line', (line) => {
      let record: Record<string, unknown>
      try {
        record = JSON.parse(line) as Record<string, unknown>
      } catch {
        return // not a JSON line
      }
      const value = pick(record)
      if (value !== undefined) {
        clearTimeout(timer)
        resolve(value)
      }
    })
    void started.exited.then(() => {
      clearTimeout(timer)
      reject(new Error(`${what} exited before it was ready`))
    })
  })
}

export interface SpoolOptions {
  /** Reuse this data dir (it is then kept at stop); default: a new temp dir, removed at stop. */
  dataDir?: string
  configFile?: string
  /** Node flags before the script, e.g. `--cpu-prof`. */
  nodeFlags?: string[]
}

/** Spool's CLI on loopback, MQTT and HTTP on free ports, resolved once it logged `spool started`. */
export async function startSpool(options: SpoolOptions = {}): Promise<BrokerProcess> {
  const dataDir = options.dataDir ?? (await mkdtemp(join(tmpdir(), 'spool-bench-')))
  const started = spawnBroker(process.execPath, [
    ...(options.nodeFlags ?? []),
    ...spoolArgs(dataDir, 0, 0, options.configFile),
  ])
  const ports = await waitForRecord(started, 'spool', (record) =>
    record.msg === 'spool started'
      ? { mqtt: Number(record.mqttPort), http: Number(record.httpPort) }
      : undefined,
  )
  return {
    name: 'spool',
    pid: started.child.pid!,
    port: ports.mqtt,
    httpPort: ports.http,
    dataDir,
    async stop() {
      await stopByPid(started)
      if (options.dataDir === undefined) await rm(dataDir, { recursive: true, force: true })
    },
  }
}

function spoolArgs(dataDir: string, mqttPort: number, httpPort: number, configFile?: string): string[] {
  return [
    join(distRoot, 'src/main.js'),
    'start',
    '--host',
    LOOPBACK,
    '--mqtt-port',
    String(mqttPort),
    '--http-port',
    String(httpPort),
    '--data-dir',
    dataDir,
    ...(configFile === undefined ? [] : ['--config', configFile]),
  ]
}

export interface RestartTiming {
  /** `performance.now()` just before the spawn. */
  spawnedAt: number
  /** From spawn to the first `/readyz` 200. */
  readyMs: number
  broker: BrokerProcess
}

/**
 * Starts Spool on an existing data dir on known free ports and measures the time from spawn to the
 * first `/readyz` 200, polling every 10 ms (bounded by `timeoutMs`).
 */
export async function startSpoolTimed(
  dataDir: string,
  configFile: string,
  timeoutMs: number,
): Promise<RestartTiming> {
  const mqttPort = await freePort()
  const httpPort = await freePort()
  const spawnedAt = performance.now()
  const started = spawnBroker(process.execPath, spoolArgs(dataDir, mqttPort, httpPort, configFile))
  // Drain stdout so the child never blocks on a full pipe.
  createInterface({ input: started.child.stdout! }).on('line', () => undefined)
  let readyMs = -1
  while (performance.now() - spawnedAt < timeoutMs) {
    if (started.child.exitCode !== null) throw new Error('spool exited during restart')
    const status = await httpStatus(httpPort, '/readyz').catch(() => 0)
    if (status === 200) {
      readyMs = performance.now() - spawnedAt
      break
    }
    await sleep(10)
  }
  const broker: BrokerProcess = {
    name: 'spool',
    pid: started.child.pid!,
    port: mqttPort,
    httpPort,
    dataDir,
    stop: () => stopByPid(started),
  }
  if (readyMs < 0) {
    await broker.stop()
    throw new Error(`spool was not ready within ${timeoutMs} ms of its restart`)
  }
  return { spawnedAt, readyMs, broker }
}

export async function startPlainAedes(nodeFlags: string[] = []): Promise<BrokerProcess> {
  const started = spawnBroker(process.execPath, [...nodeFlags, join(distRoot, 'bench/plain-aedes.js')])
  const port = await waitForRecord(started, 'plain aedes', (record) =>
    typeof record.port === 'number' ? record.port : undefined,
  )
  return {
    name: 'aedes',
    pid: started.child.pid!,
    port,
    httpPort: null,
    dataDir: null,
    stop: () => stopByPid(started),
  }
}

export function mosquittoInstalled(): boolean {
  return existsSync(MOSQUITTO_BIN)
}

/**
 * Debian's mosquitto with a generated config in a temp dir: loopback listener on a free port, no
 * persistence, no limits on in-flight or queued messages (so it never drops QoS 1 messages).
 */
export async function startMosquitto(): Promise<BrokerProcess> {
  const dir = await mkdtemp(join(tmpdir(), 'spool-bench-mosquitto-'))
  const port = await freePort()
  const config = join(dir, 'mosquitto.conf')
  await writeFile(
    config,
    [
      `listener ${port} ${LOOPBACK}`,
      'allow_anonymous true',
      'persistence false',
      'max_inflight_messages 0',
      'max_queued_messages 0',
      'max_queued_bytes 0',
      'set_tcp_nodelay true',
      'log_dest stderr',
      'log_type error',
      'log_type warning',
      '',
    ].join('\n'),
  )
  const started = spawnBroker(MOSQUITTO_BIN, ['-c', config])
  createInterface({ input: started.child.stdout! }).on('line', () => undefined)
  const deadline = performance.now() + 15_000
  while (!(await canConnect(port))) {
    if (started.child.exitCode !== null) throw new Error(`mosquitto exited with ${started.child.exitCode}`)
    if (performance.now() > deadline) {
      await stopByPid(started)
      throw new Error('mosquitto did not listen within 15 s')
    }
    await sleep(20)
  }
  return {
    name: 'mosquitto',
    pid: started.child.pid!,
    port,
    httpPort: null,
    dataDir: null,
    async stop() {
      await stopByPid(started)
      await rm(dir, { recursive: true, force: true })
    },
  }
}

/** A port the OS considers free on loopback right now. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, LOOPBACK, () => {
      const address = server.address()
      const port = typeof address === 'object' && address !== null ? address.port : 0
      server.close(() => resolve(port))
    })
  })
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ host: LOOPBACK, port })
    socket.once('connect', () => {
      socket.destroy()
      resolve(true)
    })
    socket.once('error', () => resolve(false))
  })
}

/** Status code of a GET on loopback (1 s timeout). */
export function httpStatus(port: number, path: string): Promise<number> {
  return httpRequest(port, 'GET', path).then((response) => response.status)
}

export function httpJson(port: number, method: string, path: string): Promise<unknown> {
  return httpRequest(port, method, path).then((response) => {
    if (response.status >= 300) throw new Error(`${method} ${path}: ${response.status} ${response.body}`)
    return response.body === '' ? null : (JSON.parse(response.body) as unknown)
  })
}

export function httpText(port: number, path: string): Promise<string> {
  return httpRequest(port, 'GET', path).then((response) => {
    if (response.status !== 200) throw new Error(`GET ${path}: ${response.status}`)
    return response.body
  })
}

/** One unlabelled sample of a Prometheus text exposition, or NaN. */
export function metricValue(exposition: string, name: string): number {
  const match = new RegExp(`^${name} ([0-9.e+-]+)$`, 'm').exec(exposition)
  return match === null ? NaN : Number(match[1])
}

function httpRequest(port: number, method: string, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: LOOPBACK, port, method, path, timeout: 5_000 }, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (chunk: string) => (body += chunk))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }))
    })
    req.once('timeout', () => req.destroy(new Error(`${method} ${path} timed out`)))
    req.once('error', reject)
    req.end()
  })
}

/** VmRSS and VmHWM (peak) of a process, in bytes, from /proc. */
export async function memoryOf(pid: number): Promise<{ rss: number; peak: number }> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8')
  const kib = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN)
  return { rss: kib('VmRSS') * 1024, peak: kib('VmHWM') * 1024 }
}

const CLOCK_TICKS = 100 // USER_HZ on Linux

/** CPU seconds (user + system, all threads) a process has used so far, from /proc/PID/stat. */
export function cpuSecondsOf(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS
}

/** Idle and total CPU time of the whole machine so far (all cores), from /proc/stat, in seconds. */
export function machineCpu(): { idle: number; total: number } {
  const line = readFileSync('/proc/stat', 'utf8').split('\n')[0]!
  const values = line.trim().split(/\s+/).slice(1).map(Number)
  const total = values.reduce((sum, v) => sum + v, 0)
  return { idle: ((values[3] ?? 0) + (values[4] ?? 0)) / CLOCK_TICKS, total: total / CLOCK_TICKS }
}

/** Sum of the sizes of the files under `dir`. */
export async function directoryBytes(dir: string): Promise<number> {
  let total = 0
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name)
    if (entry.isDirectory()) total += await directoryBytes(path)
    else if (entry.isFile()) total += (await stat(path)).size
  }
  return total
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

export function median(values: number[]): number {
  if (values.length === 0) return NaN
  const sorted = [...values].sort((a, b) => a - b)
  const middle = sorted.length >> 1
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2
}

/** The q-quantile (0..1) of sorted values, nearest rank. */
export function quantile(sorted: Float64Array, q: number): number {
  if (sorted.length === 0) return NaN
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))
  return sorted[rank]!
}

export async function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  try {
    return await Promise.race([
      promise,
      new Promise<never>(
        (_, reject) => (timer = setTimeout(() => reject(new Error(`timed out: ${what}`)), ms)),
      ),
    ])
  } finally {
    clearTimeout(timer)
  }
}
