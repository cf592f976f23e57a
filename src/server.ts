/**
 * Starts a whole Spool node in-process: data dir, logger, session storage, aedes, listeners, HTTP.
 * main.ts calls this after parsing the command line; integration tests call it directly (port 0,
 * temp data dir). Shutdown order is the reverse of start-up.
 */
import { mkdir } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import type { SpoolConfig } from './config/index.js'
import { createLogger, type Logger } from './observability/logger.js'
import { createOpsHttpServer, type OpsHttpServer } from './observability/http.js'
import { SpoolMetrics } from './observability/metrics.js'
import { createMqttBroker, type MqttBroker } from './protocol/broker.js'
import { attachBrokerStats } from './protocol/broker-stats.js'
import type { BrokerHooks } from './protocol/hooks.js'
import { LevelPersistence } from './protocol/persistence/level-persistence.js'
import { attachMqttAuth } from './protocol/mqtt-auth.js'
import { queuesExtension } from './queues.js'
import { closeGrpc, createGrpcServer, listenGrpc, type GrpcServer } from './net/grpc.js'

/** What an extension (e.g. the queue adapter) gets to wire itself in before clients can connect. */
export interface ServerContext {
  readonly config: SpoolConfig
  readonly logger: Logger
  /** Absolute data directory; created before extensions run. Put your state in a subdirectory. */
  readonly dataDir: string
  readonly aedes: MqttBroker['aedes']
  readonly hooks: BrokerHooks
  readonly http: OpsHttpServer
  /** Prometheus metrics served on `/metrics`: give the queue core its observer, register sources. */
  readonly metrics: SpoolMetrics
  /** The gRPC listener (`grpc.port`) to add services to; null when it is off. Binds after the extensions. */
  readonly grpc: GrpcServer | null
  /** Adds a named check to `/readyz` (the node is ready when every check is true). */
  addReadinessCheck(name: string, check: () => boolean): void
  /** Runs once every listener is bound, with the real ports (e.g. to announce them to a cluster). */
  onListening(listener: (ports: BoundPorts) => Promise<void>): void
  /** Runs first when the node stops, before any listener closes (e.g. to end long-lived streams). */
  onStopping(listener: () => void): void
}

export interface BoundPorts {
  readonly mqttPort: number
  readonly wsPort: number | null
  readonly httpPort: number
  readonly grpcPort: number | null
}

/**
 * Runs after aedes and session storage are open and before any listener accepts a connection.
 * Return a function to be awaited at shutdown (after clients are disconnected, before session
 * storage closes), e.g. to flush a queue store.
 */
export type ServerExtension = (ctx: ServerContext) => Promise<(() => Promise<void>) | void>

export interface StartOptions {
  /** Defaults to a pino logger on stdout at `config.log.level`. */
  logger?: Logger
  /** The `$queue/` namespace; defaults to the durable queues on LevelDB. Unit tests swap in their own. */
  queues?: ServerExtension
  /** Wired in order after the queues; see {@link ServerExtension}. */
  extensions?: ServerExtension[]
}

export interface RunningServer {
  readonly config: SpoolConfig
  readonly logger: Logger
  readonly dataDir: string
  readonly aedes: MqttBroker['aedes']
  readonly hooks: BrokerHooks
  readonly broker: MqttBroker
  readonly http: OpsHttpServer
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
  const logger = options.logger ?? createLogger({ level: config.log.level, nodeId: config.nodeId })
  const dataDir = resolve(config.dataDir)
  await mkdir(dataDir, { recursive: true })

  const state = { storageOpen: false, listening: false }
  const extraChecks = new Map<string, () => boolean>()
  const listeningHooks: Array<(ports: BoundPorts) => Promise<void>> = []
  const stoppingHooks: Array<() => void> = []
  const http = createOpsHttpServer({
    logger,
    readiness: () => {
      const checks: Record<string, boolean> = { listeners: state.listening, storage: state.storageOpen }
      for (const [name, check] of extraChecks) checks[name] = check()
      return checks
    },
  })
  const metrics = new SpoolMetrics({ maxQueueLabels: config.metrics.maxQueueLabels })
  http.route('GET', '/metrics', async () => ({
    status: 200,
    body: await metrics.exposition(),
    contentType: metrics.contentType,
  }))
  // HTTP first, so /healthz answers (and /readyz says 503) while storage loads.
  const httpPort = await http.listen(config.http.port, config.mqtt.host)
  logger.info({ listener: 'http', host: config.mqtt.host, port: httpPort }, 'listening')

  const closers: Array<() => Promise<void>> = []
  let broker: MqttBroker | null = null
  let persistence: LevelPersistence | null = null
  const grpc = config.grpc.port === null ? null : createGrpcServer()
  const stop = async (): Promise<void> => {
    state.listening = false
    for (const hook of stoppingHooks) hook()
    // gRPC first: running admin calls finish (bounded) before the queue core they use closes.
    if (grpc !== null) await closeGrpc(grpc)
    if (broker !== null) await broker.close()
    for (const close of closers.reverse()) await close()
    if (persistence !== null && state.storageOpen) {
      state.storageOpen = false
      await persistence.destroy()
    }
    await http.close()
  }

  try {
    persistence = new LevelPersistence({ path: join(dataDir, 'sessions'), dupOnResume: true })
    broker = await createMqttBroker({
      nodeId: config.nodeId,
      host: config.mqtt.host,
      mqttPort: config.mqtt.port,
      wsPort: config.ws.port,
      persistence,
      logger,
      limits: config.mqtt,
    })
    state.storageOpen = true // aedes ran persistence.setup(), which opened and loaded LevelDB

    const sessions = persistence
    metrics.watchBroker(attachBrokerStats(broker.aedes, () => sessions.retainedCount))
    const ctx: ServerContext = {
      config,
      logger,
      dataDir,
      aedes: broker.aedes,
      hooks: broker.hooks,
      http,
      metrics,
      grpc,
      addReadinessCheck: (name, check) => extraChecks.set(name, check),
      onListening: (listener) => listeningHooks.push(listener),
      onStopping: (listener) => stoppingHooks.push(listener),
    }
    // Authentication and ACLs before any extension: hooks run in the order they were added, and the
    // queue publish hook stores the message, so a denied publish must be refused before it runs.
    attachMqttAuth(broker, config.auth, logger.child({ component: 'auth' }))
    // Then the durable queues, always first among the extensions.
    for (const extension of [options.queues ?? queuesExtension, ...(options.extensions ?? [])]) {
      const close = await extension(ctx)
      if (close) closers.push(close)
    }

    let grpcPort: number | null = null
    if (grpc !== null && config.grpc.port !== null) {
      grpcPort = await listenGrpc(grpc, config.mqtt.host, config.grpc.port)
      logger.info({ listener: 'grpc', host: config.mqtt.host, port: grpcPort }, 'listening')
    }
    const ports = await broker.listen()
    for (const hook of listeningHooks) await hook({ ...ports, httpPort, grpcPort })
    state.listening = true
    logger.info(
      { dataDir, mqttPort: ports.mqttPort, wsPort: ports.wsPort, httpPort, grpcPort },
      'spool started',
    )

    let closing: Promise<void> | null = null
    const running: RunningServer = {
      config,
      logger,
      dataDir,
      aedes: broker.aedes,
      hooks: broker.hooks,
      broker,
      http,
      mqttPort: ports.mqttPort,
      wsPort: ports.wsPort,
      httpPort,
      grpcPort,
      close() {
        closing ??= stop().then(() => logger.info('spool stopped'))
        return closing
      },
    }
    return running
  } catch (err) {
    await stop().catch((closeErr: unknown) => logger.error({ err: closeErr }, 'cleanup after failed start'))
    throw err
  }
}
