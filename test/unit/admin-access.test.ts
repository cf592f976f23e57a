// Admin API access rules without a network: bearer token when configured, else loopback only; and the
// one table that turns core and admin error codes into HTTP statuses.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import type { IncomingMessage } from 'node:http'
import { authorizeAdmin } from '../../src/admin/http-api.js'
import { isLoopbackAddress } from '../../src/net/loopback.js'
import { AdminError, GrpcStatus, grpcStatusOf, httpErrorOf } from '../../src/admin/errors.js'
import { peerAddress } from '../../src/admin/grpc-server.js'
import { QueueError, QueueErrorCodes } from '../../src/queue/errors.js'

function request(remoteAddress: string, authorization?: string): IncomingMessage {
  return {
    socket: { remoteAddress },
    headers: authorization === undefined ? {} : { authorization },
  } as unknown as IncomingMessage
}

function codeOf(fn: () => void): string | undefined {
  try {
    fn()
    return undefined
  } catch (err) {
    assert.ok(err instanceof AdminError)
    return err.code
  }
}

const TOKEN = 'x'.repeat(32)

void test('no token configured: loopback (v4, v6, v4-mapped) passes, anything else is FORBIDDEN', () => {
  for (const address of ['127.0.0.1', '127.8.9.10', '::1', '::ffff:127.0.0.1']) {
    assert.equal(isLoopbackAddress(address), true, address)
    assert.equal(
      codeOf(() => authorizeAdmin(request(address), null)),
      undefined,
      address,
    )
  }
  for (const address of ['10.0.0.5', '::ffff:10.0.0.5', 'fe80::1', '128.0.0.1']) {
    assert.equal(
      codeOf(() => authorizeAdmin(request(address), null)),
      'FORBIDDEN',
      address,
    )
  }
})

void test('token configured: required from every address, Bearer scheme case-insensitive', () => {
  assert.equal(
    codeOf(() => authorizeAdmin(request('127.0.0.1'), TOKEN)),
    'UNAUTHORIZED',
  )
  assert.equal(
    codeOf(() => authorizeAdmin(request('127.0.0.1', `Basic ${TOKEN}`), TOKEN)),
    'UNAUTHORIZED',
  )
  assert.equal(
    codeOf(() => authorizeAdmin(request('127.0.0.1', `Bearer ${TOKEN}y`), TOKEN)),
    'UNAUTHORIZED',
  )
  assert.equal(
    codeOf(() => authorizeAdmin(request('127.0.0.1', 'Bearer short'), TOKEN)),
    'UNAUTHORIZED',
  )
  assert.equal(
    codeOf(() => authorizeAdmin(request('10.0.0.5', `Bearer ${TOKEN}`), TOKEN)),
    undefined,
  )
  assert.equal(
    codeOf(() => authorizeAdmin(request('10.0.0.5', `bearer ${TOKEN}`), TOKEN)),
    undefined,
  )
})

void test('every queue error code has an HTTP status; non-API errors have none (500)', () => {
  const expected: Record<string, number> = {
    QUEUE_NOT_FOUND: 404,
    GROUP_NOT_FOUND: 404,
    UNKNOWN_MESSAGE: 404,
    QUEUE_EXISTS: 409,
    QUEUE_IN_USE: 409,
    INVALID_QUEUE_NAME: 400,
    INVALID_GROUP_NAME: 400,
    INVALID_SETTINGS: 400,
    CLOSED: 503,
  }
  for (const code of Object.values(QueueErrorCodes)) {
    const mapped = httpErrorOf(new QueueError(code, 'm'))
    assert.ok(mapped !== undefined && mapped.status >= 400, code)
    if (code in expected) assert.equal(mapped.status, expected[code], code)
  }
  assert.equal(httpErrorOf(new AdminError('INVALID_ARGUMENT', 'm'))?.status, 400)
  assert.equal(httpErrorOf(new AdminError('QUEUE_NOT_FOUND', 'm'))?.status, 404)
  assert.equal(httpErrorOf(new Error('boom')), undefined)
})

void test('gRPC peers: the IP address from grpc-js and C-core peer strings, nothing from others', () => {
  const cases: Array<[string, string | undefined]> = [
    ['127.0.0.1:5000', '127.0.0.1'],
    ['::1:5000', '::1'],
    ['::ffff:127.0.0.1:5000', '::ffff:127.0.0.1'],
    ['10.0.0.5:5000', '10.0.0.5'],
    ['ipv4:127.0.0.1:5000', '127.0.0.1'],
    ['ipv6:[::1]:5000', '::1'],
    ['ipv6:[fe80::1]:5000', 'fe80::1'],
    ['unix:/tmp/spool.sock', undefined],
    ['unknown', undefined],
  ]
  for (const [peer, address] of cases) assert.equal(peerAddress(peer), address, peer)
})

void test('gRPC statuses follow the HTTP table: one mapping for both transports', () => {
  const cases: Array<[unknown, number, string]> = [
    [new AdminError('INVALID_ARGUMENT', 'x'), GrpcStatus.INVALID_ARGUMENT, 'INVALID_ARGUMENT'],
    [new AdminError('UNAUTHORIZED', 'x'), GrpcStatus.UNAUTHENTICATED, 'UNAUTHORIZED'],
    [new AdminError('FORBIDDEN', 'x'), GrpcStatus.PERMISSION_DENIED, 'FORBIDDEN'],
    [new QueueError(QueueErrorCodes.queueNotFound, 'x'), GrpcStatus.NOT_FOUND, 'QUEUE_NOT_FOUND'],
    [new QueueError(QueueErrorCodes.queueExists, 'x'), GrpcStatus.ALREADY_EXISTS, 'QUEUE_EXISTS'],
    [new QueueError(QueueErrorCodes.queueInUse, 'x'), GrpcStatus.FAILED_PRECONDITION, 'QUEUE_IN_USE'],
    [new QueueError(QueueErrorCodes.invalidSettings, 'x'), GrpcStatus.INVALID_ARGUMENT, 'INVALID_SETTINGS'],
    [new QueueError(QueueErrorCodes.storageFailure, 'x'), GrpcStatus.INTERNAL, 'STORAGE_FAILURE'],
    [new QueueError(QueueErrorCodes.closed, 'x'), GrpcStatus.UNAVAILABLE, 'CLOSED'],
    [new Error('bug'), GrpcStatus.INTERNAL, 'INTERNAL'],
  ]
  for (const [err, status, code] of cases) {
    const mapped = grpcStatusOf(err)
    assert.deepEqual([mapped.status, mapped.code], [status, code], String(err))
  }
  // A bug's message stays in the server log, not in the answer.
  assert.equal(grpcStatusOf(new Error('secret detail')).message, 'internal error')
})
