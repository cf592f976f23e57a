/**
 * A real @grpc/grpc-js client of `spool.admin.v1.AdminService`, built from the broker's own proto,
 * with a deadline on every call and closed on `t.after`.
 */
import type { TestContext } from 'node:test'
import * as grpc from '@grpc/grpc-js'
import { loadAdminServiceDefinition } from '../../src/admin/grpc-server.js'
import { ERROR_CODE_TRAILER } from '../../src/net/grpc.js'
import { TIMEOUT_MS } from './server.js'

export type AdminRpc = <T = unknown>(method: string, request?: object) => Promise<T>

/** A client for `127.0.0.1:port` whose calls send `token` (if any) as `authorization: Bearer …`. */
export function adminGrpcClient(t: TestContext, port: number, token?: string): AdminRpc {
  const Client = loadAdminServiceDefinition()
  const client = new Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure())
  t.after(() => client.close())
  return <T>(method: string, request: object = {}) =>
    new Promise<T>((resolve, reject) => {
      const metadata = new grpc.Metadata()
      if (token !== undefined) metadata.set('authorization', `Bearer ${token}`)
      const fn = client[method] as (
        req: object,
        md: grpc.Metadata,
        options: grpc.CallOptions,
        cb: (err: grpc.ServiceError | null, res: T) => void,
      ) => void
      if (typeof fn !== 'function') throw new Error(`no rpc ${method}`)
      fn.call(client, request, metadata, { deadline: Date.now() + TIMEOUT_MS }, (err, res) => {
        if (err === null) resolve(res)
        else reject(err)
      })
    })
}

/** Asserts that `promise` fails with gRPC `status` and, if given, Spool's `code` trailer. */
export async function rpcError(
  promise: Promise<unknown>,
): Promise<{ status: number; code: string; details: string }> {
  try {
    await promise
  } catch (err) {
    const e = err as grpc.ServiceError
    if (typeof e.code !== 'number') throw err
    const code = e.metadata?.get(ERROR_CODE_TRAILER)[0]
    return { status: e.code, code: typeof code === 'string' ? code : '', details: e.details }
  }
  throw new Error('expected the rpc to fail')
}
