/**
 * The server side of `spool.cluster.v1.ClusterService`: decodes calls from other nodes and hands
 * them to a {@link PeerHandlers} (the cluster's routing), encoding its answers and errors back.
 */
import type * as grpc from '@grpc/grpc-js'
import type { Logger } from '../observability/logger.js'
import { QueueError, QueueErrorCodes } from '../queue/errors.js'
import type { PartitionSnapshot } from '../queue/partition-ownership.js'
import type { Delivery, PublishInput, QueueMessage, SettleInput } from '../queue/types.js'
import {
  loadClusterServiceDefinition,
  messageFromWire,
  messageToWire,
  outcomeOf,
  propertiesFromWire,
  settleFromWire,
  snapshotFromWire,
  toServiceError,
  type WireConsumerEvent,
  type WirePartitionChunk,
  type WirePublishRequest,
  type WireRemoteDelivery,
  type WireSettleRequest,
} from './peer-protocol.js'

/** One calling node's consumers, as the owner side sees them over a Consume stream. */
export interface RemoteConsumerStream {
  join(clientId: string, queue: string, group: string, receiveMaximum: number): Promise<void>
  leave(clientId: string, queue: string): void
  gone(clientId: string): void
  /** The stream ended: every consumer of that node leaves. */
  close(): void
}

export interface PeerHandlers {
  /** Stores a forwarded publish in a partition this node serves. */
  storeForwarded(input: PublishInput & { partition: number }): Promise<QueueMessage>
  settleRemote(fromNode: string, clientId: string, input: SettleInput): Promise<void>
  openConsumerStream(
    fromNode: string,
    send: (clientId: string, delivery: Delivery) => void,
  ): RemoteConsumerStream
  importPartition(snapshot: PartitionSnapshot, batches: AsyncIterable<QueueMessage[]>): Promise<number>
}

/** Ends every open Consume stream (at shutdown: a graceful server stop would wait for them). */
export interface ClusterServiceHandle {
  endStreams(): void
}

export function attachClusterService(
  server: grpc.Server,
  handlers: PeerHandlers,
  logger: Logger,
): ClusterServiceHandle {
  const service = loadClusterServiceDefinition().service
  /** Open Consume streams, each with its clean-up. */
  const streams = new Map<grpc.ServerDuplexStream<WireConsumerEvent, WireRemoteDelivery>, () => void>()
  server.addService(service, {
    Publish(
      call: grpc.ServerUnaryCall<{ publishes: WirePublishRequest[] }, unknown>,
      callback: grpc.sendUnaryData<unknown>,
    ) {
      // Started in order: each publish appends to its partition before the next one starts.
      const stored = call.request.publishes.map((request) => {
        const input: PublishInput & { partition: number } = {
          queue: request.queue,
          partition: request.partition,
          payload: request.payload,
          properties: propertiesFromWire(request.properties),
        }
        if (request.messageExpirySeconds !== undefined && request.messageExpirySeconds !== null)
          input.messageExpirySeconds = request.messageExpirySeconds
        return handlers.storeForwarded(input)
      })
      void Promise.allSettled(stored).then((results) => callback(null, { outcomes: results.map(outcomeOf) }))
    },

    Settle(
      call: grpc.ServerUnaryCall<{ settles: WireSettleRequest[] }, unknown>,
      callback: grpc.sendUnaryData<unknown>,
    ) {
      const settled = call.request.settles.map((request) =>
        Promise.resolve().then(() =>
          handlers.settleRemote(request.fromNode, request.clientId, settleFromWire(request)),
        ),
      )
      void Promise.allSettled(settled).then((results) => callback(null, { outcomes: results.map(outcomeOf) }))
    },

    Consume(call: grpc.ServerDuplexStream<WireConsumerEvent, WireRemoteDelivery>) {
      let stream: RemoteConsumerStream | undefined
      let fromNode = '?'
      const end = () => {
        streams.delete(call)
        stream?.close()
        stream = undefined
      }
      streams.set(call, end)
      call.on('data', (event: WireConsumerEvent) => {
        switch (event.event) {
          case 'hello':
            fromNode = event.hello.nodeId
            stream?.close()
            stream = handlers.openConsumerStream(fromNode, (clientId, delivery) => {
              call.write({
                clientId,
                group: delivery.group,
                message: messageToWire(delivery.message),
                deliveryCount: delivery.deliveryCount,
              })
            })
            return
          case 'join': {
            const { clientId, queue, group, receiveMaximum } = event.join
            stream?.join(clientId, queue, group, receiveMaximum).catch((err: unknown) => {
              logger.warn({ fromNode, clientId, queue, group, err }, 'remote consumer could not join')
            })
            return
          }
          case 'leave':
            stream?.leave(event.leave.clientId, event.leave.queue)
            return
          case 'gone':
            stream?.gone(event.gone.clientId)
            return
        }
      })
      call.on('end', () => {
        end()
        call.end()
      })
      call.on('error', end)
      call.on('cancelled', end)
      call.on('close', end)
    },

    ImportPartition(
      call: grpc.ServerReadableStream<WirePartitionChunk, unknown>,
      callback: grpc.sendUnaryData<unknown>,
    ) {
      importFrom(call as AsyncIterable<WirePartitionChunk>, handlers).then(
        (imported) => callback(null, { imported }),
        (err: unknown) => callback(toServiceError(err)),
      )
    },
  })
  return {
    endStreams() {
      for (const [call, end] of [...streams]) {
        end()
        call.end()
      }
    },
  }
}

/** A partition stream is its header, then message batches in seq order. */
async function importFrom(
  chunks: AsyncIterable<WirePartitionChunk>,
  handlers: PeerHandlers,
): Promise<number> {
  const iterator = chunks[Symbol.asyncIterator]()
  const head = await iterator.next()
  if (head.done === true || head.value.chunk !== 'header') {
    throw new QueueError(QueueErrorCodes.invalidSettings, 'a partition import must start with its header')
  }
  const batches = async function* (): AsyncGenerator<QueueMessage[]> {
    for (;;) {
      const next = await iterator.next()
      if (next.done === true) return
      if (next.value.chunk !== 'messages') {
        throw new QueueError(QueueErrorCodes.invalidSettings, 'a partition import has one header')
      }
      yield next.value.messages.messages.map(messageFromWire)
    }
  }
  return handlers.importPartition(snapshotFromWire(head.value.header), batches())
}
