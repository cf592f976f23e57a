import { MemoryQueueStore } from '../../src/storage/memory-store.js'
import { queueStoreContract } from './queue-store.contract.js'

queueStoreContract('MemoryQueueStore', (t) => {
  const store = new MemoryQueueStore()
  t.after(() => store.close())
  return Promise.resolve(store)
})
