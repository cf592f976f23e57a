/**
 * Wires the durable `$queue/` namespace into a server: the LevelDB queue store under
 * `<dataDir>/queues`, the queue core with the configured settings, the MQTT adapter, and the admin
 * API over the same core: HTTP (`/api/v1`) and, when `grpc.port` is set, gRPC (`spool.admin.v1`).
 */
import { join } from 'node:path'
import { attachAdminGrpcService } from './admin/grpc-server.js'
import { attachAdminHttpApi } from './admin/http-api.js'
import { AdminService } from './admin/service.js'
import { attachQueues } from './protocol/queue-adapter.js'
import { QueueManager } from './queue/manager.js'
import type { ServerExtension } from './server.js'
import { LevelQueueStore } from './storage/level-store.js'

export const queuesExtension: ServerExtension = async (ctx) => {
  const logger = ctx.logger.child({ component: 'queues' })
  const manager = new QueueManager({
    store: new LevelQueueStore(join(ctx.dataDir, 'queues')),
    defaults: ctx.config.queues.defaults,
    declared: ctx.config.queues.declared,
    logger,
    observer: ctx.metrics.queueObserver,
  })
  await manager.open()
  ctx.metrics.watchQueues(manager)
  const adapter = attachQueues(ctx, manager, logger)
  const admin = new AdminService(manager, ctx.config.nodeId)
  const adminOptions = { token: ctx.config.admin.token, logger: ctx.logger.child({ component: 'admin' }) }
  attachAdminHttpApi(ctx.http, admin, adminOptions)
  if (ctx.grpc !== null) attachAdminGrpcService(ctx.grpc, admin, adminOptions)
  return async () => {
    adapter.close()
    await manager.close()
  }
}
