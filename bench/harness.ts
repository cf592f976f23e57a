/**
 * Benchmark plumbing: start brokers as child processes (by PID, loopback, port 0), connect mqtt.js
 * clients, and time bounded runs. Every run has a message count and a time limit.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt'

export interface BrokerProcess {
  readonly name: string
  readonly port: number
  stop(): Promise<void>
}

const distRoot = new URL('..', import.meta.url).pathname

/** Starts a child whose stdout prints a JSON line with the MQTT port, found by `portOf`. */
async function startChild(
  name: string,
  args: string[],
  portOf: (record: Record<string, unknown>) => number | undefined,
  cleanup: () => Promise<void> = () => Promise.resolve(),
): Promise<BrokerProcess> {
  const child: ChildProcess = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] })
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${name} did not start within 15 s`)), 15_000)
    createInterface({ input: child.stdout! }).on('line', (line) => {
      try {
        const port = portOf(JSON.parse(line) as Record<string, unknown>)
        if (port !== undefined) {
          clearTimeout(timer)
          resolve(port)
        }
      } catch {
        // a non-JSON line: not the one we wait for
      }
    })
    child.once('exit', (code) => reject(new Error(`${name} exited with ${code} before listening`)))
  })
  return {
    name,
    port,
    async stop() {
      child.kill('SIGTERM')
      await exited
      await cleanup()
    },
  }
}

export async function startSpool(extraArgs: string[] = []): Promise<BrokerProcess> {
  const dataDir = await mkdtemp(join(tmpdir(), 'spool-bench-'))
  return startChild(
    'spool',
    [
      join(distRoot, 'src/main.js'),
      'start',
      '--mqtt-port',
      '0',
      '--http-port',
      '0',
      '--host',
      '127.0.0.1',
      '--data-dir',
      dataDir,
      ...extraArgs,
    ],
    (record) => (record.msg === 'spool started' ? Number(record.mqttPort) : undefined),
    () => rm(dataDir, { recursive: true, force: true }),
  )
}

export function startPlainAedes(): Promise<BrokerProcess> {
  return startChild('aedes', [join(distRoot, 'bench/plain-aedes.js')], (record) =>
    typeof record.port === 'number' ? record.port : undefined,
  )
}

let clientCounter = 0

export async function connect(port: number, options: IClientOptions = {}): Promise<MqttClient> {
  const client = mqtt.connect(`mqtt://127.0.0.1:${port}`, {
    clientId: `bench-${process.pid}-${clientCounter++}`,
    protocolVersion: 5,
    reconnectPeriod: 0,
    ...options,
  })
  await new Promise<void>((resolve, reject) => {
    client.once('connect', () => resolve())
    client.once('error', reject)
  })
  return client
}

/**
 * Publishes `count` QoS 1 messages keeping `window` unacknowledged at most; resolves when all are
 * acknowledged. Rejects on the first refused publish or after `timeLimitMs`.
 */
export function publishMany(
  client: MqttClient,
  topic: string,
  count: number,
  payload: Buffer,
  window: number,
  timeLimitMs: number,
  properties: (index: number) => mqtt.IClientPublishOptions['properties'] = () => undefined,
): Promise<void> {
  return new Promise((resolve, reject) => {
    let sent = 0
    let acked = 0
    const timer = setTimeout(
      () => reject(new Error(`publish of ${count} timed out (${acked} acked)`)),
      timeLimitMs,
    )
    const sendMore = (): void => {
      while (sent < count && sent - acked < window) {
        const index = sent++
        const props = properties(index)
        client.publish(
          topic,
          payload,
          { qos: 1, ...(props === undefined ? {} : { properties: props }) },
          (error) => {
            if (error) {
              clearTimeout(timer)
              reject(error)
              return
            }
            acked++
            if (acked === count) {
              clearTimeout(timer)
              resolve()
            } else sendMore()
          },
        )
      }
    }
    sendMore()
  })
}

export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  const middle = sorted.length >> 1
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2
}

export async function endAll(clients: MqttClient[]): Promise<void> {
  await Promise.all(clients.map((client) => client.endAsync()))
}
