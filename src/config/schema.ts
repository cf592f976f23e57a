/**
 * Spool's configuration: the typed shape, its defaults, and validation with field-named errors.
 * Loading (file, env, CLI and their precedence) lives in ./load.ts; this file knows no sources.
 */
import { hostname } from 'node:os'
import { queueNameProblem, type QueueSettingsOverrides } from '../queue/settings.js'
import { DEFAULT_QUEUE_SETTINGS, Orderings, type QueueSettings } from '../queue/types.js'
import { AclGrants, patternProblem, type AclRule } from '../auth/acl.js'
import { parsePasswordHash, PasswordHashError } from '../auth/password.js'

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

/** Settings a config file may give for queues: any subset, nested objects too. */
export type QueueSettingsOverride = QueueSettingsOverrides

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

/** Defaults before any file, env var or flag; `nodeId` is the machine's hostname. */
export function defaultConfig(): SpoolConfig {
  return {
    mqtt: {
      port: 1883,
      host: '0.0.0.0',
      receiveMaximum: 65535,
      topicAliasMaximum: 10,
      maxKeepAliveSeconds: 0,
      // 1 MiB, as EMQX: an unlimited default let any client make the broker buffer up to 256 MiB.
      maximumPacketSize: 1_048_576,
    },
    ws: { port: null },
    http: { port: 8080 },
    grpc: { port: null },
    cluster: { etcd: [], advertise: '127.0.0.1', routing: 'proxy', leaseTtlSeconds: 5, prefix: '/spool' },
    dataDir: './data',
    nodeId: hostname(),
    log: { level: 'info' },
    shutdown: { timeoutMs: 10_000 },
    queues: { defaults: cloneSettings(DEFAULT_QUEUE_SETTINGS), declared: {}, implicitGroups: true },
    auth: { allowAnonymous: 'loopback', users: [], anonymousAcl: null },
    admin: { token: null },
    metrics: { maxQueueLabels: 1000 },
  }
}

/** A config value that does not fit the schema. `field` is the dotted path, e.g. `mqtt.port`. */
export class ConfigError extends Error {
  readonly code = 'CONFIG_INVALID'
  constructor(
    readonly field: string,
    readonly expected: string,
    readonly value: unknown,
  ) {
    super(`${field} ${expected}, got ${formatValue(value)}`)
    this.name = 'ConfigError'
  }
}

function formatValue(value: unknown): string {
  if (value === undefined) return 'nothing'
  try {
    return JSON.stringify(value) ?? typeof value
  } catch {
    return typeof value
  }
}

/**
 * A raw, unvalidated config tree: what a JSON file holds, with env vars and CLI flags merged in as
 * strings. {@link validateConfig} turns it into a {@link SpoolConfig}.
 */
export type RawConfig = Record<string, unknown>

type Obj = Record<string, unknown>

function isObject(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

/** Reads an object-valued field; absent means empty. Rejects keys not in `allowed` (typo guard). */
function objectAt(raw: unknown, field: string, allowed: readonly string[]): Obj {
  if (raw === undefined) return {}
  if (!isObject(raw)) throw new ConfigError(field, 'must be an object', raw)
  for (const key of Object.keys(raw)) {
    if (!allowed.includes(key)) {
      throw new ConfigError(field === '' ? key : `${field}.${key}`, 'is not a known setting', raw[key])
    }
  }
  return raw
}

/** Integers may come from JSON (number) or env/CLI (decimal string). */
function integer(raw: unknown, field: string, min: number, max: number, fallback: number): number {
  if (raw === undefined) return fallback
  const n = typeof raw === 'string' && /^-?\d+$/.test(raw.trim()) ? Number(raw) : raw
  if (typeof n !== 'number' || !Number.isInteger(n) || n < min || n > max) {
    const range = max === Number.MAX_SAFE_INTEGER ? `>= ${min}` : `${min}-${max}`
    throw new ConfigError(field, `must be an integer ${range}`, raw)
  }
  return n
}

function numberAtLeast(raw: unknown, field: string, min: number, fallback: number): number {
  if (raw === undefined) return fallback
  const n = typeof raw === 'string' && raw.trim() !== '' ? Number(raw) : raw
  if (typeof n !== 'number' || !Number.isFinite(n) || n < min) {
    throw new ConfigError(field, `must be a number >= ${min}`, raw)
  }
  return n
}

function port(raw: unknown, field: string, fallback: number): number {
  return integer(raw, field, 0, 65535, fallback)
}

function nonEmptyString(raw: unknown, field: string, fallback: string): string {
  if (raw === undefined) return fallback
  if (typeof raw !== 'string' || raw.trim() === '')
    throw new ConfigError(field, 'must be a non-empty string', raw)
  return raw
}

function boolean(raw: unknown, field: string, fallback: boolean): boolean {
  if (raw === undefined) return fallback
  if (raw === true || raw === 'true') return true
  if (raw === false || raw === 'false') return false
  throw new ConfigError(field, 'must be true or false', raw)
}

function oneOf<T extends string>(raw: unknown, field: string, values: readonly T[], fallback: T): T {
  if (raw === undefined) return fallback
  if (typeof raw !== 'string' || !(values as readonly string[]).includes(raw)) {
    throw new ConfigError(field, `must be one of ${values.join(', ')}`, raw)
  }
  return raw as T
}

const NODE_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/
const MAX = Number.MAX_SAFE_INTEGER

function cloneSettings(s: QueueSettings): QueueSettings {
  return { ...s, durability: { ...s.durability }, retry: { ...s.retry } }
}

/** Validates a (partial) queue settings object at `field` and lays it over `base`. */
export function resolveQueueSettings(raw: unknown, field: string, base: QueueSettings): QueueSettings {
  const o = objectAt(raw, field, [
    'partitions',
    'ordering',
    'maxInflightPerPartition',
    'maxInflightPerConsumer',
    'deliveryTimeoutMs',
    'durability',
    'retry',
    'maxMessageBytes',
    'maxDepth',
    'groupExpiryMs',
    'implicitGroupExpiryMs',
  ])
  const d = objectAt(o.durability, `${field}.durability`, ['sync'])
  const r = objectAt(o.retry, `${field}.retry`, [
    'initialDelayMs',
    'factor',
    'maxDelayMs',
    'maxDeliveries',
    'totalTimeoutMs',
  ])
  const f = (name: string) => `${field}.${name}`
  return {
    partitions: integer(o.partitions, f('partitions'), 1, 4096, base.partitions),
    ordering: oneOf(o.ordering, f('ordering'), Object.values(Orderings), base.ordering),
    maxInflightPerPartition: integer(
      o.maxInflightPerPartition,
      f('maxInflightPerPartition'),
      1,
      65535,
      base.maxInflightPerPartition,
    ),
    maxInflightPerConsumer: integer(
      o.maxInflightPerConsumer,
      f('maxInflightPerConsumer'),
      1,
      65535,
      base.maxInflightPerConsumer,
    ),
    deliveryTimeoutMs: integer(o.deliveryTimeoutMs, f('deliveryTimeoutMs'), 1, MAX, base.deliveryTimeoutMs),
    durability: { sync: boolean(d.sync, f('durability.sync'), base.durability.sync) },
    retry: {
      initialDelayMs: integer(r.initialDelayMs, f('retry.initialDelayMs'), 0, MAX, base.retry.initialDelayMs),
      factor: numberAtLeast(r.factor, f('retry.factor'), 1, base.retry.factor),
      maxDelayMs: integer(r.maxDelayMs, f('retry.maxDelayMs'), 0, MAX, base.retry.maxDelayMs),
      maxDeliveries: integer(r.maxDeliveries, f('retry.maxDeliveries'), 1, MAX, base.retry.maxDeliveries),
      totalTimeoutMs: integer(r.totalTimeoutMs, f('retry.totalTimeoutMs'), 0, MAX, base.retry.totalTimeoutMs),
    },
    maxMessageBytes: integer(
      o.maxMessageBytes,
      f('maxMessageBytes'),
      1,
      256 * 1024 * 1024,
      base.maxMessageBytes,
    ),
    maxDepth: integer(o.maxDepth, f('maxDepth'), 1, MAX, base.maxDepth),
    groupExpiryMs: integer(o.groupExpiryMs, f('groupExpiryMs'), 0, MAX, base.groupExpiryMs),
    implicitGroupExpiryMs: integer(
      o.implicitGroupExpiryMs,
      f('implicitGroupExpiryMs'),
      0,
      MAX,
      base.implicitGroupExpiryMs,
    ),
  }
}

/** Queue names are MQTT topic names after `$queue/`: non-empty, no wildcards. */
function checkQueueName(name: string, field: string): void {
  const problem = queueNameProblem(name)
  if (problem !== undefined) throw new ConfigError(field, `must be a valid queue name (${problem})`, name)
}

/**
 * Validates a merged raw tree and fills in defaults. Throws {@link ConfigError} naming the first bad
 * field. Numbers and booleans may be strings (they come from env vars and flags).
 */
export function validateConfig(raw: RawConfig): SpoolConfig {
  const d = defaultConfig()
  const top = objectAt(raw, '', [
    'mqtt',
    'ws',
    'http',
    'grpc',
    'cluster',
    'dataDir',
    'nodeId',
    'log',
    'shutdown',
    'queues',
    'auth',
    'admin',
    'metrics',
  ])
  const mqtt = objectAt(top.mqtt, 'mqtt', [
    'port',
    'host',
    'receiveMaximum',
    'topicAliasMaximum',
    'maxKeepAliveSeconds',
    'maximumPacketSize',
  ])
  const ws = objectAt(top.ws, 'ws', ['port'])
  const http = objectAt(top.http, 'http', ['port'])
  const grpc = objectAt(top.grpc, 'grpc', ['port'])
  const log = objectAt(top.log, 'log', ['level'])
  const shutdown = objectAt(top.shutdown, 'shutdown', ['timeoutMs'])
  const queues = objectAt(top.queues, 'queues', ['defaults', 'declared', 'implicitGroups'])
  const metrics = objectAt(top.metrics, 'metrics', ['maxQueueLabels'])

  const nodeId = nonEmptyString(top.nodeId, 'nodeId', d.nodeId)
  if (!NODE_ID.test(nodeId)) {
    throw new ConfigError('nodeId', 'must be 1-64 characters of A-Z a-z 0-9 . _ -', nodeId)
  }

  const cluster = validateCluster(top.cluster, d.cluster)
  if (cluster.etcd.length > 0 && (grpc.port === null || grpc.port === undefined || grpc.port === '')) {
    throw new ConfigError(
      'grpc.port',
      'must be set in a cluster (cluster.etcd is set): nodes talk gRPC',
      null,
    )
  }

  const defaults = resolveQueueSettings(queues.defaults, 'queues.defaults', DEFAULT_QUEUE_SETTINGS)
  const declaredRaw = queues.declared === undefined ? {} : queues.declared
  if (!isObject(declaredRaw)) throw new ConfigError('queues.declared', 'must be an object', declaredRaw)
  const declared: Record<string, QueueSettings> = {}
  for (const [name, settings] of Object.entries(declaredRaw)) {
    const field = `queues.declared.${name}`
    checkQueueName(name, field)
    declared[name] = resolveQueueSettings(settings ?? {}, field, defaults)
  }

  return {
    mqtt: {
      port: port(mqtt.port, 'mqtt.port', d.mqtt.port),
      host: nonEmptyString(mqtt.host, 'mqtt.host', d.mqtt.host),
      receiveMaximum: integer(mqtt.receiveMaximum, 'mqtt.receiveMaximum', 1, 65535, d.mqtt.receiveMaximum),
      topicAliasMaximum: integer(
        mqtt.topicAliasMaximum,
        'mqtt.topicAliasMaximum',
        0,
        65535,
        d.mqtt.topicAliasMaximum,
      ),
      maxKeepAliveSeconds: integer(
        mqtt.maxKeepAliveSeconds,
        'mqtt.maxKeepAliveSeconds',
        0,
        65535,
        d.mqtt.maxKeepAliveSeconds,
      ),
      // 0 = no limit; otherwise at least a CONNECT's worth, at most the protocol's 268435460 bytes.
      maximumPacketSize:
        mqtt.maximumPacketSize === 0 || mqtt.maximumPacketSize === '0'
          ? 0
          : integer(
              mqtt.maximumPacketSize,
              'mqtt.maximumPacketSize',
              64,
              268_435_460,
              d.mqtt.maximumPacketSize,
            ),
    },
    ws: {
      port: ws.port === null || ws.port === undefined || ws.port === '' ? null : port(ws.port, 'ws.port', 0),
    },
    http: { port: port(http.port, 'http.port', d.http.port) },
    grpc: {
      port:
        grpc.port === null || grpc.port === undefined || grpc.port === ''
          ? null
          : port(grpc.port, 'grpc.port', 0),
    },
    cluster,
    dataDir: nonEmptyString(top.dataDir, 'dataDir', d.dataDir),
    nodeId,
    log: { level: oneOf(log.level, 'log.level', Object.values(LogLevels), d.log.level) },
    shutdown: {
      timeoutMs: integer(shutdown.timeoutMs, 'shutdown.timeoutMs', 100, 600_000, d.shutdown.timeoutMs),
    },
    queues: {
      defaults,
      declared,
      implicitGroups: boolean(queues.implicitGroups, 'queues.implicitGroups', d.queues.implicitGroups),
    },
    auth: validateAuth(top.auth),
    admin: validateAdmin(top.admin),
    metrics: {
      maxQueueLabels: integer(
        metrics.maxQueueLabels,
        'metrics.maxQueueLabels',
        1,
        100_000,
        d.metrics.maxQueueLabels,
      ),
    },
  }
}

function validateCluster(raw: unknown, d: ClusterConfig): ClusterConfig {
  const cluster = objectAt(raw, 'cluster', ['etcd', 'advertise', 'routing', 'leaseTtlSeconds', 'prefix'])
  // A list in a file; a comma-separated string from a flag or env var.
  const etcdRaw = cluster.etcd ?? []
  const etcdList = typeof etcdRaw === 'string' ? etcdRaw.split(',') : etcdRaw
  if (!Array.isArray(etcdList)) throw new ConfigError('cluster.etcd', 'must be a list of URLs', etcdRaw)
  const etcd = etcdList.map((item: unknown) => {
    const url = typeof item === 'string' ? item.trim() : item
    if (typeof url !== 'string' || !/^https?:\/\/[^/\s]+$/.test(url)) {
      throw new ConfigError('cluster.etcd', 'must list URLs like http://127.0.0.1:2379', item)
    }
    return url
  })
  const prefix = nonEmptyString(cluster.prefix, 'cluster.prefix', d.prefix)
  if (!/^\/[A-Za-z0-9._/-]*[^/]$/.test(prefix)) {
    throw new ConfigError('cluster.prefix', 'must start with / and not end with / (e.g. /spool)', prefix)
  }
  return {
    etcd,
    advertise: nonEmptyString(cluster.advertise, 'cluster.advertise', d.advertise),
    routing: oneOf(cluster.routing, 'cluster.routing', Object.values(RoutingModes), d.routing),
    leaseTtlSeconds: integer(cluster.leaseTtlSeconds, 'cluster.leaseTtlSeconds', 2, 300, d.leaseTtlSeconds),
    prefix,
  }
}

/** Shortest admin token accepted: a guessable token is worse than none (none = loopback only). */
const MIN_ADMIN_TOKEN_LENGTH = 16

function validateAdmin(raw: unknown): AdminConfig {
  const admin = objectAt(raw, 'admin', ['token'])
  if (admin.token === undefined || admin.token === null || admin.token === '') return { token: null }
  if (typeof admin.token !== 'string' || admin.token.trim().length < MIN_ADMIN_TOKEN_LENGTH) {
    // The value is not echoed: it is a secret.
    throw new ConfigError(
      'admin.token',
      `must be a string of at least ${MIN_ADMIN_TOKEN_LENGTH} characters (e.g. \`openssl rand -hex 32\`)`,
      '[redacted]',
    )
  }
  return { token: admin.token.trim() }
}

// ---- auth ----

function aclRules(raw: unknown, field: string): AclRule[] | null {
  if (raw === undefined || raw === null) return null
  if (!Array.isArray(raw)) throw new ConfigError(field, 'must be a list of { allow, topics } rules', raw)
  return raw.map((item: unknown, i) => {
    const f = `${field}[${i}]`
    const rule = objectAt(item, f, ['allow', 'topics'])
    if (rule.allow === undefined) throw new ConfigError(`${f}.allow`, 'is required', undefined)
    const allow = oneOf(rule.allow, `${f}.allow`, Object.values(AclGrants), AclGrants.all)
    if (!Array.isArray(rule.topics) || rule.topics.length === 0) {
      throw new ConfigError(`${f}.topics`, 'must be a non-empty list of topic patterns', rule.topics)
    }
    const topics = rule.topics.map((pattern: unknown, j) => {
      const problem = typeof pattern === 'string' ? patternProblem(pattern) : 'must be a string'
      if (problem !== undefined) throw new ConfigError(`${f}.topics[${j}]`, problem, pattern)
      return pattern as string
    })
    return { allow, topics }
  })
}

function validateAuth(raw: unknown): AuthConfig {
  const auth = objectAt(raw, 'auth', ['allowAnonymous', 'users', 'anonymousAcl'])
  const allowAnonymous =
    auth.allowAnonymous === 'loopback' || auth.allowAnonymous === undefined
      ? 'loopback'
      : boolean(auth.allowAnonymous, 'auth.allowAnonymous', false)
  const usersRaw = auth.users ?? []
  if (!Array.isArray(usersRaw)) throw new ConfigError('auth.users', 'must be a list of users', usersRaw)
  const seen = new Set<string>()
  const users = usersRaw.map((item: unknown, i): AuthUser => {
    const f = `auth.users[${i}]`
    const user = objectAt(item, f, ['username', 'passwordHash', 'acl'])
    if (typeof user.username !== 'string' || user.username === '') {
      throw new ConfigError(`${f}.username`, 'must be a non-empty string', user.username)
    }
    if (seen.has(user.username)) throw new ConfigError(`${f}.username`, 'is listed twice', user.username)
    seen.add(user.username)
    if (typeof user.passwordHash !== 'string') {
      throw new ConfigError(`${f}.passwordHash`, 'must be a string made by `spool passwd`', '[redacted]')
    }
    try {
      parsePasswordHash(user.passwordHash)
    } catch (err) {
      if (!(err instanceof PasswordHashError)) throw err
      // The value is not echoed: it may be a password typed in by mistake.
      throw new ConfigError(`${f}.passwordHash`, err.message, '[redacted]')
    }
    return { username: user.username, passwordHash: user.passwordHash, acl: aclRules(user.acl, `${f}.acl`) }
  })
  return { allowAnonymous, users, anonymousAcl: aclRules(auth.anonymousAcl, 'auth.anonymousAcl') }
}
