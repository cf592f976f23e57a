/**
 * Spool's configuration: its defaults, and validation with field-named errors. The shape is in
 * ./types.ts, the field readers in ./fields.ts, the sections in ./auth.ts, ./cluster.ts and
 * ./queues.ts. Loading (file, env, CLI and their precedence) lives in ./load.ts; this file knows no
 * sources.
 */
import { hostname } from 'node:os'
import { DEFAULT_QUEUE_SETTINGS, mergeQueueSettings } from '../queue/settings.js'
import { validateAdmin, validateAuth } from './auth.js'
import { validateCluster } from './cluster.js'
import { ConfigError, integer, nonEmptyString, objectAt, oneOf, port } from './fields.js'
import { validateQueues } from './queues.js'
import { LogLevels, type RawConfig, type SpoolConfig } from './types.js'

const NODE_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/

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
    queues: { defaults: mergeQueueSettings(DEFAULT_QUEUE_SETTINGS, {}), declared: {}, implicitGroups: true },
    auth: { allowAnonymous: 'loopback', users: [], anonymousAcl: null },
    admin: { token: null },
    metrics: { maxQueueLabels: 1000 },
  }
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
    queues: validateQueues(top.queues, d.queues),
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
