/**
 * The client side of `spool.cluster.v1.ClusterService` for one other node: unary calls with
 * deadlines and bounded retries, the partition stream of a hand-over, and (proxy routing) the
 * long-lived Consume stream, re-opened with backoff whenever it breaks and replaying this node's
 * consumers each time.
 */
import * as grpc from '@grpc/grpc-js'
import type { Logger } from '../observability/logger.js'
import type { PartitionSnapshot } from '../queue/partition-ownership.js'
import type { Delivery, PublishInput, QueueMessage, SettleInput } from '../queue/types.js'
import {
  errorOfOutcome,
  fromServiceError,
  loadClusterServiceDefinition,
  messageFromWire,
  messageToWire,
  PeerUnavailableError,
  propertiesToWire,
  settleToWire,
  snapshotToWire,
  type WireConsumerEvent,
  type WireJoin,
  type WirePartitionChunk,
  type WireOutcome,
  type WirePublishRequest,
  type WireRemoteDelivery,
  type WireSettleRequest,
} from './peer-protocol.js'

const UNARY_DEADLINE_MS = 5_000
const IMPORT_DEADLINE_MS = 120_000
const UNARY_ATTEMPTS = 3
const RETRY_BASE_DELAY_MS = 50
const STREAM_RETRY_MAX_DELAY_MS = 2_000
const IMPORT_BATCH_MESSAGES = 256

/** Statuses where the call may not have reached the peer, or the peer is going away: try again. */
const RETRYABLE = new Set([grpc.status.UNAVAILABLE, grpc.status.DEADLINE_EXCEEDED, grpc.status.CANCELLED])

type UnaryCallback<T> = (err: grpc.ServiceError | null, value?: T) => void
type UnaryMethod<Req, Res> = (request: Req, options: grpc.CallOptions, callback: UnaryCallback<Res>) => void

interface ClusterStub extends grpc.Client {
  Publish: UnaryMethod<{ publishes: WirePublishRequest[] }, { outcomes: WireOutcome[] }>
  Settle: UnaryMethod<{ settles: WireSettleRequest[] }, { outcomes: WireOutcome[] }>
  Consume(options: grpc.CallOptions): grpc.ClientDuplexStream<WireConsumerEvent, WireRemoteDelivery>
  ImportPartition(
    options: grpc.CallOptions,
    callback: UnaryCallback<{ imported: number }>,
  ): grpc.ClientWritableStream<WirePartitionChunk>
}

let serviceConstructor: grpc.ServiceClientConstructor | undefined

/** Most requests in one batched call. */
const BATCH_MAX = 256

/**
 * Publishes (or settles) for one peer made in the same event-loop turn go out as one call, which
 * costs one gRPC round trip instead of one each; every caller still gets its own outcome. Calls
 * leave in submission order.
 */
class Batcher<Request> {
  private pending: Array<{ request: Request; resolve: () => void; reject: (err: Error) => void }> = []
  private scheduled = false

  constructor(private readonly send: (requests: Request[]) => Promise<WireOutcome[]>) {}

  submit(request: Request): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.pending.push({ request, resolve, reject })
      if (this.scheduled) return
      this.scheduled = true
      setImmediate(() => this.flush())
    })
  }

  private flush(): void {
    this.scheduled = false
    while (this.pending.length > 0) {
      const batch = this.pending.splice(0, BATCH_MAX)
      this.send(batch.map((entry) => entry.request)).then(
        (outcomes) =>
          batch.forEach((entry, i) => {
            const error = errorOfOutcome(outcomes[i])
            if (error === undefined) entry.resolve()
            else entry.reject(error)
          }),
        (err: unknown) => {
          const error = err instanceof Error ? err : new Error(String(err))
          for (const entry of batch) entry.reject(error)
        },
      )
    }
  }
}

export interface PeerClientOptions {
  readonly selfId: string
  readonly peerId: string
  /** `host:port` of the peer's gRPC listener. */
  readonly address: string
  readonly logger: Logger
  /** A delivery the peer made to one of this node's consumers (proxy routing). */
  readonly onDelivery?: (clientId: string, delivery: Delivery) => void
  /** This node's consumers to announce whenever the Consume stream (re)opens. */
  readonly currentJoins?: () => WireJoin[]
}

export class PeerClient {
  readonly peerId: string
  readonly address: string
  private readonly stub: ClusterStub
  private stream: grpc.ClientDuplexStream<WireConsumerEvent, WireRemoteDelivery> | undefined
  private streamRetryMs = 100
  private streamTimer: NodeJS.Timeout | undefined
  private closed = false
  private readonly publishes = new Batcher<WirePublishRequest>((publishes) =>
    this.unary<{ outcomes: WireOutcome[] }>((options, callback) =>
      this.stub.Publish({ publishes }, options, callback),
    ).then((reply) => reply.outcomes),
  )
  private readonly settles = new Batcher<WireSettleRequest>((settles) =>
    this.unary<{ outcomes: WireOutcome[] }>((options, callback) =>
      this.stub.Settle({ settles }, options, callback),
    ).then((reply) => reply.outcomes),
  )

  constructor(private readonly options: PeerClientOptions) {
    this.peerId = options.peerId
    this.address = options.address
    serviceConstructor ??= loadClusterServiceDefinition()
    this.stub = new serviceConstructor(options.address, grpc.credentials.createInsecure(), {
      'grpc.keepalive_time_ms': 10_000,
      'grpc.keepalive_timeout_ms': 5_000,
      'grpc.initial_reconnect_backoff_ms': 200,
      'grpc.max_reconnect_backoff_ms': 2_000,
      'grpc.max_receive_message_length': 64 * 1024 * 1024,
    }) as unknown as ClusterStub
  }

  /** Stores a message in the peer's partition; resolves after the peer's durable write. */
  publish(input: PublishInput & { partition: number }, fromNode: string): Promise<void> {
    const request: WirePublishRequest = {
      fromNode,
      queue: input.queue,
      partition: input.partition,
      payload: Buffer.from(input.payload.buffer, input.payload.byteOffset, input.payload.byteLength),
      properties: propertiesToWire(input.properties),
    }
    if (input.messageExpirySeconds !== undefined) request.messageExpirySeconds = input.messageExpirySeconds
    return this.publishes.submit(request)
  }

  settle(clientId: string, input: SettleInput): Promise<void> {
    return this.settles.submit(settleToWire(this.options.selfId, clientId, input))
  }

  /** Streams a partition (header, then its stored messages from `readFrom`) and waits for the durable import. */
  importPartition(
    snapshot: PartitionSnapshot,
    readFrom: (fromSeq: number, limit: number) => Promise<QueueMessage[]>,
  ): Promise<number> {
    return new Promise<number>((resolve, reject) => {
      const call = this.stub.ImportPartition({ deadline: Date.now() + IMPORT_DEADLINE_MS }, (err, reply) => {
        if (err !== null) reject(fromServiceError(err))
        else resolve(reply?.imported ?? 0)
      })
      const send = async () => {
        call.write({ chunk: 'header', header: snapshotToWire(this.options.selfId, snapshot) })
        const { lastSeq, count } = snapshot.meta
        let from = lastSeq - count + 1
        while (from <= lastSeq) {
          const batch = await readFrom(from, IMPORT_BATCH_MESSAGES)
          if (batch.length === 0) break
          const writable = call.write({ chunk: 'messages', messages: { messages: batch.map(messageToWire) } })
          if (!writable) await new Promise((drained) => call.once('drain', drained))
          from = batch[batch.length - 1]!.seq + 1
        }
        call.end()
      }
      send().catch((err: unknown) => {
        call.cancel()
        reject(err instanceof Error ? err : new Error(String(err)))
      })
    })
  }

  // ---- Consume stream (proxy routing) ----

  /** Opens the Consume stream and keeps it open until {@link close}. */
  startConsuming(): void {
    if (this.stream !== undefined || this.closed) return
    const stream = this.stub.Consume({})
    this.stream = stream
    stream.write({ event: 'hello', hello: { nodeId: this.options.selfId } })
    for (const join of this.options.currentJoins?.() ?? []) stream.write({ event: 'join', join })
    stream.on('data', (delivery: WireRemoteDelivery) => {
      this.streamRetryMs = 100
      if (delivery.message === null) return
      this.options.onDelivery?.(delivery.clientId, {
        message: messageFromWire(delivery.message),
        group: delivery.group,
        deliveryCount: delivery.deliveryCount,
      })
    })
    const broken = (reason: string) => {
      if (this.stream !== stream) return
      this.stream = undefined
      stream.end()
      if (this.closed) return
      this.options.logger.debug({ peer: this.peerId, reason }, 'consume stream to peer broken; re-opening')
      this.streamTimer = setTimeout(() => this.startConsuming(), this.streamRetryMs)
      this.streamRetryMs = Math.min(this.streamRetryMs * 2, STREAM_RETRY_MAX_DELAY_MS)
    }
    stream.on('error', (err: Error) => broken(err.message))
    stream.on('end', () => broken('ended'))
  }

  join(join: WireJoin): void {
    this.stream?.write({ event: 'join', join })
  }

  leave(clientId: string, queue: string): void {
    this.stream?.write({ event: 'leave', leave: { clientId, queue } })
  }

  gone(clientId: string): void {
    this.stream?.write({ event: 'gone', gone: { clientId } })
  }

  close(): void {
    this.closed = true
    if (this.streamTimer !== undefined) clearTimeout(this.streamTimer)
    const stream = this.stream
    this.stream = undefined
    stream?.end()
    stream?.cancel()
    this.stub.close()
  }

  /** A unary call with a deadline, retried with backoff while the peer is unreachable. */
  private async unary<T>(call: (options: grpc.CallOptions, callback: UnaryCallback<T>) => void): Promise<T> {
    let lastError: unknown
    for (let attempt = 1; attempt <= UNARY_ATTEMPTS; attempt++) {
      try {
        return await new Promise<T>((resolve, reject) => {
          call({ deadline: Date.now() + UNARY_DEADLINE_MS }, (err, value) => {
            if (err !== null) reject(err)
            else resolve(value as T)
          })
        })
      } catch (err) {
        lastError = err
        const status = (err as Partial<grpc.ServiceError>).code
        if (this.closed || status === undefined || !RETRYABLE.has(status)) break
        await new Promise((resolve) => setTimeout(resolve, RETRY_BASE_DELAY_MS * 2 ** (attempt - 1)))
      }
    }
    const mapped = fromServiceError(lastError)
    if (mapped instanceof PeerUnavailableError) {
      this.options.logger.debug({ peer: this.peerId, err: mapped.message }, 'peer call failed')
    }
    throw mapped
  }
}
