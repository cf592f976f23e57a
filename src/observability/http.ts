/**
 * The operations HTTP server (node:http): health today, `/metrics` and `/api/v1` later. Routing is a
 * small table keyed by `METHOD path`; add an endpoint with `http.route('GET', '/metrics', handler)`.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { once } from 'node:events'
import type { AddressInfo } from 'node:net'
import type { Logger } from './logger.js'

export interface HttpResult {
  status: number
  /** Serialized as JSON unless `contentType` is given and body is a string. */
  body: unknown
  contentType?: string
}

export type RouteHandler = (req: IncomingMessage) => HttpResult | Promise<HttpResult>

/** What `/readyz` reports: each named check must be true. */
export type ReadinessChecks = () => Record<string, boolean>

export interface OpsHttpServer {
  route(method: string, path: string, handler: RouteHandler): void
  listen(port: number, host: string): Promise<number>
  close(): Promise<void>
}

function send(res: ServerResponse, result: HttpResult): void {
  const isText = result.contentType !== undefined && typeof result.body === 'string'
  const body = isText ? (result.body as string) : JSON.stringify(result.body)
  res.writeHead(result.status, {
    'content-type': isText ? result.contentType : 'application/json; charset=utf-8',
    'cache-control': 'no-store',
  })
  res.end(body)
}

export function createOpsHttpServer(options: { logger: Logger; readiness: ReadinessChecks }): OpsHttpServer {
  const routes = new Map<string, RouteHandler>()
  const route = (method: string, path: string, handler: RouteHandler) => {
    routes.set(`${method.toUpperCase()} ${path}`, handler)
  }

  // Liveness: the process answers. Readiness: listeners and storage are open.
  route('GET', '/healthz', () => ({ status: 200, body: { status: 'ok' } }))
  route('GET', '/readyz', () => {
    const checks = options.readiness()
    const ready = Object.values(checks).every(Boolean)
    return { status: ready ? 200 : 503, body: { status: ready ? 'ready' : 'not ready', checks } }
  })

  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0] ?? '/'
    const handler = routes.get(`${req.method ?? 'GET'} ${path}`)
    if (handler === undefined) {
      send(res, { status: 404, body: { error: 'not found', path } })
      return
    }
    Promise.resolve()
      .then(() => handler(req))
      .then(
        (result) => send(res, result),
        (err: unknown) => {
          options.logger.error({ err, path }, 'http handler failed')
          send(res, { status: 500, body: { error: 'internal error' } })
        },
      )
  })

  return {
    route,
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
