/**
 * The composition root: builds a whole Spool node from its config, each part in order and each handed
 * only what it uses, and stops it in the reverse order. main.ts calls it after parsing the command
 * line; tests call it directly (port 0, temp data dir). Nothing else imports this module.
 *
 * Start-up order:
 *  1. logger, metrics, and the ops HTTP server (`/healthz`, `/readyz`, `/metrics`), bound at once so
 *     that `/healthz` answers (and `/readyz` says 503) while storage loads;
 *  2. storage under the data dir: the queue store (`queues/`), the forward buffer (`forward/`, in a
 *     cluster), the session store (`sessions/`, opened by aedes in step 5);
 *  3. the queue core on the queue store (loads the queues);
 *  4. with `cluster.etcd`: the cluster node on the core's partition-ownership port (not joined yet);
 *  5. the MQTT edge: aedes on the session store, authentication and ACLs, then the `$queue/` adapter
 *     on the core (or the cluster's routing), broker figures for the metrics;
 *  6. the admin API over the core: HTTP (`/api/v1`) and, with `grpc.port`, gRPC;
 *  7. listeners: gRPC, MQTT (+ WebSocket); then the cluster joins etcd with the bound ports.
 * Stop, the reverse: listeners (v5 clients get DISCONNECT 0x8B), the edge, the cluster (hands its
 * partitions over within 70 % of `shutdown.timeoutMs`), the core, storage, HTTP.
 */
import { mkdir } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { attachAdminGrpcService } from './admin/grpc-server.js'
import { attachAdminHttpApi } from './admin/http-api.js'
import { AdminService } from './admin/service.js'
import { registerClusterMetrics } from './cluster/metrics.js'
import { createClusterNode, type ClusterNode } from './cluster/node.js'
import type { SpoolConfig } from './config/index.js'
import { closeGrpc, createGrpcServer, listenGrpc } from './net/grpc.js'
import { createOpsHttpServer, type OpsHttpServer } from './observability/http.js'
import { createLogger, type Logger } from './observability/logger.js'
import { SpoolMetrics } from './observability/metrics.js'
import { attachBrokerStats } from './protocol/broker-stats.js'
import { createMqttBroker, type MqttBroker } from './protocol/broker.js'
import type { BrokerHooks } from './protocol/hooks.js'
import { attachMqttAuth } from './protocol/mqtt-auth.js'
import { LevelPersistence } from './protocol/persistence/level-persistence.js'
import { attachQueues, type QueueAdapter } from './protocol/queue-adapter.js'
import { QueueManager } from './queue/manager.js'
import type { QueueService } from './queue/types.js'
import { ForwardBuffer } from './storage/forward/forward-buffer.js'
import { LevelQueueStore } from './storage/level-store.js'

/** Share of `shutdown.timeoutMs` a cluster node spends handing its partitions over; the rest is for closing. */
const LEAVE_SHARE = 0.7

export interface StartOptions {
  /** Defaults to a pino logger on stdout at `config.log.level`. */
  logger?: Logger
  /**
   * What the `$queue/` MQTT adapter talks to instead of the queue core (or the cluster's routing).
   * For adapter tests with a fake core; the real core is still built (and serves the admin API).
   */
  queueService?: QueueService
}

export interface RunningServer {
  readonly config: SpoolConfig
  readonly logger: Logger
  readonly dataDir: string
  readonly aedes: MqttBroker['aedes']
  readonly hooks: BrokerHooks
  readonly broker: MqttBroker
  readonly http: OpsHttpServer
  /** The `$queue/` MQTT adapter (its consumer count, for tests). */
  readonly queueAdapter: QueueAdapter
  /** Bound ports (the real ones when config asked for 0). */
  readonly mqttPort: number
  readonly wsPort: number | null
  readonly httpPort: number
  /** null when `grpc.port` is not set. */
  readonly grpcPort: number | null
  /** Graceful stop: stop accepting, DISCONNECT 0x8B to v5 clients, close aedes, flush storage. Idempotent. */
  close(): Promise<void>
}

export async function startServer(config: SpoolConfig, options: StartOptions = {}): Promise<RunningServer> {
  // 1. Logger, metrics, ops HTTP.
  const logger = options.logger ?? createLogger({ level: config.log.level, nodeId: config.nodeId })
  const metrics = new SpoolMetrics({ maxQueueLabels: config.metrics.maxQueueLabels })
  const state = { storageOpen: false, listening: false }
  let cluster: ClusterNode | null = null
  const http = createOpsHttpServer({
    logger,
    readiness: () => ({
      listeners: state.listening,
      storage: state.storageOpen,
      ...(cluster === null ? {} : { cluster: cluster.isReady() }),
    }),
  })
  http.route('GET', '/metrics', async () => ({
    status: 200,
    body: await metrics.exposition(),
    contentType: metrics.contentType,
  }))
  const httpPort = await http.listen(config.http.port, config.mqtt.host)
  logger.info({ listener: 'http', host: config.mqtt.host, port: httpPort }, 'listening')

  const clustered = config.cluster.etcd.length > 0
  const grpc = config.grpc.port === null ? null : createGrpcServer()
  let buffer: ForwardBuffer | null = null
  let manager: QueueManager | null = null
  let sessions: LevelPersistence | null = null
  let broker: MqttBroker | null = null
  let adapter: QueueAdapter | null = null

  const stop = async (): Promise<void> => {
    state.listening = false
    // Listeners. Peer Consume streams end first: a graceful gRPC stop would wait for them. Running
    // admin calls finish (bounded) before the queue core they use closes.
    cluster?.endStreams()
    if (grpc !== null) await closeGrpc(grpc)
    if (broker !== null) await broker.close()
    // The edge, then the cluster (most of the stop budget goes to handing partitions over), the core.
    adapter?.close()
    if (cluster !== null) {
      await cluster.leave(Math.floor(config.shutdown.timeoutMs * LEAVE_SHARE))
      await cluster.close()
    }
    if (manager !== null) await manager.close()
    // Storage, then HTTP last.
    if (buffer !== null) await buffer.close()
    if (sessions !== null && state.storageOpen) {
      state.storageOpen = false
      await sessions.destroy()
    }
    await http.close()
  }

  try {
    // 2. Storage.
    const dataDir = resolve(config.dataDir)
    await mkdir(dataDir, { recursive: true })
    const store = new LevelQueueStore(join(dataDir, 'queues'))
    if (clustered) {
      const forward = new ForwardBuffer(join(dataDir, 'forward'))
      await forward.open()
      buffer = forward
    }
    sessions = new LevelPersistence({ path: join(dataDir, 'sessions'), dupOnResume: true })

    // 3. The queue core.
    const queueLogger = logger.child({ component: 'queues' })
    const core = new QueueManager({
      store,
      defaults: config.queues.defaults,
      declared: config.queues.declared,
      logger: queueLogger,
      observer: metrics.queueObserver,
      servesAllPartitions: !clustered,
      implicitGroups: config.queues.implicitGroups,
    })
    await core.open()
    manager = core
    metrics.watchQueues(core.admin)

    // 4. The cluster.
    if (buffer !== null) {
      if (grpc === null) throw new Error('a cluster node needs grpc.port')
      cluster = createClusterNode({
        nodeId: config.nodeId,
        config: config.cluster,
        declaredQueues: Object.keys(config.queues.declared),
        manager: core,
        buffer,
        grpc,
        logger: queueLogger,
      })
      registerClusterMetrics(metrics.registry, cluster.figures)
    }

    // 5. The MQTT edge.
    broker = await createMqttBroker({
      nodeId: config.nodeId,
      host: config.mqtt.host,
      mqttPort: config.mqtt.port,
      wsPort: config.ws.port,
      persistence: sessions,
      logger,
      limits: config.mqtt,
    })
    state.storageOpen = true // aedes ran sessions.setup(), which opened and loaded LevelDB
    const openSessions = sessions
    metrics.watchBroker(attachBrokerStats(broker.aedes, () => openSessions.retainedCount))
    // Authentication and ACLs before the queues: hooks run in the order they were added, and the
    // queue publish hook stores the message, so a denied publish must be refused before it runs.
    attachMqttAuth(broker, config.auth, logger.child({ component: 'auth' }))
    adapter = attachQueues(broker, options.queueService ?? cluster?.queues ?? core, queueLogger)
    const aedes = broker.aedes
    cluster?.announceOwnershipWith((topic, payload) =>
      aedes.publish({ cmd: 'publish', topic, payload, qos: 0, retain: true, dup: false }, () => undefined),
    )

    // 6. The admin API.
    const clusterView = cluster
    const admin = new AdminService(
      core.admin,
      config.nodeId,
      clusterView === null ? undefined : () => clusterView.view(),
    )
    const adminOptions = { token: config.admin.token, logger: logger.child({ component: 'admin' }) }
    attachAdminHttpApi(http, admin, adminOptions)
    if (grpc !== null) attachAdminGrpcService(grpc, admin, adminOptions)

    // 7. Listeners.
    let grpcPort: number | null = null
    if (grpc !== null && config.grpc.port !== null) {
      grpcPort = await listenGrpc(grpc, config.mqtt.host, config.grpc.port)
      logger.info({ listener: 'grpc', host: config.mqtt.host, port: grpcPort }, 'listening')
    }
    const ports = await broker.listen()
    if (cluster !== null) {
      if (grpcPort === null) throw new Error('a cluster node needs grpc.port')
      await cluster.join({ mqttPort: ports.mqttPort, grpcPort })
    }
    state.listening = true
    logger.info(
      { dataDir, mqttPort: ports.mqttPort, wsPort: ports.wsPort, httpPort, grpcPort },
      'spool started',
    )

    let closing: Promise<void> | null = null
    return {
      config,
      logger,
      dataDir,
      aedes,
      hooks: broker.hooks,
      broker,
      http,
      queueAdapter: adapter,
      mqttPort: ports.mqttPort,
      wsPort: ports.wsPort,
      httpPort,
      grpcPort,
      close() {
        closing ??= stop().then(() => logger.info('spool stopped'))
        return closing
      },
    }
  } catch (err) {
    await stop().catch((closeErr: unknown) => logger.error({ err: closeErr }, 'cleanup after failed start'))
    throw err
  }
}
