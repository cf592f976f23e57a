/**
 * Keeps `$queue/` traffic out of aedes' routing (mqemitter, retained store, offline queues): the queue
 * adapter stores and delivers it itself (docs/adr/0004-queue-traffic-outside-mqemitter.md).
 */
import type { Aedes } from 'aedes'
import type { QueueLogger } from '../queue/logger.js'
import { isQueueTopic } from './queue-topics.js'

/** aedes' routing methods as they are really called (lib/handlers, aedes.js), not as typed. */
interface RoutingBroker {
  publish(packet: { topic: string }, client: unknown, done?: (err?: Error) => void): void
  subscribe(topic: string, func: unknown, done?: (err?: Error) => void): void
  unsubscribe(topic: string, func: unknown, done?: (err?: Error) => void): void
}

/**
 * aedes calls `broker.publish` after `authorizePublish` accepted a PUBLISH, and `broker.subscribe` /
 * `unsubscribe` when a SUBSCRIBE is granted or a client leaves. For `$queue/` topics the adapter has
 * already done the work, so these calls end here and never reach mqemitter, the retained store or
 * the offline queues. Wrapping the instance (not patching aedes) composes with the `$share/`
 * dispatcher, which wraps the same methods.
 */
export function bypassQueueRouting(aedes: Aedes, logger: QueueLogger): () => void {
  const routing = aedes as unknown as RoutingBroker
  const publish = routing.publish.bind(routing)
  const subscribe = routing.subscribe.bind(routing)
  const unsubscribe = routing.unsubscribe.bind(routing)
  routing.publish = (packet, client, done) => {
    if (!isQueueTopic(packet.topic)) return publish(packet, client, done)
    // Only a publish that went through authorizePublish was stored; anything else (a direct
    // broker.publish by embedding code) has no producer to tell, so it is logged and dropped.
    const callback = typeof client === 'function' ? (client as (err?: Error) => void) : done
    if (client === null || typeof client === 'function') {
      logger.warn(
        { topic: packet.topic },
        'queue publish dropped: not from a client (use QueueService.publish)',
      )
    }
    if (callback !== undefined) setImmediate(callback)
  }
  routing.subscribe = (topic, func, done) => {
    if (!isQueueTopic(topic)) return subscribe(topic, func, done)
    if (done !== undefined) setImmediate(done)
  }
  routing.unsubscribe = (topic, func, done) => {
    if (!isQueueTopic(topic)) return unsubscribe(topic, func, done)
    if (done !== undefined) setImmediate(done)
  }
  return () => {
    routing.publish = publish
    routing.subscribe = subscribe
    routing.unsubscribe = unsubscribe
  }
}
