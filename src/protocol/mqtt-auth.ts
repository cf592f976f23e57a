/**
 * MQTT authentication and authorization: aedes' `authenticate` plus one `authorizePublish` and one
 * `authorizeSubscribe` hook that apply the ACLs of src/auth/acl.ts. docs/security.md is the user
 * contract.
 *
 * - CONNECT with a user name: the password must match the user's scrypt hash, else CONNACK 0x86
 *   (v5) / return code 4 (3.1.1). Unknown names cost one scrypt too (no enumeration by timing).
 * - CONNECT without user name and password (anonymous): admitted per `auth.allowAnonymous` (by default
 *   only from a loopback address), else 0x87 / 5. A password without a user name is 0x86 / 4.
 * - A Will Message the client may not publish refuses the CONNECT with 0x87 / 5 (as mosquitto does);
 *   aedes publishes wills of a crashed node with no client, which this check makes safe to allow.
 * - PUBLISH needs `publish` on its topic; a `$queue/<name>/$ack|$nack|$reject|$extend` settle needs
 *   `settle` on `$queue/<name>`. Denied: v5 QoS 1/2 gets 0x87 in PUBACK/PUBREC and the connection
 *   stays; v5 QoS 0 is dropped; 3.1.1 is disconnected (it has no negative PUBACK, [MQTT-3.3.5-2]).
 * - SUBSCRIBE needs `subscribe` covering the whole filter (`$share/<group>/` stripped). Denied: SUBACK
 *   0x87 (v5) / 0x80 (3.1.1), the connection stays.
 *
 * The hooks must run before the `$queue/` adapter's hooks, which store the message and join consumer
 * groups: startServer attaches this before any extension.
 */
import { isLoopbackAddress } from '../net/loopback.js'
import type { Aedes, AuthenticateError, Client, PublishPacket, Subscription } from 'aedes'
import { Acl, AclActions, unsharedFilter, type AclAction, type AclSubject } from '../auth/acl.js'
import { decoyHash, parsePasswordHash, verifyPassword, type ScryptHash } from '../auth/password.js'
import type { AuthConfig } from '../config/index.js'
import type { Logger } from '../observability/logger.js'
import { NotAuthorizedError, type BrokerHooks } from './hooks.js'
import { parseQueueTopic, QUEUE_PREFIX } from './queue-topics.js'

/** CONNACK return codes of MQTT 3.1.1; aedes maps them to the v5 reason codes 0x86 / 0x87. */
const ConnackCodes = {
  badUsernameOrPassword: 4,
  notAuthorized: 5,
} as const

export interface MqttAuthBroker {
  readonly aedes: Aedes
  readonly hooks: BrokerHooks
}

/** Who a connection authenticated as; kept per aedes client. */
interface Identity extends AclSubject {
  readonly acl: Acl
}

interface User {
  readonly hash: ScryptHash
  readonly acl: Acl
}

/** The peer address: the TCP socket's, or for WebSocket the upgrade request's socket. */
function remoteAddressOf(client: Client): string | undefined {
  const conn = client.conn as { remoteAddress?: unknown }
  if (typeof conn.remoteAddress === 'string') return conn.remoteAddress
  return client.req?.socket.remoteAddress
}

function connectError(returnCode: AuthenticateError['returnCode'], message: string): AuthenticateError {
  const error = new Error(message) as AuthenticateError
  error.returnCode = returnCode
  return error
}

/** The ACL action and topic a PUBLISH asks for: settles are checked on their queue's topic. */
export function publishRequest(topic: string): { action: AclAction; topic: string } {
  const queueTopic = parseQueueTopic(topic)
  if (queueTopic?.kind === 'settle') {
    return { action: AclActions.settle, topic: `${QUEUE_PREFIX}${queueTopic.queue}` }
  }
  return { action: AclActions.publish, topic }
}

/**
 * Installs authentication on `broker.aedes` and pushes the ACL hooks onto `broker.hooks`. Call once,
 * before the queue adapter attaches and before the broker listens.
 */
export function attachMqttAuth(broker: MqttAuthBroker, auth: AuthConfig, logger: Logger): void {
  const users = new Map<string, User>()
  for (const user of auth.users) {
    users.set(user.username, { hash: parsePasswordHash(user.passwordHash), acl: new Acl(user.acl) })
  }
  const anonymousAcl = new Acl(auth.anonymousAcl)
  const decoy = decoyHash()
  const identities = new WeakMap<Client, Identity>()

  const deny = (client: Client, identity: AclSubject | undefined, action: AclAction, topic: string) => {
    logger.warn(
      { clientId: client.id, username: identity?.username ?? null, topic, action },
      'not authorized',
    )
  }

  /** Admits the connection as `identity` unless its Will Message is not allowed. */
  const admit = (
    client: Client,
    identity: Identity,
    done: (error: AuthenticateError | null, success: boolean | null) => void,
  ): void => {
    // aedes sets `_will` from the CONNECT before calling authenticate.
    const will = (client as Client & { _will?: { topic?: string } | null })._will
    if (will?.topic !== undefined) {
      const request = publishRequest(will.topic)
      if (!identity.acl.allows(identity, request.action, request.topic)) {
        deny(client, identity, request.action, request.topic)
        done(connectError(ConnackCodes.notAuthorized, 'not authorized to publish the will'), false)
        return
      }
    }
    identities.set(client, identity)
    done(null, true)
  }

  broker.aedes.authenticate = (client, username, password, done) => {
    if (username === undefined && password === undefined) {
      const address = remoteAddressOf(client)
      const allowed = auth.allowAnonymous === 'loopback' ? isLoopbackAddress(address) : auth.allowAnonymous
      if (!allowed) {
        logger.warn({ clientId: client.id, address }, 'anonymous connection refused')
        done(connectError(ConnackCodes.notAuthorized, 'anonymous connections are not allowed'), false)
        return
      }
      admit(client, { username: null, clientId: client.id, acl: anonymousAcl }, done)
      return
    }
    const user = username === undefined ? undefined : users.get(username)
    const refuse = () => {
      logger.warn({ clientId: client.id, username: username ?? null }, 'bad user name or password')
      done(connectError(ConnackCodes.badUsernameOrPassword, 'bad user name or password'), false)
    }
    if (username === undefined || password === undefined) {
      refuse()
      return
    }
    verifyPassword(password, user?.hash ?? decoy).then(
      (match) => {
        if (match && user !== undefined) admit(client, { username, clientId: client.id, acl: user.acl }, done)
        else refuse()
      },
      (err: unknown) => {
        logger.error({ err, clientId: client.id, username }, 'password check failed')
        done(connectError(ConnackCodes.badUsernameOrPassword, 'bad user name or password'), false)
      },
    )
  }

  broker.hooks.authorizePublish.push((client: Client | null, packet: PublishPacket) => {
    // No client: aedes publishing a will of a crashed node, checked when that client connected.
    if (client === null) return
    const identity = identities.get(client)
    const request = publishRequest(packet.topic)
    if (identity?.acl.allows(identity, request.action, request.topic) === true) return
    deny(client, identity, request.action, request.topic)
    throw new NotAuthorizedError()
  })

  broker.hooks.authorizeSubscribe.push((client: Client, sub: Subscription) => {
    const identity = identities.get(client)
    const filter = unsharedFilter(sub.topic)
    if (identity?.acl.allows(identity, AclActions.subscribe, filter) === true) return
    deny(client, identity, AclActions.subscribe, sub.topic)
    return null // SUBACK 0x87 (v5) / 0x80 (3.1.1); the connection stays
  })
}
