/**
 * Shared integration-test helpers: start Spool in-process on port 0 with a temp data dir, start it as
 * a child process and read the chosen ports from its log, connect mqtt.js clients with unique ids, and
 * wait for messages with bounded timeouts. Everything registers its own cleanup on `t.after`.
 */
import type { TestContext } from 'node:test'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { randomUUID } from 'node:crypto'
import { spawn, type ChildProcess } from 'node:child_process'
import { createInterface } from 'node:readline'
import { once } from 'node:events'
import mqtt, { type IClientOptions, type IConnackPacket, type IPublishPacket, type MqttClient } from 'mqtt'
import { pino } from 'pino'
import { validateConfig, type RawConfig, type SpoolConfig } from '../../src/config/index.js'
import { startServer, type RunningServer, type StartOptions } from '../../src/compose.js'
import { within } from './wait.js'

export const TIMEOUT_MS = 5_000

/** A temp directory removed after the test. */
export async function tempDir(t: TestContext, prefix = 'spool-test-'): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix))
  t.after(() => rm(dir, { recursive: true, force: true }))
  return dir
}

/** A config for tests: loopback, every port 0, silent logs. `raw` overrides like a config file. */
export function testConfig(dataDir: string, raw: RawConfig = {}): SpoolConfig {
  return validateConfig({
    mqtt: { port: 0, host: '127.0.0.1' },
    http: { port: 0 },
    log: { level: 'silent' },
    nodeId: 'test-node',
    ...raw,
    dataDir,
  })
}

/**
 * Starts Spool in-process with a temp data dir (or `dataDir`, to restart on the same state). Closed on
 * `t.after` unless the test closed it already (close is idempotent).
 */
export async function startTestServer(
  t: TestContext,
  options: { dataDir?: string; raw?: RawConfig; start?: StartOptions } = {},
): Promise<RunningServer> {
  const dataDir = options.dataDir ?? (await tempDir(t))
  const config = testConfig(dataDir, options.raw)
  const server = await startServer(config, { logger: pino({ level: 'silent' }), ...options.start })
  t.after(() => server.close())
  return server
}

/** A client id unique across the test run. */
export function uniqueId(prefix = 'c'): string {
  return `${prefix}-${randomUUID().slice(0, 8)}`
}

const connacks = new WeakMap<MqttClient, IConnackPacket>()

/** The CONNACK a client got from {@link connectClient}. */
export function connackOf(client: MqttClient): IConnackPacket {
  const connack = connacks.get(client)
  if (connack === undefined) throw new Error('client was not connected with connectClient')
  return connack
}

/** Connects an mqtt.js client (MQTT 5 unless `protocolVersion` says otherwise) and waits for CONNACK. */
export async function connectClient(
  t: TestContext,
  url: string | number,
  options: IClientOptions = {},
  /** Runs before CONNECT is sent: attach `message` listeners here when a resumed session may deliver at once. */
  beforeConnect?: (client: MqttClient) => void,
): Promise<MqttClient> {
  const brokerUrl = typeof url === 'number' ? `mqtt://127.0.0.1:${url}` : url
  const client = mqtt.connect(brokerUrl, {
    clientId: uniqueId(),
    protocolVersion: 5,
    reconnectPeriod: 0,
    connectTimeout: TIMEOUT_MS,
    ...options,
  })
  t.after(() => client.endAsync(true))
  beforeConnect?.(client)
  await within(
    new Promise<void>((resolve, reject) => {
      client.once('connect', (connack: IConnackPacket) => {
        connacks.set(client, connack)
        resolve()
      })
      client.once('error', reject)
    }),
    TIMEOUT_MS,
    `CONNACK for ${options.clientId ?? 'client'}`,
  )
  return client
}

export interface Received {
  topic: string
  payload: Buffer
  packet: IPublishPacket
}

/** Collects every message the client receives, for assertions with {@link waitForCount}. */
export function collect(client: MqttClient): Received[] {
  const received: Received[] = []
  client.on('message', (topic, payload, packet) => received.push({ topic, payload, packet }))
  return received
}

/** Resolves with the next message (optionally on `topic`); fails after the timeout. */
export function nextMessage(client: MqttClient, topic?: string, timeoutMs = TIMEOUT_MS): Promise<Received> {
  return within(
    new Promise<Received>((resolve) => {
      const onMessage = (t: string, payload: Buffer, packet: IPublishPacket) => {
        if (topic !== undefined && t !== topic) return
        client.off('message', onMessage)
        resolve({ topic: t, payload, packet })
      }
      client.on('message', onMessage)
    }),
    timeoutMs,
    `a message${topic === undefined ? '' : ` on ${topic}`}`,
  )
}

/** Waits until `list` has at least `count` entries, checking on every new message of `client`. */
export function waitForCount<T>(
  client: MqttClient,
  list: T[],
  count: number,
  timeoutMs = TIMEOUT_MS,
): Promise<void> {
  if (list.length >= count) return Promise.resolve()
  return within(
    new Promise<void>((resolve) => {
      const check = () => {
        // 'message' listeners run in registration order; collect() registered first, so list is current.
        if (list.length >= count) {
          client.off('message', check)
          resolve()
        }
      }
      client.on('message', check)
    }),
    timeoutMs,
    `${count} messages (have ${list.length})`,
  )
}

export interface ChildBroker {
  child: ChildProcess
  mqttPort: number
  httpPort: number
  wsPort: number | null
  /** Every stdout line (JSON log records) so far. */
  lines: string[]
  /** Resolves with the exit code. */
  exited: Promise<number | null>
}

export const MAIN_JS = new URL('../../src/main.js', import.meta.url).pathname

/** Runs `node dist/src/main.js ...args` to completion; for start-up failures. */
export async function runMain(
  args: string[],
  env: NodeJS.ProcessEnv = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [MAIN_JS, ...args], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()))
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
  // 'close', not 'exit': 'exit' may come before the last stdout/stderr data has been read.
  const [code] = (await within(once(child, 'close'), TIMEOUT_MS * 2, 'spool to exit')) as [number | null]
  return { code, stdout, stderr }
}

/** `node` arguments for `spool start` on loopback, MQTT and HTTP on port 0, data in `dataDir`. */
export function spoolStartArgv(dataDir: string): string[] {
  return [
    MAIN_JS,
    'start',
    '--mqtt-port',
    '0',
    '--http-port',
    '0',
    '--host',
    '127.0.0.1',
    '--data-dir',
    dataDir,
  ]
}

/**
 * Starts `spool start` as a child process on port 0 (MQTT, HTTP; WS if `ws`), with a temp data dir,
 * and reads the chosen ports from its `spool started` log line. Killed on `t.after` if still running.
 */
export async function spawnBroker(t: TestContext, args: string[] = [], options: { ws?: boolean } = {}) {
  const dataDir = await tempDir(t)
  const argv = [...spoolStartArgv(dataDir), ...(options.ws === true ? ['--ws-port', '0'] : []), ...args]
  const child = spawn(process.execPath, argv, { stdio: ['ignore', 'pipe', 'pipe'] })
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
  t.after(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL')
      await exited
    }
  })
  let stderr = ''
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
  const lines: string[] = []
  const rl = createInterface({ input: child.stdout })
  const started = new Promise<{ mqttPort: number; httpPort: number; wsPort: number | null }>(
    (resolve, reject) => {
      rl.on('line', (line) => {
        lines.push(line)
        try {
          const rec = JSON.parse(line) as {
            msg?: string
            mqttPort?: number
            httpPort?: number
            wsPort?: number | null
          }
          if (rec.msg === 'spool started' && rec.mqttPort !== undefined && rec.httpPort !== undefined) {
            resolve({ mqttPort: rec.mqttPort, httpPort: rec.httpPort, wsPort: rec.wsPort ?? null })
          }
        } catch {
          // not a JSON log line; kept in `lines` for diagnostics
        }
      })
      void exited.then((code) => reject(new Error(`spool exited with ${code} before starting: ${stderr}`)))
    },
  )
  const ports = await within(started, TIMEOUT_MS * 2, 'spool child to start')
  return { child, lines, exited, ...ports } satisfies ChildBroker
}
