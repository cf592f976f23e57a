/**
 * Composable authorization hooks for aedes. aedes has exactly one `authorizePublish`,
 * `authorizeSubscribe` and `authorizeForward` slot each; Spool needs several independent policies
 * (the `$SYS` guard here, the `$queue/` adapter, later ACLs), so broker.ts installs one dispatcher per
 * slot that runs an ordered list of hooks.
 *
 * How to add a hook (e.g. in src/protocol/queue-adapter.ts):
 *
 * ```ts
 * broker.hooks.authorizePublish.push((client, packet) => {
 *   if (!packet.topic.startsWith('$queue/')) return  // not mine: let the next hook decide
 *   return queueService.publish(...).then(() => {})  // async is fine: PUBACK waits for it
 * })
 * ```
 *
 * Rules: hooks run in array order. A publish/subscribe hook refuses by throwing (or rejecting); the
 * error message is sent to v5 clients as the Reason String, so keep it generic. Returning nothing
 * (synchronously) keeps the fast path free of promises. A subscribe hook may return a replacement
 * subscription, `null` to negate it, or a copy with `refused: { reasonCode, reasonString }` to negate it
 * with a specific SUBACK reason code and Reason String (aedes patch 032). A forward hook is synchronous and returns the packet to send
 * (possibly a modified copy) or `null` to drop it for that client.
 */
import type { AedesPublishPacket, Client, PublishPacket, Subscription } from 'aedes'

export type AuthorizePublishHook = (client: Client | null, packet: PublishPacket) => void | Promise<void>
export type AuthorizeSubscribeHook = (
  client: Client,
  subscription: Subscription,
) => void | Subscription | null | Promise<void | Subscription | null>
export type AuthorizeForwardHook = (client: Client, packet: AedesPublishPacket) => AedesPublishPacket | null

export interface BrokerHooks {
  authorizePublish: AuthorizePublishHook[]
  authorizeSubscribe: AuthorizeSubscribeHook[]
  authorizeForward: AuthorizeForwardHook[]
}

/** A refusal from a hook, sent to v5 clients as the Reason String. */
export class NotAuthorizedError extends Error {
  readonly code = 'NOT_AUTHORIZED'
  constructor(message = 'not authorized') {
    super(message)
    this.name = 'NotAuthorizedError'
  }
}

function isPromise<T>(v: unknown): v is Promise<T> {
  return typeof v === 'object' && v !== null && typeof (v as { then?: unknown }).then === 'function'
}

function toError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err))
}

/** aedes `authorizePublish` that runs every hook; stays synchronous while hooks do. */
export function composePublish(hooks: AuthorizePublishHook[]) {
  return function authorizePublish(
    client: Client | null,
    packet: PublishPacket,
    callback: (error?: Error | null) => void,
  ): void {
    const step = (i: number): void => {
      for (; i < hooks.length; i++) {
        let result: void | Promise<void>
        try {
          result = hooks[i]?.(client, packet)
        } catch (err) {
          callback(toError(err))
          return
        }
        if (isPromise(result)) {
          const next = i + 1
          result.then(
            () => step(next),
            (err: unknown) => callback(toError(err)),
          )
          return
        }
      }
      callback(null)
    }
    step(0)
  }
}

/** aedes `authorizeSubscribe` that threads the subscription through every hook. */
export function composeSubscribe(hooks: AuthorizeSubscribeHook[]) {
  return function authorizeSubscribe(
    client: Client,
    subscription: Subscription,
    callback: (error: Error | null, subscription?: Subscription | null) => void,
  ): void {
    const step = (i: number, sub: Subscription): void => {
      for (; i < hooks.length; i++) {
        let result: ReturnType<AuthorizeSubscribeHook>
        try {
          result = hooks[i]?.(client, sub)
        } catch (err) {
          callback(toError(err))
          return
        }
        if (isPromise<void | Subscription | null>(result)) {
          const next = i + 1
          result.then(
            (r) => (r === null ? callback(null, null) : step(next, r ?? sub)),
            (err: unknown) => callback(toError(err)),
          )
          return
        }
        if (result === null) {
          callback(null, null)
          return
        }
        if (result !== undefined) sub = result
      }
      callback(null, sub)
    }
    step(0, subscription)
  }
}

/** aedes `authorizeForward`: each hook sees the previous hook's packet; `null` drops it. */
export function composeForward(hooks: AuthorizeForwardHook[]) {
  return function authorizeForward(client: Client, packet: AedesPublishPacket): AedesPublishPacket | null {
    let current: AedesPublishPacket | null = packet
    for (const hook of hooks) {
      if (current === null) return null
      current = hook(client, current)
    }
    return current
  }
}

/**
 * [MQTT-4.7.2-1] Topics starting with `$` are for the server. Clients may not publish to `$SYS/`
 * (aedes' default hook does the same; ours replaces it, so we keep the rule).
 */
export const refuseSysPublish: AuthorizePublishHook = (_client, packet) => {
  if (packet.topic.startsWith('$SYS/') || packet.topic === '$SYS') {
    throw new NotAuthorizedError('publishing to $SYS/ is not allowed')
  }
}

/**
 * `$share/...` is a subscription syntax, not a topic (§4.8.2). A publish to it would only reach the
 * stored shared subscriptions of offline sessions, literally; refuse it.
 */
export const refuseSharePublish: AuthorizePublishHook = (_client, packet) => {
  if (packet.topic.startsWith('$share/')) {
    throw new NotAuthorizedError('publishing to $share/ is not allowed')
  }
}

/**
 * [MQTT-3.1.3-9] The Will Delay Interval is a property of the will, not of its PUBLISH: aedes copies
 * the will's properties onto the PUBLISH it sends, and a v5 receiver would see a property a PUBLISH
 * cannot carry. aedes runs `authorizePublish` on the will (both of its will paths) just before
 * publishing that same object, so this hook removes the property there. A client's own PUBLISH never
 * has it (mqtt-packet does not decode it on a PUBLISH).
 */
export const stripWillDelayInterval: AuthorizePublishHook = (_client, packet) => {
  const properties = packet.properties as { willDelayInterval?: number } | undefined
  if (properties?.willDelayInterval !== undefined) delete properties.willDelayInterval
}
