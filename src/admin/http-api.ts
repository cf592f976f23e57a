/**
 * The admin HTTP API under `/api/v1` (docs/admin-api.md, docs/openapi.yaml): routes on the ops HTTP
 * server, bearer-token access, JSON bodies, and errors as `{ "error": { "code", "message" } }` with
 * the status from ./errors.ts. The operations themselves are {@link AdminService}'s.
 */
import { isLoopbackAddress } from '../net/loopback.js'
import { createHash, timingSafeEqual } from 'node:crypto'
import type { IncomingMessage } from 'node:http'
import type { Logger } from '../observability/logger.js'
import {
  HttpError,
  readJsonBody,
  type HttpResult,
  type OpsHttpServer,
  type RouteHandler,
  type RouteMatch,
} from '../observability/http.js'
import { AdminError, AdminErrorCodes, httpErrorOf } from './errors.js'
import type { AdminService } from './service.js'

export const ADMIN_API_PREFIX = '/api/v1'

export interface AdminHttpOptions {
  /** `admin.token`; null = no token, loopback clients only. */
  token: string | null
  logger: Logger
}

/** Equal-length digests, so the comparison takes the same time whatever the presented token is. */
function sameToken(presented: string, expected: string): boolean {
  const digest = (value: string) => createHash('sha256').update(value).digest()
  return timingSafeEqual(digest(presented), digest(expected))
}

/**
 * The admin access rule for every transport (HTTP here, gRPC in ./grpc-server.ts): with a token, the
 * `Bearer <token>` credential must match it; without one, only loopback peers. Throws 401 / 403.
 */
export function authorizeAdminAccess(
  remoteAddress: string | undefined,
  authorization: string | undefined,
  token: string | null,
): void {
  if (token === null) {
    if (isLoopbackAddress(remoteAddress)) return
    throw new AdminError(
      AdminErrorCodes.forbidden,
      'the admin API answers only loopback clients while no admin.token is configured',
    )
  }
  const match = authorization === undefined ? null : /^Bearer\s+(\S+)\s*$/i.exec(authorization)
  if (match === null || !sameToken(match[1]!, token)) {
    throw new AdminError(
      AdminErrorCodes.unauthorized,
      match === null ? 'missing bearer token (Authorization: Bearer <admin.token>)' : 'wrong bearer token',
    )
  }
}

/** Throws 401 / 403 unless the request may use the admin API. */
export function authorizeAdmin(req: IncomingMessage, token: string | null): void {
  authorizeAdminAccess(req.socket.remoteAddress, req.headers.authorization, token)
}

const ok = (body: unknown, status = 200): HttpResult => ({ status, body })
const noContent: HttpResult = { status: 204, body: undefined }

/** Registers every `/api/v1` route on `http`. */
export function attachAdminHttpApi(
  http: OpsHttpServer,
  service: AdminService,
  options: AdminHttpOptions,
): void {
  const { logger } = options
  const route = (method: string, path: string, handler: RouteHandler, audit = method !== 'GET') => {
    http.route(method, ADMIN_API_PREFIX + path, async (req, match) => {
      try {
        authorizeAdmin(req, options.token)
        const result = await handler(req, match)
        // Changes are logged with who asked: the admin API's audit trail.
        if (audit) {
          logger.info(
            { method, path: ADMIN_API_PREFIX + path, ...match.params, remote: req.socket.remoteAddress },
            'admin request',
          )
        }
        return result
      } catch (err) {
        const mapped = httpErrorOf(err)
        if (mapped === undefined) throw err
        if (mapped.status === 401 || mapped.status === 403) {
          logger.warn(
            { method, path: ADMIN_API_PREFIX + path, remote: req.socket.remoteAddress },
            mapped.message,
          )
        }
        const headers: Record<string, string> =
          mapped.status === 401 ? { 'www-authenticate': 'Bearer realm="spool-admin"' } : {}
        throw new HttpError(mapped.status, mapped.code, mapped.message, headers)
      }
    })
  }
  const queue = (match: RouteMatch) => match.params.queue ?? ''

  route('GET', '/queues', () => ok({ queues: service.listQueues() }))
  route('POST', '/queues', async (req) => ok(await service.createQueue(await readJsonBody(req)), 201))
  route('GET', '/queues/{queue}', (_req, match) => ok(service.getQueue(queue(match))))
  route('PATCH', '/queues/{queue}', async (req, match) =>
    ok(await service.updateQueue(queue(match), await readJsonBody(req))),
  )
  route('DELETE', '/queues/{queue}', async (_req, match) => {
    await service.deleteQueue(queue(match))
    return noContent
  })
  route('POST', '/queues/{queue}/purge', async (_req, match) => ok(await service.purgeQueue(queue(match))))
  route('GET', '/queues/{queue}/groups', (_req, match) => ok({ groups: service.groups(queue(match)) }))
  route('DELETE', '/queues/{queue}/groups/{group}', async (_req, match) => {
    await service.deleteGroup(queue(match), match.params.group ?? '')
    return noContent
  })
  route('GET', '/queues/{queue}/messages', async (_req, match) =>
    ok({ messages: await service.peek(queue(match), match.query.get('limit') ?? undefined) }),
  )
  route('GET', '/queues/{queue}/dead-letters', async (_req, match) =>
    ok({ messages: await service.deadLetters(queue(match), match.query.get('limit') ?? undefined) }),
  )
  route('POST', '/queues/{queue}/dead-letters/redrive', async (req, match) =>
    ok(await service.redrive(queue(match), await readJsonBody(req))),
  )
  route('GET', '/cluster', () => ok(service.cluster()))
}
