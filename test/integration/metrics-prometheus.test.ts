// A real Prometheus (Debian package `prometheus`, installed by .ci/run) scrapes a real Spool and
// answers a queue-depth query. Everything stays on loopback: one static target (Spool's HTTP port),
// no service discovery, no remote write, no alerting; the TSDB lives in a temp dir.
import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { createServer } from 'node:net'
import { once } from 'node:events'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { connectClient, startTestServer, tempDir, TIMEOUT_MS } from '../helpers/server.js'
import { publishOutcome, uniqueQueue } from '../helpers/queues.js'
import { within } from '../helpers/wait.js'

/** How long Prometheus may take to start, scrape (every 1 s) and answer. */
const PROMETHEUS_TIMEOUT_MS = 30_000

/** A loopback port that was free a moment ago (Prometheus has no port 0 to report back). */
async function freePort(): Promise<number> {
  const server = createServer()
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const address = server.address()
  assert.ok(address !== null && typeof address === 'object')
  await new Promise<void>((resolve) => server.close(() => resolve()))
  return address.port
}

/** Starts `prometheus` scraping `target` every second; stopped by its PID on `t.after`. */
async function startPrometheus(t: TestContext, target: string): Promise<{ url: string; log(): string }> {
  // `after` hooks run in the order they were added: stop Prometheus before its temp dir is removed.
  let stop = (): Promise<void> => Promise.resolve()
  t.after(() => stop())
  const dir = await tempDir(t, 'spool-prometheus-')
  const config = join(dir, 'prometheus.yml')
  await writeFile(
    config,
    [
      'global:',
      '  scrape_interval: 1s',
      '  evaluation_interval: 1s',
      'scrape_configs:',
      '  - job_name: spool',
      '    metrics_path: /metrics',
      '    static_configs:',
      `      - targets: ['${target}']`,
      '',
    ].join('\n'),
  )
  const port = await freePort()
  const child = spawn(
    'prometheus',
    [
      `--config.file=${config}`,
      `--storage.tsdb.path=${join(dir, 'data')}`,
      `--web.listen-address=127.0.0.1:${port}`,
      '--log.level=warn',
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  )
  let stderr = ''
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  const running = () => child.exitCode === null && child.signalCode === null
  stop = async () => {
    if (!running()) return
    process.kill(child.pid!, 'SIGTERM')
    try {
      await within(exited, TIMEOUT_MS, 'prometheus to stop')
    } catch {
      process.kill(child.pid!, 'SIGKILL')
      await exited
    }
  }
  await new Promise<void>((resolve, reject) => {
    child.once('spawn', () => resolve())
    child.once('error', (err) =>
      reject(new Error(`prometheus did not start (apt-get install prometheus): ${err.message}`)),
    )
  })
  t.diagnostic(`prometheus pid ${child.pid} on 127.0.0.1:${port}`)
  return { url: `http://127.0.0.1:${port}`, log: () => stderr.slice(-2000) }
}

/** The value of an instant query's first sample, or undefined (not scraped yet, or not up yet). */
async function queryValue(base: string, query: string): Promise<number | undefined> {
  try {
    const response = await fetch(`${base}/api/v1/query?query=${encodeURIComponent(query)}`)
    if (!response.ok) return undefined
    const body = (await response.json()) as { data?: { result?: Array<{ value?: [number, string] }> } }
    const value = body.data?.result?.[0]?.value?.[1]
    return value === undefined ? undefined : Number(value)
  } catch {
    return undefined // connection refused while Prometheus starts
  }
}

void test('Prometheus scrapes /metrics and answers spool_queue_depth for a queue', async (t) => {
  const server = await startTestServer(t)
  const queue = uniqueQueue('prom')
  const producer = await connectClient(t, server.mqttPort)
  for (let i = 0; i < 3; i++) {
    assert.equal((await publishOutcome(producer, `$queue/${queue}`, `job ${i}`)).reasonCode, 0)
  }

  const started = Date.now()
  const prometheus = await startPrometheus(t, `127.0.0.1:${server.httpPort}`)
  const query = `spool_queue_depth{queue="${queue}"}`
  // Polling is the only way to learn that a scrape happened: every 100 ms, bounded.
  let depth: number | undefined
  while (depth === undefined) {
    assert.ok(
      Date.now() - started < PROMETHEUS_TIMEOUT_MS,
      `no ${query} from Prometheus in time; its log: ${prometheus.log()}`,
    )
    await new Promise((resolve) => setTimeout(resolve, 100))
    depth = await queryValue(prometheus.url, query)
  }
  t.diagnostic(`first sample after ${Date.now() - started} ms`)
  assert.equal(depth, 3)
  assert.equal(await queryValue(prometheus.url, 'up{job="spool"}'), 1)
})
