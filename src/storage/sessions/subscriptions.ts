/**
 * The subscriptions of persistent sessions, in memory: per client (what `subscriptionsByClient`
 * restores) and in a topic trie (what `subscriptionsByTopic` matches), as aedes-persistence's
 * MemoryPersistence keeps them. The trie class is aedes-persistence's own qlobber, handed in by the
 * protocol edge (src/protocol/persistence/level-persistence.ts).
 */

/** Structural view of the qlobber classes aedes-persistence uses (qlobber ships no types). */
export interface TrieSub {
  clientId: string
  topic: string
  qos?: number
  rh?: number
  rap?: number
  nl?: number
}
export interface QlobberSubLike {
  subscriptionsCount: number
  add(topic: string, sub: TrieSub): void
  remove(topic: string, sub: { clientId: string; topic: string }): void
  match(topic: string): TrieSub[]
}

export interface SubscriptionLike {
  topic: string
  qos: number
  rh?: number
  rap?: number
  nl?: number | boolean
  subscriptionIdentifier?: number
}
/** What is stored per (client, topic): the subscription without its topic. */
export type SubRecord = Omit<SubscriptionLike, 'topic'>

export class Subscriptions {
  readonly #byClient = new Map<string, Map<string, SubRecord>>()
  readonly #trie: QlobberSubLike
  #clientsCount = 0

  constructor(trie: QlobberSubLike) {
    this.#trie = trie
  }

  /** Adds or replaces a subscription; returns the record to store. */
  add(clientId: string, sub: SubscriptionLike): SubRecord {
    let stored = this.#byClient.get(clientId)
    if (stored === undefined) {
      stored = new Map()
      this.#byClient.set(clientId, stored)
      this.#clientsCount++
    }
    const previous = stored.get(sub.topic)
    const record: SubRecord = { qos: sub.qos }
    if (sub.rh !== undefined) record.rh = sub.rh
    if (sub.rap !== undefined) record.rap = sub.rap
    if (sub.nl !== undefined) record.nl = sub.nl
    // Kept per client (restored on reconnect) but not in the trie, as in MemoryPersistence.
    if (sub.subscriptionIdentifier !== undefined) record.subscriptionIdentifier = sub.subscriptionIdentifier
    if (sub.qos > 0) {
      this.#trie.add(sub.topic, {
        clientId,
        topic: sub.topic,
        qos: sub.qos,
        rh: sub.rh as number,
        rap: sub.rap as number,
        nl: sub.nl as number,
      })
    } else if (previous !== undefined && previous.qos > 0) {
      this.#trie.remove(sub.topic, { clientId, topic: sub.topic })
    }
    stored.set(sub.topic, record)
    return record
  }

  /** Removes the client's subscriptions to `topics`; returns the topics it had. */
  remove(clientId: string, topics: readonly string[]): string[] {
    const stored = this.#byClient.get(clientId)
    const removed: string[] = []
    if (stored === undefined) return removed
    for (const topic of topics) {
      const storedSub = stored.get(topic)
      if (storedSub === undefined) continue
      if (storedSub.qos > 0) this.#trie.remove(topic, { clientId, topic })
      stored.delete(topic)
      removed.push(topic)
    }
    if (stored.size === 0) {
      this.#clientsCount--
      this.#byClient.delete(clientId)
    }
    return removed
  }

  /** Removes every subscription of the client; returns the topics it had. */
  clean(clientId: string): string[] {
    const stored = this.#byClient.get(clientId)
    if (stored === undefined) return []
    const removed: string[] = []
    for (const [topic, record] of stored) {
      if (record.qos > 0) this.#trie.remove(topic, { clientId, topic })
      removed.push(topic)
    }
    this.#clientsCount--
    this.#byClient.delete(clientId)
    return removed
  }

  byClient(clientId: string): SubscriptionLike[] {
    const subs: SubscriptionLike[] = []
    const stored = this.#byClient.get(clientId)
    if (stored !== undefined) {
      for (const [topic, record] of stored) subs.push({ topic, ...record })
    }
    return subs
  }

  byTopic(pattern: string): TrieSub[] {
    return this.#trie.match(pattern)
  }

  counts(): { subsCount: number; clientsCount: number } {
    return { subsCount: this.#trie.subscriptionsCount, clientsCount: this.#clientsCount }
  }

  /** The clients subscribed to exactly `topic`. */
  *clientsOf(topic: string): Generator<string> {
    for (const [clientId, topics] of this.#byClient) {
      if (topics.has(topic)) yield clientId
    }
  }
}
