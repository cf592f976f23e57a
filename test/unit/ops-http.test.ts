// The ops HTTP server: route table, /healthz, /readyz 200/503.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { pino } from 'pino'
import { createOpsHttpServer } from '../../src/observability/http.js'

void test('/readyz is 503 until every check passes; /healthz is always 200; routes can be added', async (t) => {
  const checks = { listeners: false, storage: true }
  const http = createOpsHttpServer({ logger: pino({ level: 'silent' }), readiness: () => ({ ...checks }) })
  http.route('GET', '/extra', () => ({ status: 200, body: 'x 1\n', contentType: 'text/plain' }))
  http.route('GET', '/boom', () => {
    throw new Error('boom')
  })
  const port = await http.listen(0, '127.0.0.1')
  t.after(() => http.close())
  const base = `http://127.0.0.1:${port}`

  assert.equal((await fetch(`${base}/healthz`)).status, 200)
  const notReady = await fetch(`${base}/readyz`)
  assert.equal(notReady.status, 503)
  assert.deepEqual(await notReady.json(), {
    status: 'not ready',
    checks: { listeners: false, storage: true },
  })
  checks.listeners = true
  assert.equal((await fetch(`${base}/readyz`)).status, 200)

  const extra = await fetch(`${base}/extra?q=1`)
  assert.equal(extra.headers.get('content-type'), 'text/plain')
  assert.equal(await extra.text(), 'x 1\n')
  assert.equal((await fetch(`${base}/boom`)).status, 500)
  assert.equal((await fetch(`${base}/healthz`, { method: 'POST' })).status, 404)
})
