// docs/openapi.yaml and the admin route table describe the same API: every `METHOD path` under
// /api/v1 is in the OpenAPI file and every operation of the file is a route.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readFile } from 'node:fs/promises'
import { pino } from 'pino'
import { parse } from 'yaml'
import { ADMIN_API_PREFIX, attachAdminHttpApi } from '../../src/admin/http-api.js'
import { AdminService, type AdminQueueCore } from '../../src/admin/service.js'
import { createOpsHttpServer } from '../../src/observability/http.js'
import { QUEUE_SETTING_FIELDS } from '../../src/queue/settings.js'

const OPENAPI = new URL('../../../docs/openapi.yaml', import.meta.url)
const METHODS = ['get', 'put', 'post', 'delete', 'patch', 'head', 'options']

void test('every admin route is in docs/openapi.yaml and every OpenAPI operation is a route', async () => {
  const http = createOpsHttpServer({ logger: pino({ level: 'silent' }), readiness: () => ({}) })
  attachAdminHttpApi(http, new AdminService({} as AdminQueueCore, 'n'), {
    token: null,
    logger: pino({ level: 'silent' }),
  })
  const routes = http
    .routes()
    .filter((route) => route.path.startsWith(`${ADMIN_API_PREFIX}/`))
    .map((route) => `${route.method} ${route.path.slice(ADMIN_API_PREFIX.length)}`)
    .sort()

  const doc = parse(await readFile(OPENAPI, 'utf8')) as {
    openapi: string
    servers: Array<{ url: string }>
    paths: Record<string, Record<string, unknown>>
  }
  assert.match(doc.openapi, /^3\./)
  assert.deepEqual(doc.servers, [{ url: ADMIN_API_PREFIX }])
  const documented = Object.entries(doc.paths)
    .flatMap(([path, item]) =>
      Object.keys(item)
        .filter((key) => METHODS.includes(key))
        .map((method) => `${method.toUpperCase()} ${path}`),
    )
    .sort()
  assert.deepEqual(documented, routes)
})

interface SchemaNode {
  type?: string
  enum?: string[]
  minimum?: number
  maximum?: number
  default?: unknown
  description?: string
  properties?: Record<string, SchemaNode>
}

void test('docs/openapi.yaml Settings is the settings table: every field, its type, limits, default and doc', async () => {
  const doc = parse(await readFile(OPENAPI, 'utf8')) as {
    components: { schemas: Record<string, SchemaNode> }
  }
  const settings = doc.components.schemas.Settings
  assert.ok(settings?.properties)
  const documented = new Map<string, SchemaNode>()
  for (const [key, node] of Object.entries(settings.properties)) {
    if (node.type === 'object') {
      for (const [leaf, inner] of Object.entries(node.properties ?? {}))
        documented.set(`${key}.${leaf}`, inner)
    } else {
      documented.set(key, node)
    }
  }
  assert.deepEqual(
    [...documented.keys()],
    QUEUE_SETTING_FIELDS.map((field) => field.path),
  )
  for (const field of QUEUE_SETTING_FIELDS) {
    const expected: SchemaNode = {
      type: field.kind === 'enum' ? 'string' : field.kind,
      ...(field.kind === 'enum' ? { enum: [...field.values] } : {}),
      ...(field.kind === 'integer' || field.kind === 'number'
        ? { minimum: field.min, ...(field.max === undefined ? {} : { maximum: field.max }) }
        : {}),
      default: field.default,
      description: field.doc,
    }
    assert.deepEqual(documented.get(field.path), expected, field.path)
  }
})
