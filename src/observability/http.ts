/**
 * The operations HTTP server (node:http): health, `/metrics` and the admin API (`/api/v1`). Routing is
 * a small table of `METHOD path`; add an endpoint with `http.route('GET', '/metrics', handler)`. A
 * path segment written `{name}` matches one URL-encoded segment and reaches the handler decoded, as
 * `params.name` (OpenAPI's path-template syntax, so the route table and docs/openapi.yaml agree).
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { once } from 'node:events'
import type { AddressInfo } from 'node:net'
import type { Logger } from './logger.js'

export interface HttpResult {
  status: number
  /** Serialized as JSON unless `contentType` is given and body is a string; `undefined` sends no body. */
  body: unknown
  contentType?: string
}

/** What the router found in the URL besides the route. */
export interface RouteMatch {
  /** Decoded `{name}` segments of the route's path. */
  readonly params: Readonly<Record<string, string>>
  readonly query: URLSearchParams
}

export type RouteHandler = (req: IncomingMessage, match: RouteMatch) => HttpResult | Promise<HttpResult>

/**
 * A failure a handler throws to answer with `status` and `{ "error": { "code", "message" } }`;
 * anything else thrown is a 500 (logged).
 */
export class HttpError extends Error {
  override readonly name = 'HttpError'
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly headers: Readonly<Record<string, string>> = {},
  ) {
    super(message)
  }
}

/** Bodies above this are refused with 413 unless the caller of {@link readJsonBody} says otherwise. */
export const DEFAULT_BODY_LIMIT_BYTES = 64 * 1024

/**
 * Reads a request body as JSON: `undefined` when empty, 413 `BODY_TOO_LARGE` above `limitBytes`, 400
 * `INVALID_JSON` when it does not parse. An oversized body is still read to its end (up to 16 times
 * the limit) so that the client gets the 413 instead of a reset connection.
 */
export async function readJsonBody(
  req: IncomingMessage,
  limitBytes = DEFAULT_BODY_LIMIT_BYTES,
): Promise<unknown> {
  const tooLarge = () => new HttpError(413, 'BODY_TOO_LARGE', `request body exceeds ${limitBytes} bytes`)
  const declared = Number(req.headers['content-length'] ?? 0)
  if (declared > limitBytes * 16) {
    req.destroy()
    throw tooLarge()
  }
  const chunks: Buffer[] = []
  let bytes = 0
  for await (const chunk of req) {
    const buffer = chunk as Buffer
    bytes += buffer.byteLength
    if (bytes > limitBytes * 16) {
      req.destroy()
      break
    }
    if (bytes <= limitBytes) chunks.push(buffer)
  }
  if (bytes > limitBytes) throw tooLarge()
  const text = Buffer.concat(chunks).toString('utf8')
  if (text.trim() === '') return undefined
  try {
    return JSON.parse(text) as unknown
  } catch (err) {
    throw new HttpError(400, 'INVALID_JSON', `request body is not valid JSON: ${(err as Error).message}`)
  }
}

/** What `/readyz` reports: each named check must be true. */
export type ReadinessChecks = () => Record<string, boolean>

export interface OpsHttpServer {
  route(method: string, path: string, handler: RouteHandler): void
  /** Every registered `METHOD path`, in registration order (e.g. to check docs/openapi.yaml). */
  routes(): Array<{ method: string; path: string }>
  listen(port: number, host: string): Promise<number>
  close(): Promise<void>
}

function send(res: ServerResponse, result: HttpResult, headers: Record<string, string> = {}): void {
  if (result.body === undefined) {
    res.writeHead(result.status, { 'cache-control': 'no-store', ...headers })
    res.end()
    return
  }
  const isText = result.contentType !== undefined && typeof result.body === 'string'
  const body = isText ? (result.body as string) : JSON.stringify(result.body)
  res.writeHead(result.status, {
    'content-type': isText ? result.contentType : 'application/json; charset=utf-8',
    'cache-control': 'no-store',
    ...headers,
  })
  res.end(body)
}

function sendError(res: ServerResponse, err: HttpError): void {
  send(
    res,
    { status: err.status, body: { error: { code: err.code, message: err.message } } },
    {
      ...err.headers,
    },
  )
}

interface Route {
  method: string
  path: string
  /** Literal segments as strings, `{name}` segments as `{ param: name }`. */
  segments: Array<string | { param: string }>
  handler: RouteHandler
}

/** Matches `segments` of a request path; the decoded params, or undefined. */
function matchRoute(route: Route, segments: readonly string[]): Record<string, string> | undefined {
  if (route.segments.length !== segments.length) return undefined
  const params: Record<string, string> = {}
  for (const [i, expected] of route.segments.entries()) {
    const actual = segments[i]!
    if (typeof expected === 'string') {
      if (expected !== actual) return undefined
      continue
    }
    if (actual === '') return undefined
    try {
      params[expected.param] = decodeURIComponent(actual)
    } catch {
      throw new HttpError(400, 'INVALID_PATH', `path segment "${actual}" is not valid percent-encoding`)
    }
  }
  return params
}

/** Literal segments first: `/queues/stats` beats `/queues/{name}`. */
function literalCount(route: Route): number {
  return route.segments.filter((segment) => typeof segment === 'string').length
}

export function createOpsHttpServer(options: { logger: Logger; readiness: ReadinessChecks }): OpsHttpServer {
  const table: Route[] = []
  const route = (method: string, path: string, handler: RouteHandler) => {
    const segments = path
      .split('/')
      .map((segment) => (/^\{\w+\}$/.test(segment) ? { param: segment.slice(1, -1) } : segment))
    const entry = { method: method.toUpperCase(), path, segments, handler }
    const existing = table.findIndex((known) => known.method === entry.method && known.path === path)
    if (existing >= 0) table[existing] = entry
    else table.push(entry)
  }

  // Liveness: the process answers. Readiness: listeners and storage are open.
  route('GET', '/healthz', () => ({ status: 200, body: { status: 'ok' } }))
  route('GET', '/readyz', () => {
    const checks = options.readiness()
    const ready = Object.values(checks).every(Boolean)
    return { status: ready ? 200 : 503, body: { status: ready ? 'ready' : 'not ready', checks } }
  })

  /** The handler for a request and its params; HttpError 404 / 405 when there is none. */
  const resolve = (
    method: string,
    path: string,
  ): { handler: RouteHandler; params: Record<string, string> } => {
    const segments = path.split('/')
    const allowed = new Set<string>()
    let best: { route: Route; params: Record<string, string> } | undefined
    for (const candidate of table) {
      const params = matchRoute(candidate, segments)
      if (params === undefined) continue
      if (candidate.method !== method) allowed.add(candidate.method)
      else if (best === undefined || literalCount(candidate) > literalCount(best.route))
        best = { route: candidate, params }
    }
    if (best !== undefined) return { handler: best.route.handler, params: best.params }
    if (allowed.size > 0) {
      throw new HttpError(405, 'METHOD_NOT_ALLOWED', `${method} is not allowed on ${path}`, {
        allow: [...allowed].join(', '),
      })
    }
    throw new HttpError(404, 'NOT_FOUND', `no such endpoint: ${path}`)
  }

  const server: Server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://localhost')
    const path = url.pathname
    Promise.resolve()
      .then(() => {
        const { handler, params } = resolve(req.method ?? 'GET', path)
        return handler(req, { params, query: url.searchParams })
      })
      .then(
        (result) => send(res, result),
        (err: unknown) => {
          if (err instanceof HttpError) {
            sendError(res, err)
            return
          }
          options.logger.error({ err, path }, 'http handler failed')
          sendError(res, new HttpError(500, 'INTERNAL', 'internal error'))
        },
      )
  })

  return {
    route,
    routes: () => table.map(({ method, path }) => ({ method, path })),
    async listen(port, host) {
      server.listen(port, host)
      await once(server, 'listening')
      return (server.address() as AddressInfo).port
    },
    close() {
      if (!server.listening) return Promise.resolve()
      server.closeAllConnections()
      return new Promise((resolve) => server.close(() => resolve()))
    },
  }
}
