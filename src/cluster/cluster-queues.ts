/**
 * The `$queue/` service of a cluster node: what the MQTT adapter talks to instead of the local queue
 * core (same {@link QueueService} contract), and what other nodes call over gRPC
 * ({@link PeerHandlers}). It routes by partition owner (docs/cluster.md#routing):
 *
 * - publish: stored here when this node serves the partition, otherwise forwarded to the owner,
 *   otherwise (owner down, unknown, or the partition moving) kept in the durable forward buffer and
 *   delivered to the owner later, in order; the PUBACK follows whichever durable write came first;
 * - subscribe (proxy): the consumer joins here and, through the Consume streams, on every other live
 *   node, so each owner delivers its partitions to it; (direct) it joins here only;
 * - settle: sent to the partition's owner, which made the delivery.
 *
 * Dead-letter queues (`dlq/<name>`) are node-local: each node keeps the dead letters of the
 * partitions it served, and consumers and the admin API see those of the node they talk to.
 */
import type { Logger } from '../observability/logger.js'
import type { RoutingMode } from '../config/index.js'
import { QueueError, QueueErrorCodes } from '../queue/errors.js'
import { parseMessageId } from '../queue/message-id.js'
import type { PartitionHost } from '../queue/partition-ownership.js'
import { DEAD_LETTER_PREFIX } from '../queue/settings.js'
import type {
  ConsumerConnection,
  Delivery,
  PublishInput,
  QueueMessage,
  QueueService,
  SettleInput,
  SubscribeOptions,
} from '../queue/types.js'
import type { EtcdCoordinator } from './coordinator.js'
import type { BufferedPublish, ForwardBuffer } from '../storage/forward/forward-buffer.js'
import { PeerClient } from './peer-client.js'
import { PeerUnavailableError, type WireJoin } from './peer-protocol.js'
import type { PeerHandlers, RemoteConsumerStream } from './peer-server.js'
import { RemoteConsumers } from './remote-consumers.js'

/** Buffered messages sent to an owner per round; a round ends early at the first failure. */
const DRAIN_BATCH = 64
/** Wait before a buffered partition is tried again after its owner failed or refused. */
const DRAIN_RETRY_MS = 500
/** Direct routing: how long a SUBSCRIBE to a queue whose partitions are not all owned yet waits. */
const OWNERSHIP_WAIT_MS = 3_000
/** Upper bound of rounds in one drain pass (each round sends up to DRAIN_BATCH). */
const DRAIN_MAX_ROUNDS = 10_000

export interface ClusterQueuesOptions {
  readonly nodeId: string
  readonly manager: PartitionHost
  readonly coordinator: EtcdCoordinator
  readonly buffer: ForwardBuffer
  readonly routing: RoutingMode
  readonly logger: Logger
}

/** A consumer connected to this node and the groups it joined, to announce to other nodes. */
interface LocalConsumer {
  readonly connection: ConsumerConnection
  readonly groups: Map<string, Set<string>>
}

export class ClusterQueues implements QueueService, PeerHandlers {
  private readonly nodeId: string
  private readonly manager: PartitionHost
  private readonly coordinator: EtcdCoordinator
  private readonly buffer: ForwardBuffer
  private readonly logger: Logger
  private readonly peers = new Map<string, PeerClient>()
  private readonly locals = new Map<string, LocalConsumer>()
  private readonly remote: RemoteConsumers
  private readonly registered = new Set<string>()
  private readonly draining = new Set<string>()
  private drainTimer: NodeJS.Timeout | undefined
  private drainScheduled = false
  private closed = false

  constructor(private readonly options: ClusterQueuesOptions) {
    this.nodeId = options.nodeId
    this.manager = options.manager
    this.coordinator = options.coordinator
    this.buffer = options.buffer
    this.logger = options.logger
    this.remote = new RemoteConsumers(options.manager)
  }

  /** A peer by node id (for hand-overs); undefined when the node is not up. */
  peer(nodeId: string): PeerClient | undefined {
    return this.peers.get(nodeId)
  }

  /** Follows the live nodes: a client (and in proxy mode a Consume stream) for each other one. */
  refreshPeers(): void {
    if (this.closed) return
    const live = new Set(this.coordinator.aliveIds().filter((node) => node !== this.nodeId))
    for (const [nodeId, peer] of this.peers) {
      const address = this.coordinator.addressesOf(nodeId)?.grpc
      if (live.has(nodeId) && address === peer.address) continue
      peer.close()
      this.peers.delete(nodeId)
      // A node that is gone takes its consumers with it: their deliveries return here.
      if (!live.has(nodeId)) this.remote.closeNode(nodeId)
    }
    for (const nodeId of live) {
      if (this.peers.has(nodeId)) continue
      const address = this.coordinator.addressesOf(nodeId)?.grpc
      if (address === undefined) continue
      const peer = new PeerClient({
        selfId: this.nodeId,
        peerId: nodeId,
        address,
        logger: this.logger,
        onDelivery: (clientId, delivery) => this.deliverRemote(nodeId, clientId, delivery),
        currentJoins: () => this.currentJoins(),
      })
      this.peers.set(nodeId, peer)
      if (this.options.routing === 'proxy') peer.startConsuming()
    }
  }

  // ---- QueueService (the MQTT adapter) ----

  async publish(input: PublishInput): Promise<QueueMessage | undefined> {
    if (isNodeLocal(input.queue)) return this.manager.publish(input)
    this.manager.checkPublish(input)
    await this.registerQueue(input.queue)
    const partition = input.partition ?? this.manager.partitionFor(input.queue, input.partitionKey)
    const routed = { ...input, partition }
    if (this.buffer.isEmpty(input.queue, partition)) {
      const owner = this.coordinator.ownerOf(input.queue, partition)
      try {
        if (owner === this.nodeId && this.manager.serves(input.queue, partition)) {
          return await this.manager.publish(routed)
        }
        const peer = owner === undefined ? undefined : this.peers.get(owner)
        if (peer !== undefined) {
          await peer.publish(routed, this.nodeId)
          return undefined
        }
      } catch (err) {
        if (!isRetryable(err)) throw err
      }
    }
    await this.buffer.append(toBuffered(routed, Date.now()), {
      sync: this.manager.settingsOf(input.queue).durability.sync,
    })
    this.drainSoon()
    return undefined
  }

  async subscribe(
    connection: ConsumerConnection,
    queue: string,
    group: string,
    options?: SubscribeOptions,
  ): Promise<void> {
    if (!isNodeLocal(queue)) {
      await this.registerQueue(queue)
      if (this.options.routing === 'direct') await this.assertOwnsSome(queue)
    }
    await this.manager.subscribe(connection, queue, group, options)
    this.joined(connection, queue, group)
  }

  async resumeSession(connection: ConsumerConnection): Promise<Array<{ queue: string; group: string }>> {
    const memberships = await this.manager.resumeSession(connection)
    for (const { queue, group } of memberships) this.joined(connection, queue, group)
    return memberships
  }

  endSession(clientId: string): Promise<void> {
    return this.manager.endSession(clientId)
  }

  unsubscribe(connection: ConsumerConnection, queue: string): void {
    this.manager.unsubscribe(connection, queue)
    const local = this.locals.get(connection.clientId)
    if (local?.connection !== connection) return
    local.groups.delete(queue)
    if (!isNodeLocal(queue)) for (const peer of this.peers.values()) peer.leave(connection.clientId, queue)
  }

  disconnect(connection: ConsumerConnection): void {
    this.manager.disconnect(connection)
    const local = this.locals.get(connection.clientId)
    if (local?.connection !== connection) return
    this.locals.delete(connection.clientId)
    for (const peer of this.peers.values()) peer.gone(connection.clientId)
  }

  async settle(connection: ConsumerConnection, input: SettleInput): Promise<void> {
    const parsed = parseMessageId(input.messageId)
    const owner = parsed === undefined ? undefined : this.coordinator.ownerOf(input.queue, parsed.partition)
    // Direct routing delivers only from this node's partitions: a settle is this node's to answer,
    // also after its partition moved (then refused as not served; the message comes again).
    const here = isNodeLocal(input.queue) || this.options.routing === 'direct'
    if (here || owner === undefined || owner === this.nodeId) {
      return this.manager.settle(connection, input)
    }
    const peer = this.peers.get(owner)
    if (peer === undefined) {
      throw new QueueError(
        QueueErrorCodes.partitionNotServed,
        `cannot ${input.action} ${input.messageId}: node ${owner}, which owns its partition, is down (the delivery will be made again)`,
      )
    }
    try {
      await peer.settle(connection.clientId, input)
    } catch (err) {
      if (err instanceof PeerUnavailableError) {
        throw new QueueError(
          QueueErrorCodes.partitionNotServed,
          `cannot ${input.action} ${input.messageId}: node ${owner} did not answer (the delivery will be made again)`,
        )
      }
      throw err
    }
  }

  // ---- PeerHandlers (other nodes) ----

  storeForwarded(input: PublishInput & { partition: number }): Promise<QueueMessage> {
    if (!this.coordinator.isHealthy) {
      return Promise.reject(
        new QueueError(QueueErrorCodes.partitionNotServed, `node ${this.nodeId} has lost etcd; not serving`),
      )
    }
    return this.manager.publish(input)
  }

  settleRemote(fromNode: string, clientId: string, input: SettleInput): Promise<void> {
    const consumer = this.remote.consumer(fromNode, clientId)
    if (consumer === undefined) {
      return Promise.reject(
        new QueueError(
          QueueErrorCodes.unknownMessage,
          `cannot ${input.action} ${input.messageId}: consumer ${clientId} of node ${fromNode} is not known on ${this.nodeId}`,
        ),
      )
    }
    return this.manager.settle(consumer, input)
  }

  openConsumerStream(
    fromNode: string,
    send: (clientId: string, delivery: Delivery) => void,
  ): RemoteConsumerStream {
    return this.remote.open(fromNode, send)
  }

  importPartition(
    snapshot: Parameters<PartitionHost['importPartition']>[0],
    batches: AsyncIterable<QueueMessage[]>,
  ): Promise<number> {
    return this.manager.importPartition(snapshot, batches)
  }

  // ---- Forward buffer ----

  /** Sends buffered messages to partitions whose owner is there now (called on every cluster change). */
  drainSoon(): void {
    if (this.drainScheduled || this.closed) return
    this.drainScheduled = true
    setImmediate(() => {
      this.drainScheduled = false
      for (const { queue, partition } of this.buffer.pending()) {
        const key = `${queue}/${partition}`
        if (this.draining.has(key)) continue
        this.draining.add(key)
        this.drain(queue, partition)
          .catch((err: unknown) =>
            this.logger.error({ queue, partition, err }, 'forward buffer drain failed'),
          )
          .finally(() => this.draining.delete(key))
      }
    })
  }

  /** Waits until the buffer is empty or `timeoutMs` passed; returns what is left. */
  async flushBuffer(timeoutMs: number): Promise<number> {
    const deadline = Date.now() + timeoutMs
    while (this.buffer.size() > 0 && Date.now() < deadline) {
      this.drainSoon()
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
    return this.buffer.size()
  }

  bufferedCount(): number {
    return this.buffer.size()
  }

  private async drain(queue: string, partition: number): Promise<void> {
    for (let round = 0; round < DRAIN_MAX_ROUNDS && !this.closed; round++) {
      const owner = this.coordinator.ownerOf(queue, partition)
      const local = owner === this.nodeId && this.manager.serves(queue, partition)
      const peer = owner === undefined || owner === this.nodeId ? undefined : this.peers.get(owner)
      if (!local && peer === undefined) return // nobody to take them yet: the next cluster change retries
      const entries = await this.buffer.oldest(queue, partition, DRAIN_BATCH)
      if (entries.length === 0) return
      let through: number | undefined
      let failed = false
      const now = Date.now()
      // Sent together (one batch to a peer), in order; the first failure ends the round, and what
      // follows it stays buffered (sent again later even if it got through: at least once).
      const sends = entries.map((entry) => {
        const input = fromBuffered(entry.publish, now)
        if (input === undefined) return Promise.resolve('expired' as const)
        return local ? this.manager.publish(input) : peer!.publish(input, this.nodeId)
      })
      const outcomes = await Promise.allSettled(sends)
      for (const [i, outcome] of outcomes.entries()) {
        if (outcome.status === 'fulfilled') {
          if (outcome.value === 'expired')
            this.logger.info({ queue, partition }, 'buffered message expired before its owner took it')
          through = entries[i]!.seq
          continue
        }
        const err: unknown = outcome.reason
        if (isRetryable(err) || (err instanceof QueueError && err.code === QueueErrorCodes.queueFull)) {
          failed = true
          break
        }
        // Refused for good (e.g. the owner's limits changed): it can never be stored there, so it
        // becomes a dead letter here rather than being lost.
        await this.deadLetterRefused(entries[i]!.publish, err)
        through = entries[i]!.seq
      }
      if (through !== undefined) await this.buffer.remove(queue, partition, through)
      if (failed) {
        this.retryDrainLater()
        return
      }
    }
  }

  /** Keeps a buffered message its owner refused for good in this node's `dlq/<queue>`. */
  private async deadLetterRefused(buffered: BufferedPublish, err: unknown): Promise<void> {
    const reason = err instanceof Error ? err.message : String(err)
    await this.manager.publish({
      queue: DEAD_LETTER_PREFIX + buffered.queue,
      payload: buffered.payload,
      properties: {
        ...buffered.properties,
        userProperties: [
          ...(buffered.properties.userProperties ?? []),
          ['dlq-reason', 'refused-by-owner'],
          ['dlq-original-queue', buffered.queue],
          ['reason', reason],
        ],
      },
    })
    this.logger.error(
      { queue: buffered.queue, partition: buffered.partition, err: reason },
      'buffered message refused by the partition owner; kept as a dead letter on this node',
    )
  }

  private retryDrainLater(): void {
    if (this.drainTimer !== undefined || this.closed) return
    this.drainTimer = setTimeout(() => {
      this.drainTimer = undefined
      this.drainSoon()
    }, DRAIN_RETRY_MS)
  }

  // ---- Internals ----

  /** Records the queue in etcd (so every node claims its partitions) the first time it is used here. */
  async registerQueue(queue: string): Promise<void> {
    if (this.registered.has(queue)) return
    const local = this.manager.settingsOf(queue).partitions
    const recorded =
      this.coordinator.partitionsOf(queue) ?? (await this.coordinator.registerQueue(queue, local))
    if (recorded !== local) {
      this.logger.error(
        { queue, partitions: local, cluster: recorded },
        'queue has a different partition count in the cluster; give every node the same queue settings',
      )
    }
    this.registered.add(queue)
  }

  private async assertOwnsSome(queue: string): Promise<void> {
    // A queue used for the first time has no owners for a moment: let the claims land first.
    const deadline = Date.now() + OWNERSHIP_WAIT_MS
    while (
      this.coordinator.ownersOf(queue).some(({ owner }) => owner === undefined) &&
      Date.now() < deadline &&
      !this.closed
    ) {
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
    const owners = this.coordinator.ownersOf(queue)
    if (owners.some(({ owner }) => owner === this.nodeId)) return
    const nodes = [...new Set(owners.map(({ owner }) => owner).filter((owner) => owner !== undefined))]
    const where = nodes
      .map((node) => `${node} (${this.coordinator.addressesOf(node)?.mqtt ?? 'address unknown'})`)
      .join(', ')
    throw new QueueError(
      QueueErrorCodes.noLocalPartitions,
      `node ${this.nodeId} owns no partition of queue ${queue} (routing: direct); connect to ${where || 'the owners listed on $SYS/spool/cluster/partitions/' + queue}`,
    )
  }

  private joined(connection: ConsumerConnection, queue: string, group: string): void {
    let local = this.locals.get(connection.clientId)
    if (local?.connection !== connection) {
      local = { connection, groups: new Map() }
      this.locals.set(connection.clientId, local)
    }
    const groups = local.groups.get(queue) ?? new Set<string>()
    groups.add(group)
    local.groups.set(queue, groups)
    if (this.options.routing !== 'proxy' || isNodeLocal(queue)) return
    const join = { clientId: connection.clientId, queue, group, receiveMaximum: connection.receiveMaximum }
    for (const peer of this.peers.values()) peer.join(join)
  }

  private currentJoins(): WireJoin[] {
    const joins: WireJoin[] = []
    for (const { connection, groups } of this.locals.values()) {
      for (const [queue, names] of groups) {
        if (isNodeLocal(queue)) continue
        for (const group of names)
          joins.push({
            clientId: connection.clientId,
            queue,
            group,
            receiveMaximum: connection.receiveMaximum,
          })
      }
    }
    return joins
  }

  private deliverRemote(nodeId: string, clientId: string, delivery: Delivery): void {
    const local = this.locals.get(clientId)
    if (local === undefined) {
      // Gone meanwhile: tell the owner, so the delivery returns now rather than at its timeout.
      this.peers.get(nodeId)?.gone(clientId)
      return
    }
    local.connection.deliver(delivery)
  }

  close(): void {
    this.closed = true
    if (this.drainTimer !== undefined) clearTimeout(this.drainTimer)
    this.remote.closeAll()
    for (const peer of this.peers.values()) peer.close()
    this.peers.clear()
  }
}

function isNodeLocal(queue: string): boolean {
  return queue.startsWith(DEAD_LETTER_PREFIX)
}

/** A failure where the message may go to the buffer and be sent again later. */
function isRetryable(err: unknown): boolean {
  return (
    err instanceof PeerUnavailableError ||
    (err instanceof QueueError &&
      (err.code === QueueErrorCodes.partitionNotServed || err.code === QueueErrorCodes.closed))
  )
}

function toBuffered(input: PublishInput & { partition: number }, now: number): BufferedPublish {
  return {
    queue: input.queue,
    partition: input.partition,
    payload: input.payload,
    properties: input.properties,
    acceptedAtMs: now,
    ...(input.messageExpirySeconds === undefined ? {} : { messageExpirySeconds: input.messageExpirySeconds }),
  }
}

/** The publish again, its expiry shortened by the time it waited; undefined once it has expired. */
function fromBuffered(
  buffered: BufferedPublish,
  now: number,
): (PublishInput & { partition: number }) | undefined {
  const input: PublishInput & { partition: number } = {
    queue: buffered.queue,
    partition: buffered.partition,
    payload: buffered.payload,
    properties: buffered.properties,
  }
  if (buffered.messageExpirySeconds !== undefined) {
    const left = buffered.messageExpirySeconds - Math.floor((now - buffered.acceptedAtMs) / 1000)
    if (left <= 0) return undefined
    input.messageExpirySeconds = left
  }
  return input
}
