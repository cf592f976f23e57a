/**
 * aedes session persistence (aedes-persistence 10.3.1's async interface) that survives a restart:
 * subscriptions of persistent sessions, retained messages, wills, and QoS 1/2 messages queued for or
 * in flight to a session (outgoing) and from a client (incoming, QoS 2 before PUBREL).
 *
 * Design: the in-memory structures mirror aedes-persistence's MemoryPersistence (asyncPersistence.js)
 * and answer every read; every mutation updates memory synchronously and is then written through to
 * LevelDB at `<dataDir>/sessions` (./session-db.ts). The returned promise resolves once the write is in
 * LevelDB, so aedes' "store, then acknowledge" ordering holds. Writes are group-committed by the
 * kernel (../level/group-committer.ts): the writes of one event-loop turn become one batch, batches
 * land in order (LevelDB applies a batch atomically) and throughput stays high under load. `setup`
 * loads everything back into memory.
 *
 * It knows no aedes module: aedes-persistence's `Packet` class and qlobber tries are handed in
 * ({@link AedesParts}) by the aedes-facing shim, src/protocol/persistence/level-persistence.ts.
 *
 * Why not aedes-persistence-level: it needs aedes-persistence 11 / the old packet API, and was measured
 * losing 100-300 of 20k QoS 1 messages for a persistent subscriber at a fifth of the speed.
 *
 * One deliberate difference from MemoryPersistence: `outgoingUpdate` for a packet that was never
 * enqueued inserts it instead of throwing. aedes only enqueues messages for subscriptions found in the
 * persistence trie; shared-subscription deliveries (`$share/...`, not in the trie) to a persistent
 * session reach `outgoingUpdate` directly, and throwing there would make aedes drop the connection.
 */
import { Readable } from 'node:stream'
import {
  decodeRecord,
  encodeRecord,
  SessionDb,
  sessionKeys,
  SessionKinds,
  type SessionOp,
} from './session-db.js'
import {
  Subscriptions,
  type QlobberSubLike,
  type SubRecord,
  type SubscriptionLike,
  type TrieSub,
} from './subscriptions.js'

export type { SubscriptionLike, TrieSub } from './subscriptions.js'

/** The fields aedes stores on a packet; kept loose because aedes adds its own (brokerId, …). */
export interface StoredPacket {
  cmd?: string
  topic: string
  payload: Buffer | string
  qos?: number
  retain?: boolean
  messageId?: number | undefined
  brokerId?: string
  brokerCounter?: number
  clientId?: string
  [key: string]: unknown
}

export interface ClientLike {
  id: string
}
export interface BrokerLike {
  id: string
  /** aedes' packet counter: `brokerCounter` of the next packet it creates is `++counter`. */
  counter?: number
}

interface OutgoingEntry {
  key: string
  packet: StoredPacket
}

/** What the store needs from aedes-persistence, handed in by the protocol edge. */
export interface AedesParts {
  /** aedes-persistence's `Packet`: the copy aedes expects of a stored packet. */
  readonly Packet: new (packet: object) => StoredPacket
  /** A new, empty subscription trie (qlobber's QlobberSub with aedes' wildcards). */
  readonly subscriptionTrie: () => QlobberSubLike
  /** Whether `topic` matches the subscription filter `pattern` (MQTT wildcards). */
  readonly topicMatcher: (pattern: string) => (topic: string) => boolean
}

export interface LevelPersistenceOptions {
  /** Directory of the LevelDB database, e.g. `<dataDir>/sessions`. Created if missing. */
  path: string
  /** fsync every batch (survives power loss); default false (survives a killed process). */
  sync?: boolean
  /**
   * Set DUP=1 on already-sent PUBLISH packets returned by `outgoingStream` (session resume), as
   * [MQTT-3.3.1-1] requires. Default false: behave exactly like MemoryPersistence, whose abstract test
   * suite expects packets back unchanged. The server turns it on.
   */
  dupOnResume?: boolean
}

/** The session store behind aedes (see the file header); the protocol edge subclasses it with {@link AedesParts}. */
export class SessionPersistence {
  readonly #parts: AedesParts
  readonly #path: string
  readonly #sync: boolean
  readonly #dupOnResume: boolean
  #db: SessionDb | null = null
  #broker: BrokerLike | null = null
  #destroyed = false
  #nextSeq = 1

  readonly #retained = new Map<string, StoredPacket>()
  readonly #subscriptions: Subscriptions
  readonly #outgoing = new Map<string, OutgoingEntry[]>()
  readonly #incoming = new Map<string, Map<number, StoredPacket>>()
  readonly #wills = new Map<string, StoredPacket>()

  constructor(options: LevelPersistenceOptions, parts: AedesParts) {
    this.#parts = parts
    this.#subscriptions = new Subscriptions(parts.subscriptionTrie())
    this.#path = options.path
    this.#sync = options.sync ?? false
    this.#dupOnResume = options.dupOnResume ?? false
  }

  /** The broker passed to setup (the abstract test suite reads its id). */
  get broker(): BrokerLike | null {
    return this.#broker
  }

  /** Retained messages stored (for metrics: read from memory, no scan). */
  get retainedCount(): number {
    return this.#retained.size
  }

  /** aedes requires this to be a real `async function` (it checks `constructor.name`). */
  async setup(broker: BrokerLike): Promise<void> {
    this.#broker = broker
    const db = await SessionDb.open(this.#path, this.#sync)
    this.#db = db
    await this.#load(db)
    this.#continueCounter(broker)
  }

  /**
   * aedes identifies a queued packet by `brokerId` + `brokerCounter` (outgoingUpdate matches on
   * them), but starts its counter at 0 on every start, and Spool's broker id is the stable node id.
   * Packets queued before a restart would share their identity with new ones: a live delivery's
   * outgoingUpdate then gave its packet id to an old queued packet (the first in the list with that
   * counter), so the client got duplicates, packet ids reused while in flight, and the new message
   * stayed queued to be sent again on the next resume. Continue the counter past every stored one.
   */
  #continueCounter(broker: BrokerLike): void {
    let max = broker.counter ?? 0
    for (const list of this.#outgoing.values()) {
      for (const { packet } of list) {
        if (packet.brokerId === broker.id && typeof packet.brokerCounter === 'number') {
          max = Math.max(max, packet.brokerCounter)
        }
      }
    }
    if (broker.counter !== undefined) broker.counter = max
  }

  async #load(db: SessionDb): Promise<void> {
    for await (const { key, kind, a, b, value } of db.records()) {
      switch (kind) {
        case SessionKinds.retained:
          this.#retained.set(a, decodeRecord<StoredPacket>(value))
          break
        case SessionKinds.sub:
          this.#subscriptions.add(a, { topic: b, ...decodeRecord<SubRecord>(value) })
          break
        case SessionKinds.out: {
          const seq = Number(b)
          if (seq >= this.#nextSeq) this.#nextSeq = seq + 1
          this.#outgoingOf(a).push({ key, packet: decodeRecord<StoredPacket>(value) })
          break
        }
        case SessionKinds.inc:
          this.#incomingOf(a).set(Number(b), decodeRecord<StoredPacket>(value))
          break
        case SessionKinds.will:
          this.#wills.set(a, decodeRecord<StoredPacket>(value))
          break
        default:
          break // a kind written by a newer version: ignore
      }
    }
  }

  #write(ops: SessionOp[]): Promise<void> {
    if (this.#db === null) return Promise.reject(new Error('LevelPersistence used before setup()'))
    return this.#db.write(ops)
  }

  // ---- retained ----

  async storeRetained(pkt: StoredPacket): Promise<void> {
    const packet = { ...pkt }
    const key = sessionKeys.retained(packet.topic)
    if (packet.payload.length === 0) {
      this.#retained.delete(packet.topic)
      await this.#write([{ type: 'del', key }])
    } else {
      this.#retained.set(packet.topic, packet)
      await this.#write([{ type: 'put', key, value: encodeRecord(packet) }])
    }
  }

  *#retainedByPattern(pattern: string): Generator<StoredPacket> {
    const matches = this.#parts.topicMatcher(pattern)
    for (const [topic, packet] of this.#retained) {
      if (matches(topic)) yield packet
    }
  }

  createRetainedStreamCombi(patterns: string[]): Readable {
    return Readable.from(patterns.flatMap((p) => [...this.#retainedByPattern(p)]))
  }

  createRetainedStream(pattern: string): Readable {
    return Readable.from(this.#retainedByPattern(pattern))
  }

  // ---- subscriptions ----

  async addSubscriptions(client: ClientLike, subs: SubscriptionLike[]): Promise<void> {
    const ops: SessionOp[] = []
    for (const sub of subs) {
      const record = this.#subscriptions.add(client.id, sub)
      ops.push({
        type: 'put',
        key: sessionKeys.subscription(client.id, sub.topic),
        value: encodeRecord(record),
      })
    }
    await this.#write(ops)
  }

  async removeSubscriptions(client: ClientLike, topics: string[]): Promise<void> {
    const removed = this.#subscriptions.remove(client.id, topics)
    await this.#write(
      removed.map((topic) => ({ type: 'del', key: sessionKeys.subscription(client.id, topic) })),
    )
  }

  async subscriptionsByClient(client: ClientLike): Promise<SubscriptionLike[]> {
    return Promise.resolve(this.#subscriptions.byClient(client.id))
  }

  async countOffline(): Promise<{ subsCount: number; clientsCount: number }> {
    return Promise.resolve(this.#subscriptions.counts())
  }

  async subscriptionsByTopic(pattern: string): Promise<TrieSub[]> {
    return Promise.resolve(this.#subscriptions.byTopic(pattern))
  }

  async cleanSubscriptions(client: ClientLike): Promise<void> {
    const removed = this.#subscriptions.clean(client.id)
    await this.#write(
      removed.map((topic) => ({ type: 'del', key: sessionKeys.subscription(client.id, topic) })),
    )
  }

  getClientList(topic: string): Readable {
    return Readable.from(this.#subscriptions.clientsOf(topic))
  }

  // ---- outgoing (QoS 1/2 queued for / in flight to a client) ----

  #outgoingOf(clientId: string): OutgoingEntry[] {
    let list = this.#outgoing.get(clientId)
    if (list === undefined) {
      list = []
      this.#outgoing.set(clientId, list)
    }
    return list
  }

  #enqueue(clientId: string, packet: StoredPacket, ops: SessionOp[]): void {
    const key = sessionKeys.outgoing(clientId, this.#nextSeq++)
    const copy = new this.#parts.Packet(packet)
    this.#outgoingOf(clientId).push({ key, packet: copy })
    ops.push({ type: 'put', key, value: encodeRecord(copy) })
  }

  async outgoingEnqueue(sub: { clientId: string }, packet: StoredPacket): Promise<void> {
    const ops: SessionOp[] = []
    this.#enqueue(sub.clientId, packet, ops)
    await this.#write(ops)
  }

  async outgoingEnqueueCombi(subs: Array<{ clientId: string }>, packet: StoredPacket): Promise<void> {
    const ops: SessionOp[] = []
    for (const sub of subs) this.#enqueue(sub.clientId, packet, ops)
    await this.#write(ops)
  }

  async outgoingUpdate(client: ClientLike, packet: StoredPacket): Promise<void> {
    const outgoing = this.#outgoingOf(client.id)
    for (const entry of outgoing) {
      const temp = entry.packet
      if (temp.brokerId === packet.brokerId) {
        if (temp.brokerCounter === packet.brokerCounter) {
          temp.messageId = packet.messageId
          await this.#write([{ type: 'put', key: entry.key, value: encodeRecord(temp) }])
          return
        }
        // Same broker, other counter: packet ids rotate at 65535, keep searching (as MemoryPersistence).
      } else if (temp.messageId === packet.messageId) {
        entry.packet = packet
        await this.#write([{ type: 'put', key: entry.key, value: encodeRecord(packet) }])
        return
      }
    }
    // Not enqueued (a shared-subscription delivery): record it so it is redelivered after a restart.
    const key = sessionKeys.outgoing(client.id, this.#nextSeq++)
    outgoing.push({ key, packet })
    await this.#write([{ type: 'put', key, value: encodeRecord(packet) }])
  }

  async outgoingClearMessageId(client: ClientLike, packet: StoredPacket): Promise<StoredPacket | undefined> {
    const outgoing = this.#outgoing.get(client.id)
    if (outgoing === undefined) return undefined
    for (let i = 0; i < outgoing.length; i++) {
      const entry = outgoing[i]
      if (entry !== undefined && entry.packet.messageId === packet.messageId) {
        outgoing.splice(i, 1)
        if (outgoing.length === 0) this.#outgoing.delete(client.id)
        await this.#write([{ type: 'del', key: entry.key }])
        return entry.packet
      }
    }
    return undefined
  }

  outgoingStream(client: ClientLike): Readable {
    // Snapshot so later mutations do not race the stream (as MemoryPersistence).
    const packets = (this.#outgoing.get(client.id) ?? []).map((e) => e.packet)
    if (!this.#dupOnResume) return Readable.from(packets)
    // aedes reads this only to resume a session; a PUBLISH that already has a packet id was sent
    // before, so it goes out again with DUP=1 [MQTT-3.3.1-1]. aedes never sets DUP itself; its
    // QoSPacket copies ours.
    return Readable.from(
      packets.map((p) =>
        p.messageId !== undefined && (p.cmd ?? 'publish') === 'publish' ? { ...p, dup: true } : p,
      ),
    )
  }

  // ---- incoming (QoS 2 received, waiting for PUBREL) ----

  #incomingOf(clientId: string): Map<number, StoredPacket> {
    let m = this.#incoming.get(clientId)
    if (m === undefined) {
      m = new Map()
      this.#incoming.set(clientId, m)
    }
    return m
  }

  async incomingStorePacket(client: ClientLike, packet: StoredPacket): Promise<void> {
    const id = packet.messageId ?? 0
    const stored = new this.#parts.Packet(packet)
    stored.messageId = packet.messageId
    this.#incomingOf(client.id).set(id, stored)
    await this.#write([
      { type: 'put', key: sessionKeys.incoming(client.id, id), value: encodeRecord(stored) },
    ])
  }

  async incomingGetPacket(client: ClientLike, packet: StoredPacket): Promise<StoredPacket> {
    const found = this.#incoming.get(client.id)?.get(packet.messageId ?? 0)
    if (found === undefined) throw new Error('no such packet')
    return Promise.resolve(found)
  }

  async incomingDelPacket(client: ClientLike, packet: StoredPacket): Promise<void> {
    const id = packet.messageId ?? 0
    const store = this.#incoming.get(client.id)
    if (store?.has(id) !== true) throw new Error('no such packet')
    store.delete(id)
    if (store.size === 0) this.#incoming.delete(client.id)
    await this.#write([{ type: 'del', key: sessionKeys.incoming(client.id, id) }])
  }

  // ---- wills ----

  async putWill(client: ClientLike, packet: StoredPacket): Promise<void> {
    packet.brokerId = this.#broker?.id ?? ''
    packet.clientId = client.id
    this.#wills.set(client.id, packet)
    await this.#write([{ type: 'put', key: sessionKeys.will(client.id), value: encodeRecord(packet) }])
  }

  async getWill(client: ClientLike): Promise<StoredPacket | undefined> {
    return Promise.resolve(this.#wills.get(client.id))
  }

  async delWill(client: ClientLike): Promise<StoredPacket | undefined> {
    const will = this.#wills.get(client.id)
    this.#wills.delete(client.id)
    await this.#write([{ type: 'del', key: sessionKeys.will(client.id) }])
    return will
  }

  streamWill(brokers: Record<string, unknown> = {}): Readable {
    const wills = this.#wills
    return Readable.from(
      (function* byBrokers() {
        for (const will of wills.values()) {
          if (will.brokerId === undefined || !brokers[will.brokerId]) yield will
        }
      })(),
    )
  }

  // ---- lifecycle ----

  /** Waits for pending writes and closes LevelDB. aedes does not call this; the server does. */
  async destroy(): Promise<void> {
    if (this.#destroyed) throw new Error('destroyed called twice!')
    this.#destroyed = true
    if (this.#db !== null) await this.#db.close()
  }
}
