/**
 * Helpers for the `/metrics` tests: scrape a running server and read samples out of the Prometheus
 * text exposition.
 */
import assert from 'node:assert/strict'
import type { RunningServer } from '../../src/compose.js'

/** `GET /metrics`: the body; fails unless 200 with the Prometheus text content type. */
export async function scrape(server: Pick<RunningServer, 'httpPort'>): Promise<string> {
  const response = await fetch(`http://127.0.0.1:${server.httpPort}/metrics`)
  assert.equal(response.status, 200)
  assert.equal(response.headers.get('content-type'), 'text/plain; version=0.0.4; charset=utf-8')
  return response.text()
}

/** Label values as Prometheus prints them (`\\`, `"` and newline escaped). */
function escapeLabel(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')
}

/**
 * The value of the sample `name` whose labels are exactly `labels` (in any order); undefined when
 * there is none.
 */
export function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  const wanted = Object.entries(labels)
    .map(([key, value]) => `${key}="${escapeLabel(value)}"`)
    .sort()
    .join(',')
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line)
    if (match === null || match[1] !== name) continue
    const found = (match[2] ?? '').match(/[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*"/g) ?? []
    if (found.sort().join(',') === wanted) return Number(match[3])
  }
  return undefined
}
