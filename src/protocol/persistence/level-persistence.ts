/**
 * The aedes-facing side of the session store: it loads what src/storage/sessions/ needs from
 * aedes-persistence (its `Packet` class and its qlobber tries, resolved from aedes-persistence so the
 * versions match) and hands it to {@link SessionPersistence}, which does the rest. aedes and the
 * server use this class; storage knows no aedes module.
 */
import { createRequire } from 'node:module'
import {
  SessionPersistence,
  type AedesParts,
  type LevelPersistenceOptions,
  type StoredPacket,
} from '../../storage/sessions/session-persistence.js'
import type { QlobberSubLike } from '../../storage/sessions/subscriptions.js'

export type {
  LevelPersistenceOptions,
  StoredPacket,
  SubscriptionLike,
  TrieSub,
} from '../../storage/sessions/session-persistence.js'

const require = createRequire(import.meta.url)

interface QlobberTrueLike {
  add(topic: string): void
  test(topic: string): boolean
}
const QLOBBER_OPTIONS = { wildcard_one: '+', wildcard_some: '#', separator: '/' }
// qlobber is a dependency of aedes-persistence; resolve it from there so versions match.
const persistenceRequire = createRequire(require.resolve('aedes-persistence'))
const QlobberSub = persistenceRequire('qlobber/aedes/qlobber-sub') as new (opts: object) => QlobberSubLike
const { QlobberTrue } = persistenceRequire('qlobber') as {
  QlobberTrue: new (opts: object) => QlobberTrueLike
}
const { Packet } = require('aedes-persistence') as { Packet: new (p: object) => StoredPacket }

const AEDES_PARTS: AedesParts = {
  Packet,
  subscriptionTrie: () => new QlobberSub(QLOBBER_OPTIONS),
  topicMatcher: (pattern) => {
    const trie = new QlobberTrue(QLOBBER_OPTIONS)
    trie.add(pattern)
    return (topic) => trie.test(topic)
  },
}

/** aedes session persistence on LevelDB (`<dataDir>/sessions`); see src/storage/sessions/. */
export class LevelPersistence extends SessionPersistence {
  constructor(options: LevelPersistenceOptions) {
    super(options, AEDES_PARTS)
  }
}
