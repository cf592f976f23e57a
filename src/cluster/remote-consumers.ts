/**
 * Proxy routing, owner side: the consumers of another node, each standing in this node's queue core
 * as an ordinary {@link ConsumerConnection} whose deliveries go back over that node's Consume stream.
 * The core then applies its usual rules (group membership, in-flight limits, timeouts) to them.
 */
import type { PartitionHost } from '../queue/partition-ownership.js'
import type { ConsumerConnection, Delivery } from '../queue/types.js'
import type { RemoteConsumerStream } from './peer-server.js'

/** A consumer connected to another node. Its client id here is `<node>/<client id>`, unique cluster-wide. */
class RemoteConsumer implements ConsumerConnection {
  readonly clientId: string

  constructor(
    readonly nodeId: string,
    readonly remoteClientId: string,
    readonly receiveMaximum: number,
    private readonly send: (clientId: string, delivery: Delivery) => void,
  ) {
    this.clientId = `${nodeId}/${remoteClientId}`
  }

  deliver(delivery: Delivery): void {
    this.send(this.remoteClientId, delivery)
  }
}

export class RemoteConsumers {
  /** Open streams by calling node; a node that re-opens its stream replaces the old one. */
  private readonly streams = new Map<string, Map<string, RemoteConsumer>>()

  constructor(private readonly manager: PartitionHost) {}

  open(nodeId: string, send: (clientId: string, delivery: Delivery) => void): RemoteConsumerStream {
    this.closeNode(nodeId)
    const consumers = new Map<string, RemoteConsumer>()
    this.streams.set(nodeId, consumers)
    const manager = this.manager
    const current = () => this.streams.get(nodeId) === consumers
    return {
      async join(clientId, queue, group, receiveMaximum) {
        if (!current()) return
        let consumer = consumers.get(clientId)
        if (consumer === undefined) {
          consumer = new RemoteConsumer(nodeId, clientId, receiveMaximum, send)
          consumers.set(clientId, consumer)
        }
        await manager.subscribe(consumer, queue, group)
      },
      leave(clientId, queue) {
        const consumer = consumers.get(clientId)
        if (consumer !== undefined && current()) manager.unsubscribe(consumer, queue)
      },
      gone(clientId) {
        const consumer = consumers.get(clientId)
        if (consumer === undefined || !current()) return
        consumers.delete(clientId)
        manager.disconnect(consumer)
      },
      close: () => {
        if (current()) this.closeNode(nodeId)
      },
    }
  }

  /** The stand-in for a consumer of `nodeId`, to settle its deliveries. */
  consumer(nodeId: string, clientId: string): ConsumerConnection | undefined {
    return this.streams.get(nodeId)?.get(clientId)
  }

  /** A node's stream ended or the node died: its consumers leave and their deliveries return. */
  closeNode(nodeId: string): void {
    const consumers = this.streams.get(nodeId)
    if (consumers === undefined) return
    this.streams.delete(nodeId)
    for (const consumer of consumers.values()) this.manager.disconnect(consumer)
  }

  closeAll(): void {
    for (const nodeId of [...this.streams.keys()]) this.closeNode(nodeId)
  }
}
