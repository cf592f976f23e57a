/**
 * Errors of the admin API and the one place where they, and the queue core's {@link QueueError}s,
 * become HTTP statuses ({@link httpErrorOf}) and gRPC status codes ({@link grpcStatusOf}).
 */
import { QueueError, type QueueErrorCode } from '../queue/errors.js'

/** Codes the admin layer raises itself (inputs it refuses before calling the core, access). */
export const AdminErrorCodes = {
  /** A parameter, query string or body field is missing or malformed; the message names it. */
  invalidArgument: 'INVALID_ARGUMENT',
  /** No bearer token, or not the configured one. */
  unauthorized: 'UNAUTHORIZED',
  /** No token is configured and the client is not on loopback. */
  forbidden: 'FORBIDDEN',
} as const
export type AdminErrorCode = (typeof AdminErrorCodes)[keyof typeof AdminErrorCodes]

export class AdminError extends Error {
  override readonly name = 'AdminError'
  constructor(
    readonly code: AdminErrorCode | QueueErrorCode,
    message: string,
  ) {
    super(message)
  }
}

/** `Record<QueueErrorCode, …>`: a new core error code is a compile error until it is mapped. */
const QUEUE_ERROR_STATUS: Record<QueueErrorCode, number> = {
  INVALID_QUEUE_NAME: 400,
  INVALID_GROUP_NAME: 400,
  GROUP_REQUIRED: 400,
  INVALID_SETTINGS: 400,
  INVALID_PARTITION: 400,
  AMBIGUOUS_GROUP: 400,
  MESSAGE_TOO_LARGE: 413,
  QUEUE_NOT_FOUND: 404,
  GROUP_NOT_FOUND: 404,
  UNKNOWN_MESSAGE: 404,
  QUEUE_EXISTS: 409,
  QUEUE_IN_USE: 409,
  QUEUE_NOT_EMPTY: 409,
  QUEUE_FULL: 409,
  STORAGE_FAILURE: 500,
  CLOSED: 503,
  PARTITION_NOT_SERVED: 409,
  NO_LOCAL_PARTITIONS: 409,
}

const ADMIN_ERROR_STATUS: Record<AdminErrorCode, number> = {
  INVALID_ARGUMENT: 400,
  UNAUTHORIZED: 401,
  FORBIDDEN: 403,
}

/** HTTP status and `{ code, message }` for an error, or undefined when it is not an API error (500). */
export function httpErrorOf(err: unknown): { status: number; code: string; message: string } | undefined {
  if (err instanceof AdminError) {
    const status =
      err.code in ADMIN_ERROR_STATUS
        ? ADMIN_ERROR_STATUS[err.code as AdminErrorCode]
        : QUEUE_ERROR_STATUS[err.code as QueueErrorCode]
    return { status, code: err.code, message: err.message }
  }
  if (err instanceof QueueError) {
    return { status: QUEUE_ERROR_STATUS[err.code], code: err.code, message: err.message }
  }
  return undefined
}

/**
 * gRPC status codes (grpc/doc/statuscodes.md; the numbers are part of the wire protocol), kept here so
 * this table needs no gRPC library.
 */
export const GrpcStatus = {
  INVALID_ARGUMENT: 3,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  FAILED_PRECONDITION: 9,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  UNAUTHENTICATED: 16,
} as const
export type GrpcStatusCode = (typeof GrpcStatus)[keyof typeof GrpcStatus]

/**
 * gRPC status and `{ code, message }` for an error, derived from its HTTP status so both transports
 * always agree: 400/413 -> INVALID_ARGUMENT, 401 -> UNAUTHENTICATED, 403 -> PERMISSION_DENIED,
 * 404 -> NOT_FOUND, 409 -> ALREADY_EXISTS for QUEUE_EXISTS else FAILED_PRECONDITION, 503 -> UNAVAILABLE
 * (the broker is stopping; clients may retry elsewhere), anything else (bugs included) -> INTERNAL.
 */
export function grpcStatusOf(err: unknown): { status: GrpcStatusCode; code: string; message: string } {
  const mapped = httpErrorOf(err)
  if (mapped === undefined)
    return { status: GrpcStatus.INTERNAL, code: 'INTERNAL', message: 'internal error' }
  const { code, message } = mapped
  switch (mapped.status) {
    case 400:
    case 413:
      return { status: GrpcStatus.INVALID_ARGUMENT, code, message }
    case 401:
      return { status: GrpcStatus.UNAUTHENTICATED, code, message }
    case 403:
      return { status: GrpcStatus.PERMISSION_DENIED, code, message }
    case 404:
      return { status: GrpcStatus.NOT_FOUND, code, message }
    case 409:
      return {
        status: code === 'QUEUE_EXISTS' ? GrpcStatus.ALREADY_EXISTS : GrpcStatus.FAILED_PRECONDITION,
        code,
        message,
      }
    case 503:
      return { status: GrpcStatus.UNAVAILABLE, code, message }
    default:
      return { status: GrpcStatus.INTERNAL, code, message }
  }
}
