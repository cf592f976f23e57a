/**
 * Wires the durable `$queue/` namespace into a server: the LevelDB queue store under
 * `<dataDir>/queues`, the queue core with the configured settings, the MQTT adapter, and the admin
 * HTTP API (`/api/v1`) over the same core.
 */
import { join } from 'node:path'
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
  attachAdminHttpApi(ctx.http, new AdminService(manager, ctx.config.nodeId), {
    token: ctx.config.admin.token,
    logger: ctx.logger.child({ component: 'admin' }),
  })
  return async () => {
    adapter.close()
    await manager.close()
  }
}
