import { Duplex } from 'node:stream'
import { Socket } from 'node:net'
import { IncomingMessage } from 'node:http'
import { Client } from './client.js'
import type {
  AedesPublishPacket,
  ConnectPacket,
  ConnackPacket,
  Subscription,
  PingreqPacket,
  PublishPacket,
  PubrelPacket
} from './packet.js'
import { EventEmitter } from 'node:events'

type LastHearthbeatTimestamp = Date

export interface Brokers {
  [brokerId: string]: LastHearthbeatTimestamp;
}

export type Connection = Duplex | Socket

/* eslint no-unused-vars: 0 */
export const enum AuthErrorCode {
  UNNACCEPTABLE_PROTOCOL = 1,
  IDENTIFIER_REJECTED = 2,
  SERVER_UNAVAILABLE = 3,
  BAD_USERNAME_OR_PASSWORD = 4,
  NOT_AUTHORIZED = 5,
}

export type AuthenticateError = Error & { returnCode: AuthErrorCode }

type PreConnectHandler = (
  client: Client,
  packet: ConnectPacket,
  callback: (error: Error | null, success: boolean) => void
) => void

type AuthenticateHandler = (
  client: Client,
  username: Readonly<string | undefined>,
  password: Readonly<Buffer | undefined>,
  done: (error: AuthenticateError | null, success: boolean | null) => void
) => void

type AuthorizePublishHandler = (
  client: Client | null,
  packet: PublishPacket,
  callback: (error?: Error | null) => void
) => void

type AuthorizeSubscribeHandler = (
  client: Client,
  subscription: Subscription,
  callback: (error: Error | null, subscription?: Subscription | null) => void
) => void

type AuthorizeForwardHandler = (
  client: Client,
  packet: AedesPublishPacket
) => AedesPublishPacket | null | void

type PublishedHandler = (
  packet: AedesPublishPacket,
  client: Client,
  callback: (error?: Error | null) => void
) => void

type DecodeProtocolHandler = (
  client: Client,
  buffer: Buffer
) => any

export interface AedesOptions {
  mq?: any;
  id?: string;
  persistence?: any;
  concurrency?: number;
  heartbeatInterval?: number;
  connectTimeout?: number;
  drainTimeout?: number; // default: 60000 (60 seconds)
  keepaliveLimit?: number;
  queueLimit?: number;
  maxClientsIdLength?: number;
  maxTopicLevels?: number; // default: 100, clamped to [1, 100]
  decodeProtocol?: DecodeProtocolHandler;
  trustProxy?: boolean;
  trustedProxies?: string[];
  // MQTT 5.0 broker limits, advertised in CONNACK.
  topicAliasMaximum?: number; // max inbound topic alias; 0 disables (default: 0)
  maximumPacketSize?: number; // max accepted packet size in bytes; 0 = no limit (default: 0)
  receiveMaximum?: number; // advertised max in-flight QoS 1/2; 0 = not advertised (default: 0)
  sessionExpiryIntervalLimit?: number; // clamp (seconds) on requested Session Expiry Interval; 0 = no cap (default: 0)
  pendingSessionsLimit?: number; // cap on pending session-expiry / delayed-will entries; 0 = unlimited (default: 0)
  responseInformation?: string | null | ((client: Client) => string | undefined); // MQTT 5.0 Response Information returned in CONNACK on Request Response Information (null = disabled, the default)
  sharedSubscriptions?: boolean; // MQTT 5.0: accept `$share/` subscriptions and advertise them in CONNACK; the embedder dispatches (default: false)
  preConnect?: PreConnectHandler;
  authenticate?: AuthenticateHandler;
  authorizePublish?: AuthorizePublishHandler;
  authorizeSubscribe?: AuthorizeSubscribeHandler;
  authorizeForward?: AuthorizeForwardHandler;
  published?: PublishedHandler;
}

export class Aedes extends EventEmitter {
  id: Readonly<string>
  connectedClients: Readonly<number>
  closed: Readonly<boolean>
  brokers: Readonly<Brokers>

  constructor (option?: AedesOptions)
  handle: (stream: Connection, request?: IncomingMessage) => Client

  on (event: 'closed', listener: () => void): this
  on (
    event: 'client' | 'clientReady' | 'clientDisconnect' | 'keepaliveTimeout' | 'sessionExpired',
    listener: (client: Client) => void
  ): this

  on (
    event: 'sessionLimitReached',
    listener: (
      client: Client,
      info: { reason: 'sessionExpiry' | 'willDelay'; limit: number }
    ) => void
  ): this

  on (
    event: 'willDropped',
    listener: (client: Client, will: NonNullable<ConnectPacket['will']>) => void
  ): this

  on (
    event: 'clientError' | 'connectionError',
    listener: (client: Client, error: Error) => void
  ): this

  on (
    event: 'connackSent',
    listener: (packet: ConnackPacket, client: Client) => void
  ): this

  on (
    event: 'ping',
    listener: (packet: PingreqPacket, client: Client) => void
  ): this

  on (
    event: 'publish',
    listener: (packet: AedesPublishPacket, client: Client | null) => void
  ): this

  on (
    event: 'ack',
    listener: (packet: PublishPacket | PubrelPacket, client: Client) => void
  ): this

  on (
    event: 'subscribe',
    listener: (subscriptions: Subscription[], client: Client) => void
  ): this

  on (
    event: 'unsubscribe',
    listener: (unsubscriptions: string[], client: Client) => void
  ): this

  listen (): Promise<void>

  static createBroker (option?: AedesOptions): Promise<Aedes>

  publish (packet: PublishPacket, callback: (error?: Error) => void): void
  subscribe (
    topic: string,
    deliverfunc: (packet: AedesPublishPacket, callback: () => void) => void,
    callback: () => void
  ): void

  unsubscribe (
    topic: string,
    deliverfunc: (packet: AedesPublishPacket, callback: () => void) => void,
    callback: () => void
  ): void

  close (callback?: () => void): void

  preConnect: PreConnectHandler
  authenticate: AuthenticateHandler
  authorizePublish: AuthorizePublishHandler
  authorizeSubscribe: AuthorizeSubscribeHandler
  authorizeForward: AuthorizeForwardHandler
  published: PublishedHandler
}
