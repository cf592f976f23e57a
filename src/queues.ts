/**
 * Wires the durable `$queue/` namespace into a server: the LevelDB queue store under
 * `<dataDir>/queues`, the queue core with the configured settings, the MQTT adapter, and the admin
 * API over the same core: HTTP (`/api/v1`) and, when `grpc.port` is set, gRPC (`spool.admin.v1`).
 * With `cluster.etcd` set, the node joins a cluster and the adapter talks to the cluster's routing
 * (src/cluster) instead of the local core, which then serves only the partitions this node owns.
 */
import { join } from 'node:path'
import { attachAdminGrpcService } from './admin/grpc-server.js'
import { attachAdminHttpApi } from './admin/http-api.js'
import { AdminService } from './admin/service.js'
import { attachCluster } from './cluster/node.js'
import { attachQueues } from './protocol/queue-adapter.js'
import { QueueManager } from './queue/manager.js'
import type { ServerExtension } from './server.js'
import { LevelQueueStore } from './storage/level-store.js'

export const queuesExtension: ServerExtension = async (ctx) => {
  const logger = ctx.logger.child({ component: 'queues' })
  const clustered = ctx.config.cluster.etcd.length > 0
  const manager = new QueueManager({
    store: new LevelQueueStore(join(ctx.dataDir, 'queues')),
    defaults: ctx.config.queues.defaults,
    declared: ctx.config.queues.declared,
    logger,
    observer: ctx.metrics.queueObserver,
    servesAllPartitions: !clustered,
    implicitGroups: ctx.config.queues.implicitGroups,
  })
  await manager.open()
  ctx.metrics.watchQueues(manager.admin)
  const cluster = clustered ? await attachCluster(ctx, manager, logger) : null
  const adapter = attachQueues(ctx, cluster?.queues ?? manager, logger)
  const admin = new AdminService(
    manager.admin,
    ctx.config.nodeId,
    cluster === null ? undefined : () => cluster.view(),
  )
  const adminOptions = { token: ctx.config.admin.token, logger: ctx.logger.child({ component: 'admin' }) }
  attachAdminHttpApi(ctx.http, admin, adminOptions)
  if (ctx.grpc !== null) attachAdminGrpcService(ctx.grpc, admin, adminOptions)
  return async () => {
    adapter.close()
    if (cluster !== null) {
      // Most of the stop budget goes to handing partitions over; the rest to closing.
      await cluster.leave(Math.floor(ctx.config.shutdown.timeoutMs * 0.7))
      await cluster.close()
    }
    await manager.close()
  }
}
