/**
 * The node's one gRPC listener (`grpc.port`): server.ts creates it, extensions add their services
 * (the admin service today, cluster traffic with issue 4), then it binds next to the MQTT listener.
 */
import * as grpc from '@grpc/grpc-js'

export type GrpcServer = grpc.Server

/** Longest a stop waits for running calls (a paced redrive can take minutes) before cutting them off. */
export const GRPC_SHUTDOWN_GRACE_MS = 5_000

export function createGrpcServer(): GrpcServer {
  return new grpc.Server()
}

/** Binds plaintext on `host:port` (0 = a free port) and resolves with the bound port. */
export function listenGrpc(server: GrpcServer, host: string, port: number): Promise<number> {
  const address = host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`
  return new Promise((resolve, reject) => {
    server.bindAsync(address, grpc.ServerCredentials.createInsecure(), (err, bound) => {
      if (err === null) resolve(bound)
      else reject(err)
    })
  })
}

/** Stops accepting calls, lets running ones finish for up to `graceMs`, then cancels the rest. */
export function closeGrpc(server: GrpcServer, graceMs = GRPC_SHUTDOWN_GRACE_MS): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      server.forceShutdown()
      resolve()
    }, graceMs)
    server.tryShutdown(() => {
      clearTimeout(timer)
      resolve()
    })
  })
}
