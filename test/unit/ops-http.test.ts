// The ops HTTP server: route table with path patterns, JSON errors, body reader, /healthz, /readyz.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { pino } from 'pino'
import { createOpsHttpServer, readJsonBody } from '../../src/observability/http.js'

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
  assert.equal((await fetch(`${base}/healthz`, { method: 'POST' })).status, 405)
  assert.equal((await fetch(`${base}/nowhere`)).status, 404)
})

void test('path patterns: {name} takes one decoded segment; literals win; 404 / 405 / 400 as JSON errors', async (t) => {
  const http = createOpsHttpServer({ logger: pino({ level: 'silent' }), readiness: () => ({}) })
  http.route('GET', '/api/items/{item}', (_req, { params, query }) => ({
    status: 200,
    body: { item: params.item, limit: query.get('limit') },
  }))
  http.route('GET', '/api/items/special', () => ({ status: 200, body: { special: true } }))
  http.route('DELETE', '/api/items/{item}/parts/{part}', () => ({ status: 204, body: undefined }))
  const port = await http.listen(0, '127.0.0.1')
  t.after(() => http.close())
  const base = `http://127.0.0.1:${port}`

  assert.deepEqual(await (await fetch(`${base}/api/items/tasks%2Fimages?limit=3`)).json(), {
    item: 'tasks/images',
    limit: '3',
  })
  assert.deepEqual(await (await fetch(`${base}/api/items/special`)).json(), { special: true })
  const deleted = await fetch(`${base}/api/items/a/parts/b`, { method: 'DELETE' })
  assert.equal(deleted.status, 204)
  assert.equal(await deleted.text(), '')

  const missing = await fetch(`${base}/api/items/a/b`)
  assert.equal(missing.status, 404)
  assert.equal(((await missing.json()) as { error: { code: string } }).error.code, 'NOT_FOUND')
  const wrongMethod = await fetch(`${base}/api/items/a`, { method: 'PUT' })
  assert.equal(wrongMethod.status, 405)
  assert.equal(wrongMethod.headers.get('allow'), 'GET')
  const badEncoding = await fetch(`${base}/api/items/%E0%A4%A`)
  assert.equal(badEncoding.status, 400)
  assert.equal(((await badEncoding.json()) as { error: { code: string } }).error.code, 'INVALID_PATH')
  assert.deepEqual(
    http.routes().filter((r) => r.path.startsWith('/api')),
    [
      { method: 'GET', path: '/api/items/{item}' },
      { method: 'GET', path: '/api/items/special' },
      { method: 'DELETE', path: '/api/items/{item}/parts/{part}' },
    ],
  )
})

void test('readJsonBody: empty is undefined, 400 INVALID_JSON, 413 BODY_TOO_LARGE', async (t) => {
  const http = createOpsHttpServer({ logger: pino({ level: 'silent' }), readiness: () => ({}) })
  http.route('POST', '/echo', async (req) => ({
    status: 200,
    body: { got: (await readJsonBody(req, 16)) ?? null },
  }))
  const port = await http.listen(0, '127.0.0.1')
  t.after(() => http.close())
  const post = (body: string) => fetch(`http://127.0.0.1:${port}/echo`, { method: 'POST', body })

  assert.deepEqual(await (await post('{"a":1}')).json(), { got: { a: 1 } })
  assert.deepEqual(await (await post('')).json(), { got: null })
  const malformed = await post('{"a":')
  assert.equal(malformed.status, 400)
  assert.equal(((await malformed.json()) as { error: { code: string } }).error.code, 'INVALID_JSON')
  const large = await post(JSON.stringify({ text: 'x'.repeat(100) }))
  assert.equal(large.status, 413)
  assert.equal(((await large.json()) as { error: { code: string } }).error.code, 'BODY_TOO_LARGE')
})
