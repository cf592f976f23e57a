/**
 * The MQTT edge: the aedes instance and its network listeners (TCP, WebSocket at `/mqtt`). With the
 * queue adapter, this is the only code that imports aedes.
 *
 * Lifecycle: {@link createMqttBroker} builds aedes on top of the given persistence (sessions are
 * loaded by then) without opening any port, so adapters can add hooks first; `listen()` opens the
 * ports; `close()` stops accepting, sends MQTT 5 DISCONNECT 0x8B (Server shutting down) to v5 clients,
 * closes 3.1.1 clients, and drops connections that never sent CONNECT.
 */
import { createServer as createNetServer, type Server as NetServer, type Socket } from 'node:net'
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { once, type EventEmitter } from 'node:events'
import { Aedes, type Client } from 'aedes'
import { WebSocketServer, createWebSocketStream } from 'ws'
import type { Logger } from '../observability/logger.js'
import {
  composeForward,
  composePublish,
  composeSubscribe,
  refuseSharePublish,
  refuseSysPublish,
  stripWillDelayInterval,
  type BrokerHooks,
} from './hooks.js'
import { SharedSubscriptions } from './shared-subscriptions.js'
import type { LevelPersistence } from './persistence/level-persistence.js'

export const WEBSOCKET_PATH = '/mqtt'

/**
 * Most topic levels a PUBLISH topic or SUBSCRIBE filter may have (aedes' `maxTopicLevels`, capped at
 * qlobber's default `max_words` of 100 that its router and the session persistence are built with).
 * More is refused by aedes (patch 033), never passed on (docs/conformance.md).
 */
export const MAX_TOPIC_LEVELS = 100

export interface MqttBrokerOptions {
  nodeId: string
  host: string
  mqttPort: number
  /** `null` = no WebSocket listener. */
  wsPort: number | null
  persistence: LevelPersistence
  logger: Logger
  /** MQTT 5 limits (config `mqtt.*`); see docs/conformance.md. Absent: aedes' defaults. */
  limits?: MqttLimits
}

/** The MQTT 5 limits Spool advertises in CONNACK and enforces (docs/configuration.md). */
export interface MqttLimits {
  /** Unacknowledged inbound QoS 1/2 PUBLISH per v5 client; one more gets DISCONNECT 0x93. */
  receiveMaximum: number
  /** Highest inbound Topic Alias; 0 = none. */
  topicAliasMaximum: number
  /** Server Keep Alive cap for v5 clients, seconds; 0 = none. */
  maxKeepAliveSeconds: number
  /** Largest inbound packet, bytes (config default 1 MiB); 0 = no limit. Larger: DISCONNECT 0x95. */
  maximumPacketSize: number
}

export interface MqttBroker {
  readonly aedes: Aedes
  /** Add authorization hooks here (see hooks.ts for how). */
  readonly hooks: BrokerHooks
  readonly shared: SharedSubscriptions
  /** Opens the listeners; resolves with the bound ports (useful with port 0). */
  listen(): Promise<{ mqttPort: number; wsPort: number | null }>
  /** True while listeners are open. */
  readonly listening: boolean
  close(): Promise<void>
}

/** aedes' error for an inbound packet above `maximumPacketSize` (lib/client.js rejectPacketTooLarge). */
interface PacketTooLargeError extends Error {
  size?: number
  maximumPacketSize?: number
}

function isPacketTooLarge(err: Error): err is PacketTooLargeError {
  return err.message === 'packet too large' && 'maximumPacketSize' in err
}

function portOf(server: NetServer | HttpServer): number {
  return (server.address() as AddressInfo).port
}

async function listenOn(server: NetServer | HttpServer, port: number, host: string): Promise<number> {
  server.listen(port, host)
  await once(server, 'listening')
  return portOf(server)
}

/**
 * Writes made to `socket` in one tick leave in one `writev` at the end of the tick, instead of one
 * syscall each. mqtt-packet already corks the pieces of one packet, but the queue adapter writes each
 * delivery with its own `write()`, and a group commit releases many deliveries and PUBACKs at once:
 * batching them cut the broker's CPU spent in socket writes (the largest native cost in its profile).
 * A write still returns false when the buffered bytes pass the high-water mark, so back-pressure
 * (aedes waits for 'drain') is unchanged.
 */
function corkPerTick(socket: Socket): void {
  const write = socket.write.bind(socket) as (chunk: unknown, encoding: unknown, callback: unknown) => boolean
  let corked = false
  const uncork = (): void => {
    corked = false
    socket.uncork()
  }
  // Fixed arity (write takes at most chunk, encoding, callback): no rest array per write; Writable
  // treats an undefined encoding or callback as one not given.
  socket.write = (chunk: unknown, encoding?: unknown, callback?: unknown): boolean => {
    if (!corked && !socket.destroyed) {
      corked = true
      socket.cork()
      process.nextTick(uncork)
    }
    return write(chunk, encoding, callback)
  }
}

function closeServer(server: NetServer | HttpServer): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()))
}

export async function createMqttBroker(options: MqttBrokerOptions): Promise<MqttBroker> {
  const { logger } = options
  const hooks: BrokerHooks = {
    authorizePublish: [stripWillDelayInterval, refuseSysPublish, refuseSharePublish],
    authorizeSubscribe: [],
    authorizeForward: [],
  }
  const aedes = await Aedes.createBroker({
    id: options.nodeId,
    persistence: options.persistence,
    // Patch 001: accept `$share/` subscriptions and advertise them; SharedSubscriptions dispatches.
    sharedSubscriptions: true,
    maxTopicLevels: MAX_TOPIC_LEVELS,
    ...(options.limits === undefined
      ? {}
      : {
          receiveMaximum: options.limits.receiveMaximum,
          topicAliasMaximum: options.limits.topicAliasMaximum,
          keepaliveLimit: options.limits.maxKeepAliveSeconds,
          maximumPacketSize: options.limits.maximumPacketSize,
        }),
    authorizePublish: composePublish(hooks.authorizePublish),
    authorizeSubscribe: composeSubscribe(hooks.authorizeSubscribe),
    authorizeForward: composeForward(hooks.authorizeForward),
  })
  const shared = new SharedSubscriptions(aedes)
  // §4.8.2: a member whose session ends hands its unacknowledged shared messages to another member.
  aedes.on('clientDisconnect', (client: Client) => shared.memberGone(client))

  // aedes emits 'error' for persistence failures; an unhandled 'error' event would crash the process.
  const emitter: EventEmitter = aedes
  aedes.on('clientError', (client: Client, err: Error) => {
    if (isPacketTooLarge(err)) return logPacketTooLarge(client, err)
    logger.debug({ clientId: client.id, err: err.message }, 'client error')
  })
  // [MQTT-3.2.2-15] aedes rejects an inbound packet above `maximumPacketSize` (v5: DISCONNECT 0x95;
  // 3.1.1 or before CONNACK: closed) and reports it as a client or connection error.
  const logPacketTooLarge = (client: Client, err: PacketTooLargeError): void => {
    logger.warn(
      {
        clientId: client.id,
        protocolVersion: client.version,
        bytes: err.size,
        max: err.maximumPacketSize,
        node: options.nodeId,
      },
      client.version === 5
        ? 'packet too large: DISCONNECT 0x95 [MQTT-3.2.2-15]'
        : 'packet too large: connection closed [MQTT-3.2.2-15]',
    )
  }
  // Patch 028: a PUBLISH larger than the client's Maximum Packet Size is discarded for that client.
  emitter.on('publishTooLarge', (client: Client, packet: { topic: string }, size: number) => {
    logger.warn(
      {
        clientId: client.id,
        topic: packet.topic,
        bytes: size,
        max: client.maximumPacketSize,
        node: options.nodeId,
      },
      'publish dropped for a client: exceeds its Maximum Packet Size [MQTT-3.1.2-25]',
    )
  })
  // Patch 033: a topic (filter) over aedes' level limit is refused (v5: PUBACK/PUBREC 0x90 or
  // SUBACK 0x8F with a Reason String; 3.1.1: PUBLISH closes the connection, SUBACK 0x80).
  emitter.on('topicRefused', (client: Client, packetType: string, topic: string, reason: string) => {
    logger.warn(
      {
        clientId: client.id,
        packet: packetType,
        topic: topic.length > 100 ? `${topic.slice(0, 100)}…` : topic,
        topicBytes: Buffer.byteLength(topic),
        reason,
        node: options.nodeId,
      },
      `${packetType} refused: topic has more than ${MAX_TOPIC_LEVELS} levels`,
    )
  })
  aedes.on('connectionError', (client: Client, err: Error) => {
    if (isPacketTooLarge(err)) return logPacketTooLarge(client, err)
    logger.debug({ err: err.message }, 'connection error')
  })
  emitter.on('error', (err: Error) => logger.error({ err }, 'broker error'))

  // Every socket, including ones that never send CONNECT (aedes does not track those).
  const sockets = new Set<{ destroy(): void }>()
  const track = (s: { destroy(): void; once(e: 'close', f: () => void): unknown }) => {
    sockets.add(s)
    s.once('close', () => sockets.delete(s))
  }

  const tcp = createNetServer((socket: Socket) => {
    // Nagle's algorithm holds small MQTT packets back; measured 3.7x throughput without it.
    socket.setNoDelay(true)
    corkPerTick(socket)
    track(socket)
    aedes.handle(socket)
  })
  let httpForWs: HttpServer | null = null
  let wss: WebSocketServer | null = null
  let listening = false

  return {
    aedes,
    hooks,
    shared,
    get listening() {
      return listening
    },
    async listen() {
      const mqttPort = await listenOn(tcp, options.mqttPort, options.host)
      logger.info({ listener: 'mqtt', host: options.host, port: mqttPort }, 'listening')
      let wsPort: number | null = null
      if (options.wsPort !== null) {
        httpForWs = createHttpServer((_req, res) => {
          res.writeHead(404).end()
        })
        wss = new WebSocketServer({ server: httpForWs, path: WEBSOCKET_PATH })
        wss.on('connection', (ws, req) => {
          const stream = createWebSocketStream(ws)
          stream.on('error', (err) => logger.debug({ err: err.message }, 'websocket stream error'))
          track(stream)
          aedes.handle(stream, req)
        })
        wsPort = await listenOn(httpForWs, options.wsPort, options.host)
        logger.info({ listener: 'ws', host: options.host, port: wsPort, path: WEBSOCKET_PATH }, 'listening')
      }
      listening = true
      return { mqttPort, wsPort }
    },
    async close() {
      listening = false
      // 1. Stop accepting. (server.close resolves only when all connections ended; don't wait yet.)
      const closed: Array<Promise<void>> = []
      if (tcp.listening) closed.push(closeServer(tcp))
      if (wss !== null) {
        const w = wss
        closed.push(new Promise((resolve) => w.close(() => resolve())))
      }
      if (httpForWs?.listening === true) closed.push(closeServer(httpForWs))
      // 2. aedes.close() sends DISCONNECT 0x8B to v5 clients and closes every registered client.
      await new Promise<void>((resolve) => aedes.close(() => resolve()))
      // 3. Connections that never completed CONNECT are not aedes clients: drop them.
      for (const s of sockets) s.destroy()
      await Promise.all(closed)
    },
  }
}
