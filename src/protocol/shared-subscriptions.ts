/**
 * MQTT 5 Shared Subscriptions (§4.8.2): `$share/<group>/<filter>`. Each message matching `filter` goes
 * to ONE member of each group, round robin over the members currently connected.
 *
 * How it plugs into aedes: patch 001 makes aedes accept `$share/` subscriptions (instead of answering
 * 0x9E) and advertise them in CONNACK when the broker option `sharedSubscriptions` is set. aedes then
 * calls `broker.subscribe('$share/g/f', deliverFn)` for each member, exactly as for a normal
 * subscription. We wrap `subscribe`/`unsubscribe` so that those calls register the member here, and
 * the group itself holds ONE listener on `f` in the emitter that picks the next member.
 *
 * A QoS 1/2 delivery to a persistent session is recorded by the persistence's `outgoingUpdate`
 * (which upserts; see level-persistence.ts), so it survives a restart until acknowledged.
 *
 * When a member's session ends with its connection (Clean Start with Session Expiry 0, 3.1.1 clean
 * session), the QoS 1/2 messages it had not acknowledged go to another member (§4.8.2: the server
 * SHOULD send them to another client). They are found in the connection's outbound window (aedes
 * patches 027 and 031), matched to the group that chose this member by `brokerId:brokerCounter`. A
 * member with a persistent session gets them again itself when it resumes (§4.8.2 MAY).
 *
 * Limitations (documented in docs/): members are only the connected sessions; a message published
 * while no member is connected is not kept for the group (nor one whose group has no other member left
 * when it is handed on). A QoS 2 message already PUBRECed by the member that left is handed on too.
 * A single node only (the cluster will need a group owner).
 */
import type { AedesPublishPacket } from 'aedes'

type Deliver = (packet: AedesPublishPacket, callback: () => void) => void

/** What {@link SharedSubscriptions.memberGone} needs of an aedes client (outbound window: patch 031). */
export interface LeavingMember {
  readonly clean: boolean
  readonly outbound?: { unacknowledged(): AedesPublishPacket[] }
}

/** How many shared QoS 1/2 deliveries are remembered for hand-over (oldest forgotten first). */
const MAX_TRACKED_DELIVERIES = 100_000

function deliveryKey(packet: AedesPublishPacket): string {
  return `${packet.brokerId}:${packet.brokerCounter}`
}
type Done = (err?: Error) => void

/** The part of aedes we wrap; kept structural so tests can use a fake. */
export interface SubscribableBroker {
  subscribe(topic: string, func: Deliver, done: Done): void
  unsubscribe(topic: string, func: Deliver, done: Done): void
}

const SHARE_PREFIX = '$share/'

/** Splits `$share/<group>/<filter>`; null for a malformed share name ([MQTT-4.8.2-1], [MQTT-4.8.2-2]). */
export function parseShare(topic: string): { group: string; filter: string } | null {
  if (!topic.startsWith(SHARE_PREFIX)) return null
  const rest = topic.slice(SHARE_PREFIX.length)
  const slash = rest.indexOf('/')
  if (slash <= 0) return null
  const group = rest.slice(0, slash)
  const filter = rest.slice(slash + 1)
  if (group.includes('+') || group.includes('#') || filter === '') return null
  return { group, filter }
}

interface Member {
  func: Deliver
}

class Group {
  readonly members: Member[] = []
  next = 0
  constructor(
    readonly key: string,
    readonly filter: string,
    readonly listener: Deliver,
  ) {}
}

export class SharedSubscriptions {
  readonly #groups = new Map<string, Group>()
  /** Shared QoS 1/2 deliveries by `brokerId:brokerCounter` → the group that made them. */
  readonly #delivered = new Map<string, Group>()
  readonly #subscribe: SubscribableBroker['subscribe']
  readonly #unsubscribe: SubscribableBroker['unsubscribe']

  /** Wraps `broker.subscribe` / `broker.unsubscribe`; call once, before clients connect. */
  constructor(private readonly broker: SubscribableBroker) {
    this.#subscribe = broker.subscribe.bind(broker)
    this.#unsubscribe = broker.unsubscribe.bind(broker)
    broker.subscribe = (topic, func, done) => {
      const share = parseShare(topic)
      if (share === null) this.#subscribe(topic, func, done)
      else this.#add(topic, share.filter, func, done)
    }
    broker.unsubscribe = (topic, func, done) => {
      if (parseShare(topic) === null) this.#unsubscribe(topic, func, done)
      else this.#remove(topic, func, done ?? noop)
    }
  }

  /** Number of connected members of `$share/<group>/<filter>`, for tests and metrics. */
  memberCount(shareTopic: string): number {
    return this.#groups.get(shareTopic)?.members.length ?? 0
  }

  /**
   * A client's connection ended (aedes 'clientDisconnect'; its memberships are already removed). If its
   * session ended too, its unacknowledged shared messages go to other members of their groups.
   */
  memberGone(client: LeavingMember): void {
    if (!client.clean) return
    for (const packet of client.outbound?.unacknowledged() ?? []) {
      const key = deliveryKey(packet)
      const group = this.#delivered.get(key)
      if (group === undefined) continue
      this.#delivered.delete(key)
      if (this.#groups.get(group.key) !== group) continue
      // A new message for the next member: new broker counter (aedes' per-client dedupe would drop an
      // old one), no packet id, not a retransmission.
      const handOn = {
        cmd: 'publish',
        topic: packet.topic,
        payload: packet.payload,
        qos: packet.qos,
        retain: false,
        dup: false,
        brokerId: packet.brokerId,
        ...(packet.properties === undefined ? {} : { properties: packet.properties }),
        ...(packet.messageExpiry === undefined ? {} : { messageExpiry: packet.messageExpiry }),
      } as unknown as AedesPublishPacket
      this.#dispatch(group, handOn, noop)
    }
  }

  #add(key: string, filter: string, func: Deliver, done: Done): void {
    let group = this.#groups.get(key)
    if (group === undefined) {
      const created: Group = new Group(key, filter, (packet, cb) => this.#dispatch(created, packet, cb))
      group = created
      this.#groups.set(key, group)
      group.members.push({ func })
      this.#subscribe(filter, group.listener, done)
      return
    }
    group.members.push({ func })
    done()
  }

  #remove(key: string, func: Deliver, done: Done): void {
    const group = this.#groups.get(key)
    if (group === undefined) {
      done()
      return
    }
    const i = group.members.findIndex((m) => m.func === func)
    if (i >= 0) {
      group.members.splice(i, 1)
      if (group.next > i) group.next--
    }
    if (group.members.length > 0) {
      done()
      return
    }
    this.#groups.delete(key)
    this.#unsubscribe(group.filter, group.listener, done)
  }

  #dispatch(group: Group, packet: AedesPublishPacket, cb: () => void): void {
    // [MQTT-4.7.2-1] a filter starting with a wildcard must not match `$` topics (aedes does the
    // same for normal subscriptions in blockDollarSignTopics).
    if (packet.topic.startsWith('$') && (group.filter.startsWith('+') || group.filter.startsWith('#'))) {
      cb()
      return
    }
    const n = group.members.length
    if (n === 0) {
      cb()
      return
    }
    if (group.next >= n) group.next = 0
    const member = group.members[group.next]
    group.next = (group.next + 1) % n
    if (member === undefined) {
      cb()
      return
    }
    if (packet.qos > 0) {
      if (this.#delivered.size >= MAX_TRACKED_DELIVERIES) {
        const oldest = this.#delivered.keys().next().value
        if (oldest !== undefined) this.#delivered.delete(oldest)
      }
      this.#delivered.set(deliveryKey(packet), group)
    }
    member.func(packet, cb)
  }
}

function noop(): void {}
