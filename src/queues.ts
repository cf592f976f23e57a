/**
 * Wires the durable `$queue/` namespace into a server: the LevelDB queue store under
 * `<dataDir>/queues`, the queue core with the configured settings, and the MQTT adapter.
 */
import { join } from 'node:path'
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
  })
  await manager.open()
  const adapter = attachQueues(ctx, manager, logger)
  return async () => {
    adapter.close()
    await manager.close()
  }
}
