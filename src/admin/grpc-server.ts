/**
 * The admin API over gRPC (proto/spool/admin/v1/admin.proto, docs/admin-api.md#grpc): the same
 * {@link AdminService} operations as the HTTP API, the same access rule (bearer token in the
 * `authorization` metadata, or loopback peers when no token is configured), and errors mapped to
 * gRPC statuses in one place (./errors.ts, {@link grpcStatusOf}).
 */
import { isIP } from 'node:net'
import { join } from 'node:path'
import * as grpc from '@grpc/grpc-js'
import { ERROR_CODE_TRAILER, loadProtoPackage } from '../net/grpc.js'
import type { Logger } from '../observability/logger.js'
import type { GroupStats } from '../queue/admin.js'
import { AdminError, AdminErrorCodes, grpcStatusOf, GrpcStatus } from './errors.js'
import { authorizeAdminAccess } from './http-api.js'
import type { AdminService, DeadLetterView, MessageView, QueueView } from './service.js'

/** Where the proto lives, from the package root (the same from src/ under tsx and from dist/). */
export const ADMIN_PROTO_PATH = join('proto', 'spool', 'admin', 'v1', 'admin.proto')

/** The `spool.admin.v1.AdminService` definition, loaded from the package's proto file. */
export function loadAdminServiceDefinition(): grpc.ServiceClientConstructor {
  const loaded = loadProtoPackage(ADMIN_PROTO_PATH) as {
    spool: { admin: { v1: { AdminService: grpc.ServiceClientConstructor } } }
  }
  return loaded.spool.admin.v1.AdminService
}

/**
 * The peer's IP address from a call's peer string: grpc-js 1.14 gives `127.0.0.1:5000` and
 * `::1:5000` (IPv6 unbracketed); gRPC's C core and older grpc-js `ipv4:127.0.0.1:5000` and
 * `ipv6:[::1]:5000`. Anything else (a Unix socket, `unknown`) is no IP address.
 */
export function peerAddress(peer: string): string | undefined {
  const rest = peer.replace(/^ipv[46]:/, '')
  const bracketed = /^\[([^\]]+)\](?::\d+)?$/.exec(rest)
  const candidates = bracketed !== null ? [bracketed[1]] : [/^(.+):\d+$/.exec(rest)?.[1], rest]
  return candidates.find((address) => address !== undefined && isIP(address) !== 0)
}

export interface AdminGrpcOptions {
  /** `admin.token`; null = no token, loopback peers only. */
  token: string | null
  logger: Logger
}

interface NameRequest {
  name: string
}
interface SettingsRequest extends NameRequest {
  settingsJson: string
}
interface LimitRequest extends NameRequest {
  limit: number
}
interface GroupRequest extends NameRequest {
  group: string
}
interface RedriveRequest extends NameRequest {
  messageId: string
  limit: number
  ratePerSecond: number
}

function queueMessage(view: QueueView) {
  return {
    name: view.name,
    settingsJson: JSON.stringify(view.settings),
    depth: view.depth,
    inflight: view.inflight,
    consumers: view.consumers,
    deadLetters: view.deadLetters,
    groups: view.groups.map(groupMessage),
  }
}

function groupMessage(group: GroupStats) {
  return {
    name: group.name,
    consumers: group.consumers,
    backlog: group.backlog,
    inflight: group.inflight,
    implicit: group.implicit,
    lastActiveAtMs: group.lastActiveAtMs,
    expiresAtMs: group.expiresAtMs ?? 0,
  }
}

function messageMessage(view: MessageView) {
  const { properties } = view
  return {
    id: view.id,
    partition: view.partition,
    payload: Buffer.from(view.payloadBase64, 'base64'),
    contentType: properties.contentType ?? '',
    responseTopic: properties.responseTopic ?? '',
    correlationData: Buffer.from(properties.correlationDataBase64 ?? '', 'base64'),
    payloadFormatIndicator: properties.payloadFormatIndicator ?? false,
    userProperties: properties.userProperties.map(([key, value]) => ({ key, value })),
    enqueuedAt: view.enqueuedAt,
    expiresAt: view.expiresAt ?? '',
  }
}

function deadLetterMessage(view: DeadLetterView) {
  const info = view.deadLetter
  return {
    message: messageMessage(view),
    reason: info.reason ?? '',
    originalQueue: info.originalQueue ?? '',
    originalGroup: info.originalGroup ?? '',
    originalMessageId: info.originalMessageId ?? '',
    deliveryCount: info.deliveryCount ?? 0,
    rejectReason: info.rejectReason ?? '',
  }
}

/** `settings_json` as the HTTP body's `settings`: empty = not given. */
function settingsOf(json: string): { settings?: unknown } {
  if (json === '') return {}
  try {
    return { settings: JSON.parse(json) as unknown }
  } catch (err) {
    throw new AdminError(
      AdminErrorCodes.invalidArgument,
      `settings_json must be a JSON object (${(err as Error).message})`,
    )
  }
}

/** Proto3 scalars have no "absent": 0 / "" mean "not given", as the proto's comments say. */
const given = <T>(value: T, unset: T): T | undefined => (value === unset ? undefined : value)

/** Adds `spool.admin.v1.AdminService` to `server`. */
export function attachAdminGrpcService(
  server: grpc.Server,
  service: AdminService,
  options: AdminGrpcOptions,
): void {
  const { logger } = options

  /** One rpc: access check, the operation, one log line for a change or a failure, mapped errors. */
  function unary<Req>(
    rpc: string,
    run: (request: Req) => unknown,
    audit: boolean,
  ): grpc.handleUnaryCall<Req, unknown> {
    return (call, callback) => {
      const peer = call.getPeer()
      const request = call.request as Req & Partial<NameRequest>
      const context = { rpc, peer, ...(request.name === undefined ? {} : { queue: request.name }) }
      const authorization = call.metadata.get('authorization')[0]
      // A throw in the executor (refused access, bad input) rejects like a failed operation.
      const answer = new Promise<unknown>((resolve) => {
        authorizeAdminAccess(
          peerAddress(peer),
          typeof authorization === 'string' ? authorization : undefined,
          options.token,
        )
        resolve(run(request))
      })
      void answer.then(
        (response) => {
          // Changes are logged with who asked: the admin API's audit trail.
          if (audit) logger.info(context, 'admin request')
          callback(null, response)
        },
        (err: unknown) => {
          const mapped = grpcStatusOf(err)
          if (mapped.status === GrpcStatus.INTERNAL || mapped.status === GrpcStatus.UNAVAILABLE) {
            logger.error({ ...context, err, code: mapped.code }, 'admin rpc failed')
          } else if (
            mapped.status === GrpcStatus.UNAUTHENTICATED ||
            mapped.status === GrpcStatus.PERMISSION_DENIED
          ) {
            logger.warn({ ...context, code: mapped.code }, mapped.message)
          } else {
            logger.info({ ...context, code: mapped.code }, `admin rpc refused: ${mapped.message}`)
          }
          const trailer = new grpc.Metadata()
          trailer.set(ERROR_CODE_TRAILER, mapped.code)
          callback({ code: mapped.status, details: mapped.message, metadata: trailer })
        },
      )
    }
  }

  const implementation: grpc.UntypedServiceImplementation = {
    ListQueues: unary('ListQueues', () => ({ queues: service.listQueues().map(queueMessage) }), false),
    GetQueue: unary<NameRequest>('GetQueue', (req) => queueMessage(service.getQueue(req.name)), false),
    CreateQueue: unary<SettingsRequest>(
      'CreateQueue',
      async (req) =>
        queueMessage(await service.createQueue({ name: req.name, ...settingsOf(req.settingsJson) })),
      true,
    ),
    UpdateQueue: unary<SettingsRequest>(
      'UpdateQueue',
      async (req) => queueMessage(await service.updateQueue(req.name, settingsOf(req.settingsJson))),
      true,
    ),
    DeleteQueue: unary<NameRequest>(
      'DeleteQueue',
      async (req) => {
        await service.deleteQueue(req.name)
        return {}
      },
      true,
    ),
    PurgeQueue: unary<NameRequest>('PurgeQueue', (req) => service.purgeQueue(req.name), true),
    ListGroups: unary<NameRequest>(
      'ListGroups',
      (req) => ({ groups: service.groups(req.name).map(groupMessage) }),
      false,
    ),
    DeleteGroup: unary<GroupRequest>(
      'DeleteGroup',
      async (req) => {
        await service.deleteGroup(req.name, req.group)
        return {}
      },
      true,
    ),
    PeekMessages: unary<LimitRequest>(
      'PeekMessages',
      async (req) => ({ messages: (await service.peek(req.name, given(req.limit, 0))).map(messageMessage) }),
      false,
    ),
    ListDeadLetters: unary<LimitRequest>(
      'ListDeadLetters',
      async (req) => ({
        deadLetters: (await service.deadLetters(req.name, given(req.limit, 0))).map(deadLetterMessage),
      }),
      false,
    ),
    RedriveDeadLetters: unary<RedriveRequest>(
      'RedriveDeadLetters',
      (req) =>
        service.redrive(req.name, {
          messageId: given(req.messageId, ''),
          limit: given(req.limit, 0),
          ratePerSecond: given(req.ratePerSecond, 0),
        }),
      true,
    ),
    GetCluster: unary(
      'GetCluster',
      () => {
        const view = service.cluster()
        // proto3 strings have no null: an unowned partition has an empty owner.
        const queues = view.queues?.map(({ name, owners }) => ({
          name,
          owners: owners.map(({ partition, owner }) => ({ partition, owner: owner ?? '' })),
        }))
        return { ...view, queues: queues ?? [] }
      },
      false,
    ),
  }
  server.addService(loadAdminServiceDefinition().service, implementation)
}
