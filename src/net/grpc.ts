/**
 * The node's one gRPC listener (`grpc.port`): the composition root creates it, adds the services
 * (the admin service, cluster traffic between nodes), then binds it next to the MQTT listener.
 */
import { existsSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import * as grpc from '@grpc/grpc-js'
import * as protoLoader from '@grpc/proto-loader'

export type GrpcServer = grpc.Server

/** Trailer with Spool's own error code (`QUEUE_NOT_FOUND`, …), finer than the gRPC status. */
export const ERROR_CODE_TRAILER = 'spool-error-code'

/** proto-loader options shared by servers and clients: camelCase fields, uint64 as number. */
export const PROTO_LOADER_OPTIONS: protoLoader.Options = {
  keepCase: false,
  longs: Number,
  enums: String,
  defaults: true,
  oneofs: true,
}

function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url))
  while (!existsSync(join(dir, 'package.json'))) {
    const parent = dirname(dir)
    if (parent === dir) throw new Error(`no package.json above ${fileURLToPath(import.meta.url)}`)
    dir = parent
  }
  return dir
}

/** A proto file of the package (path from the package root; the same from src/ and dist/), loaded. */
export function loadProtoPackage(path: string): unknown {
  return grpc.loadPackageDefinition(protoLoader.loadSync(join(packageRoot(), path), PROTO_LOADER_OPTIONS))
}

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
