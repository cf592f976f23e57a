/**
 * Helpers for the MQTT 5 conformance tests (test/conformance/): broker config with `mqtt.*` limits,
 * and running the mosquitto command-line clients against a broker.
 */
import type { TestContext } from 'node:test'
import { spawn } from 'node:child_process'
import type { RawConfig } from '../../src/config/index.js'
import { TIMEOUT_MS } from './server.js'
import { within } from './wait.js'

/** `raw` config for startTestServer: loopback, port 0, plus the given `mqtt.*` settings. */
export function mqttSettings(settings: Record<string, unknown>, extra: RawConfig = {}): RawConfig {
  return { mqtt: { port: 0, host: '127.0.0.1', ...settings }, ...extra }
}

export interface Run {
  code: number | null
  stdout: string
  stderr: string
}

/** Runs a mosquitto client to completion (bounded); killed on `t.after` if still running. */
export async function runMosquitto(t: TestContext, command: string, args: string[]): Promise<Run> {
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] })
  t.after(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill()
  })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()))
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
  const code = await within(
    // 'close', not 'exit': after 'exit' stdout may still hold unread output.
    new Promise<number | null>((resolve) => child.once('close', (c) => resolve(c))),
    TIMEOUT_MS * 2,
    `${command} to exit`,
  )
  return { code, stdout, stderr }
}
