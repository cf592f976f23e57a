/** The typed shape of Spool's configuration: what every adapter receives once it is validated. */
import type { AclRule } from '../auth/acl.js'
import type { QueueSettings } from '../queue/types.js'

export const LogLevels = {
  fatal: 'fatal',
  error: 'error',
  warn: 'warn',
  info: 'info',
  debug: 'debug',
  trace: 'trace',
  silent: 'silent',
} as const
export type LogLevel = (typeof LogLevels)[keyof typeof LogLevels]

/** The validated, fully-defaulted configuration every adapter receives. */
export interface SpoolConfig {
  mqtt: {
    /** TCP port for MQTT; 0 picks a free port (logged at start). */
    port: number
    /** Address every listener (MQTT, WebSocket, HTTP) binds to. */
    host: string
    /** Unacknowledged QoS 1/2 PUBLISH a v5 client may send us (advertised; above it: DISCONNECT 0x93). */
    receiveMaximum: number
    /** Highest inbound Topic Alias a v5 client may use (advertised); 0 = no topic aliases. */
    topicAliasMaximum: number
    /** Server Keep Alive cap for v5 clients (seconds); 0 = no cap. 3.1.1 clients keep theirs. */
    maxKeepAliveSeconds: number
    /**
     * Largest packet accepted (bytes, advertised in CONNACK); above it: DISCONNECT 0x95 (3.1.1: closed).
     * Default 1 MiB; 0 = no limit (an explicit opt-out).
     */
    maximumPacketSize: number
  }
  ws: {
    /** MQTT over WebSocket port (path `/mqtt`); `null` = no WebSocket listener. 0 = free port. */
    port: number | null
  }
  http: {
    /** Health/metrics/API port; 0 picks a free port. */
    port: number
  }
  grpc: {
    /**
     * gRPC port (the admin service and cluster traffic), bound on `mqtt.host`; `null` = no gRPC
     * listener. 0 = free port. Required in a cluster.
     */
    port: number | null
  }
  /** Several nodes sharing the partitions of every queue (docs/cluster.md). */
  cluster: ClusterConfig
  /** Directory for all durable state (sessions, queues). Created if missing. */
  dataDir: string
  /** This broker's identity in logs, metrics and (later) the cluster. */
  nodeId: string
  log: { level: LogLevel }
  shutdown: {
    /** Upper bound for a graceful stop before the process is forced out. */
    timeoutMs: number
  }
  queues: {
    /** Settings for every queue not listed in `declared` (DEFAULT_QUEUE_SETTINGS + file overrides). */
    defaults: QueueSettings
    /** Queues declared in config, each fully resolved: DEFAULT_QUEUE_SETTINGS < defaults < own. */
    declared: Record<string, QueueSettings>
    /**
     * Whether a SUBSCRIBE without `consumer-group` joins the group named after its client id (an
     * implicit group, which expires after `implicitGroupExpiryMs`); false refuses it.
     */
    implicitGroups: boolean
  }
  /** MQTT authentication and ACLs (docs/security.md). */
  auth: AuthConfig
  /** The admin HTTP API (docs/admin-api.md). */
  admin: AdminConfig
  metrics: {
    /** Queues (and queue/group pairs) with labels of their own; the rest are `queue="_other"`. */
    maxQueueLabels: number
  }
}

export const RoutingModes = { proxy: 'proxy', direct: 'direct' } as const
export type RoutingMode = (typeof RoutingModes)[keyof typeof RoutingModes]

export interface ClusterConfig {
  /** etcd endpoints (`http://host:port`); empty = a single node, no cluster. */
  etcd: string[]
  /** Host name or address other nodes (and, in direct mode, clients) reach this node at. */
  advertise: string
  /** `proxy`: consumers on any node; `direct`: consumers connect to the owner of the partitions. */
  routing: RoutingMode
  /** TTL of the node's etcd lease: a node silent this long is dead, and stops serving by itself. */
  leaseTtlSeconds: number
  /** Key prefix in etcd; clusters sharing an etcd need different prefixes. */
  prefix: string
}

export interface AdminConfig {
  /**
   * Bearer token every `/api/v1` request must carry; `null` = no token, and the admin API then
   * answers loopback clients only.
   */
  token: string | null
}

/** One MQTT user from `auth.users`. */
export interface AuthUser {
  username: string
  /** `scrypt$N$r$p$salt$hash` (src/auth/password.ts), checked at load. */
  passwordHash: string
  /** `null` (no `acl` key) = may do everything; a list denies what it does not grant. */
  acl: AclRule[] | null
}

export interface AuthConfig {
  /**
   * CONNECT without user name and password: `loopback` (default) admits it only from a loopback
   * address (127.0.0.0/8, ::1); `true` from anywhere; `false` never.
   */
  allowAnonymous: boolean | 'loopback'
  users: AuthUser[]
  /** ACL of admitted anonymous clients; `null` = may do everything. */
  anonymousAcl: AclRule[] | null
}

/**
 * A raw, unvalidated config tree: what a JSON file holds, with env vars and CLI flags merged in as
 * strings. {@link validateConfig} turns it into a {@link SpoolConfig}.
 */
export type RawConfig = Record<string, unknown>
