/**
 * The model of the queue contract (docs/queue-protocol.md) and its checker: judges one sequence's
 * trace and final state, and returns the violations ordered by the trace index where each shows.
 *
 * What the model knows, and what it does not (the contract promises no more):
 * - A publish is *stored* once it got PUBACK 0; one whose PUBACK was lost (kill -9) may or may not be.
 * - A group *surely exists* from its first SUBACK or first delivery. It *possibly exists* from its
 *   first SUBSCRIBE (a crash may have come before the SUBACK).
 * - A message is *possibly settled* for a group once a member sent `$ack` / `$reject` for it that was
 *   not refused (PUBACK 0 or lost), or once it is in the group's dead letters (a timeout or `$nack` of
 *   its last allowed delivery: the test cannot see when).
 * - Which group must get which message (invariant 1): a group G must get stored message m if G surely
 *   existed when m was sent, or if m was stored before G's first SUBSCRIBE and could not have been
 *   deleted by then ("a new group starts at the oldest message still stored"; a message is deleted only
 *   once every group settled it, and is kept while no group exists). Otherwise G may get m or not.
 */
import type { SequenceSpec } from './sequence.js'
import type { FinalState, Stamped } from './trace.js'

export const Invariants = {
  wellFormed: '0 deliveries are well-formed',
  delivery: '1 every stored message reaches every group that must get it',
  noRedelivery: '2 nothing acked (or rejected) with PUBACK 0 comes back to that group',
  order: '3 per-key and per-partition order',
  deliveryCount: '4 delivery-count only grows, at most retry.maxDeliveries',
  endState: '5 after the drain nothing is left; dead letters match the settles',
  settleReplies: '6 settle PUBACKs: a fresh settle succeeds, a repeated ack is refused',
  sessions: '7 connections stay up; persistent sessions survive (kill -9 too)',
  liveness: '8 every PUBACK / SUBACK comes while the broker is up',
} as const

export interface Violation {
  invariant: string
  /** Trace index where it shows (the trace length for end-state checks). */
  at: number
  text: string
}

type DeliverEvent = Extract<Stamped, { k: 'deliver' }>
type SettleSent = Extract<Stamped, { k: 'settleSent' }>
type Key = string

const MESSAGE_ID = /^(\d+)-(\d+)$/
const key = (group: string, msg: string): Key => `${group}\u0000${msg}`

interface Published {
  sentAt: number
  key: string | undefined
  order: number
  doneAt: number | undefined
  code: number | 'lost' | undefined
}

/** The trace, indexed for the checks. */
class TraceIndex {
  readonly published = new Map<string, Published>()
  readonly settles = new Map<number, { sent: SettleSent; at: number; code: number | 'lost' | undefined }>()
  /** First SUBSCRIBE of each group, and whether it got its SUBACK. */
  readonly firstSub = new Map<string, { at: number; confirmed: boolean }>()
  /** From when a group surely exists. */
  readonly sureFrom = new Map<string, number>()
  readonly deliveries = new Map<Key, Array<{ at: number; event: DeliverEvent }>>()
  /** Partition and seq of each message, from its deliveries and dead letters. */
  readonly ids = new Map<string, { partition: number; seq: number; id: string }>()
  readonly deadLettered = new Set<Key>()
  private readonly settledCache = new Map<Key, number>()

  constructor(
    readonly events: readonly Stamped[],
    final: FinalState,
  ) {
    let order = 0
    for (const [at, event] of events.entries()) {
      switch (event.k) {
        case 'pubSent':
          this.published.set(event.msg, {
            sentAt: at,
            key: event.key,
            order: order++,
            doneAt: undefined,
            code: undefined,
          })
          break
        case 'pubDone': {
          const p = this.published.get(event.msg)
          if (p !== undefined) {
            p.doneAt = at
            p.code = event.outcome === 'lost' ? 'lost' : event.outcome.code
          }
          break
        }
        case 'subSent':
          if (!this.firstSub.has(event.group)) this.firstSub.set(event.group, { at, confirmed: false })
          break
        case 'subDone': {
          if (event.code === 'lost' || event.code >= 0x80) break
          this.markSure(event.group, at)
          // Each member subscribes once: this SUBACK answers the group's first SUBSCRIBE if it is that member's.
          const first = this.firstSub.get(event.group)
          const sent = first === undefined ? undefined : events[first.at]
          if (first !== undefined && sent?.k === 'subSent' && sent.member === event.member)
            first.confirmed = true
          break
        }
        case 'deliver': {
          this.markSure(event.group, at)
          const k = key(event.group, event.msg)
          const list = this.deliveries.get(k) ?? []
          list.push({ at, event })
          this.deliveries.set(k, list)
          this.learnId(event.msg, event.messageId)
          break
        }
        case 'settleSent':
          this.settles.set(event.id, { sent: event, at, code: undefined })
          break
        case 'settleDone': {
          const s = this.settles.get(event.id)
          if (s !== undefined) s.code = event.outcome === 'lost' ? 'lost' : event.outcome.code
          break
        }
        default:
          break
      }
    }
    for (const letter of final.deadLetters) {
      const msg = letter.payloadUtf8 ?? ''
      this.deadLettered.add(key(letter.deadLetter.originalGroup, msg))
      this.learnId(msg, letter.deadLetter.originalMessageId)
    }
  }

  private markSure(group: string, at: number): void {
    if (!this.sureFrom.has(group)) this.sureFrom.set(group, at)
  }

  private learnId(msg: string, messageId: string | undefined): void {
    const match = messageId === undefined ? null : MESSAGE_ID.exec(messageId)
    if (match === null || this.ids.has(msg)) return
    this.ids.set(msg, { partition: Number(match[1]), seq: Number(match[2]), id: messageId! })
  }

  stored(msg: string): boolean {
    return this.published.get(msg)?.code === 0
  }

  groups(): string[] {
    return [...this.firstSub.keys()]
  }

  /**
   * From which trace index the message is possibly settled for the group: just after its first
   * `$ack`/`$reject` that was not refused, or (dead-lettered, at a time the test cannot see) just after
   * its first delivery to the group. Infinity if never.
   */
  settledFrom(group: string, msg: string): number {
    const k = key(group, msg)
    let from = this.settledCache.get(k)
    if (from !== undefined) return from
    from = Infinity
    if (this.deadLettered.has(k)) from = (this.deliveries.get(k)?.[0]?.at ?? -1) + 1
    for (const s of this.settles.values()) {
      const { sent } = s
      if (sent.group !== group || sent.msg !== msg || sent.repeat) continue
      if (sent.verb !== 'ack' && sent.verb !== 'reject') continue
      if (s.code === undefined || s.code === 'lost' || s.code === 0) from = Math.min(from, s.at + 1)
    }
    this.settledCache.set(k, from)
    return from
  }

  /** `$ack`/`$reject` sent by the group for the message before `at`, not refused; or dead-lettered. */
  possiblySettled(group: string, msg: string, at: number): boolean {
    return this.settledFrom(group, msg) <= at
  }

  /** The group's `$ack` / `$reject` of the message that got PUBACK 0, if any: its trace index. */
  confirmedSettle(group: string, msg: string, verbs: ReadonlyArray<'ack' | 'reject'>): number | undefined {
    let found: number | undefined
    for (const [, s] of this.settles) {
      if (s.sent.group !== group || s.sent.msg !== msg || s.code !== 0) continue
      if (!(verbs as readonly string[]).includes(s.sent.verb)) continue
      const doneAt = this.events.findIndex((e, i) => i > s.at && e.k === 'settleDone' && e.id === s.sent.id)
      if (doneAt !== -1 && (found === undefined || doneAt < found)) found = doneAt
    }
    return found
  }

  /** Whether the group sent an `$ack` of the message whose PUBACK never came. */
  lostAck(group: string, msg: string): boolean {
    for (const s of this.settles.values()) {
      if (s.sent.group === group && s.sent.msg === msg && s.sent.verb === 'ack' && s.code === 'lost')
        return true
    }
    return false
  }

  /** Invariant 1's rule: must `group` get the stored message `msg`? */
  must(group: string, msg: string): boolean {
    const p = this.published.get(msg)
    if (p === undefined || p.code !== 0 || p.doneAt === undefined) return false
    const sure = this.sureFrom.get(group)
    if (sure !== undefined && sure < p.sentAt) return true
    const first = this.firstSub.get(group)
    if (first === undefined || !first.confirmed || !(p.doneAt < first.at)) return false
    // Stored before the group's first SUBSCRIBE: kept unless, at some moment before it, every group
    // existing then (at least one) had settled it. Deleted stays deleted, so any such moment counts.
    const moments = [first.at, ...[...this.sureFrom.keys()].map((g) => this.settledFrom(g, msg))]
    const deletable = moments.some((at) => {
      if (!(at <= first.at)) return false
      const existing = [...this.sureFrom].filter(([, from]) => from < at).map(([g]) => g)
      return existing.length > 0 && existing.every((g) => this.possiblySettled(g, msg, at))
    })
    return !deletable
  }
}

export function checkSequence(
  spec: SequenceSpec,
  events: readonly Stamped[],
  final: FinalState,
): Violation[] {
  const index = new TraceIndex(events, final)
  const violations: Violation[] = []
  const fail = (invariant: string, at: number, text: string) => violations.push({ invariant, at, text })
  const settings = spec.settings
  const end = events.length

  checkDeliveries(spec, index, fail)
  checkSettleReplies(index, fail)
  checkConnections(events, fail)
  if (settings.ordering !== 'none') checkOrder(index, fail)
  checkKeys(index, fail)

  if (final.aborted !== undefined) fail(Invariants.liveness, end, final.aborted)
  else checkEnd(spec, index, final, fail, end)

  return violations.sort((a, b) => a.at - b.at)
}

type Fail = (invariant: string, at: number, text: string) => void

/** Invariants 0, 2 and 4, delivery by delivery. */
function checkDeliveries(spec: SequenceSpec, index: TraceIndex, fail: Fail): void {
  const maxDeliveries = spec.settings.retry.maxDeliveries
  const seen = new Map<Key, Set<number>>()
  const lastOnConnection = new Map<string, number>()
  const maxCount = new Map<Key, number>()
  const maxBeforeKill = new Map<Key, number>()
  const firstId = new Map<string, string>()
  const confirmed = new Map<Key, number | undefined>()
  for (const [at, event] of index.events.entries()) {
    if (event.k === 'restart') for (const [k, count] of maxCount) maxBeforeKill.set(k, count)
    if (event.k !== 'deliver') continue
    const { msg, group } = event
    const what = `${msg} to m${event.member}/${group} (id ${event.messageId}, delivery-count ${event.count})`
    const p = index.published.get(msg)
    if (event.topic !== `$queue/${spec.queue}`)
      fail(Invariants.wellFormed, at, `${what} came on topic ${event.topic}`)
    if (p === undefined || p.sentAt > at)
      fail(Invariants.wellFormed, at, `${what}: never published to this queue`)
    else if (p.code !== undefined && p.code !== 'lost' && p.code !== 0)
      fail(Invariants.wellFormed, at, `${what}: its publish was refused (0x${p.code.toString(16)})`)
    const match = event.messageId === undefined ? null : MESSAGE_ID.exec(event.messageId)
    if (match === null) fail(Invariants.wellFormed, at, `${what}: message-id is not <partition>-<seq>`)
    else {
      if (event.partition !== match[1])
        fail(Invariants.wellFormed, at, `${what}: user property partition is ${event.partition}`)
      if (Number(match[1]) >= spec.settings.partitions)
        fail(
          Invariants.wellFormed,
          at,
          `${what}: partition beyond the ${spec.settings.partitions} configured`,
        )
      const earlier = firstId.get(msg)
      if (earlier === undefined) firstId.set(msg, event.messageId!)
      else if (earlier !== event.messageId)
        fail(Invariants.wellFormed, at, `${what}: the same message came as ${earlier} before`)
    }
    if (event.groupId !== group) fail(Invariants.wellFormed, at, `${what}: group-id is ${event.groupId}`)
    if (!Number.isSafeInteger(event.count) || event.count < 1)
      fail(Invariants.wellFormed, at, `${what}: delivery-count is not a positive integer`)

    const k = key(group, msg)
    if (!confirmed.has(k)) confirmed.set(k, index.confirmedSettle(group, msg, ['ack', 'reject']))
    const settledAt = confirmed.get(k)
    if (settledAt !== undefined && settledAt < at) {
      fail(Invariants.noRedelivery, at, `${what} after its $ack/$reject got PUBACK 0 at #${settledAt}`)
    }
    // Receipt order across two connections is not the broker's send order (a delivery to a member
    // that is leaving may be read after its redelivery to another), so: one delivery per count,
    // counts grow per connection, and every count after a kill -9 is above every count before it.
    const counts = seen.get(k) ?? new Set<number>()
    if (counts.has(event.count))
      fail(Invariants.deliveryCount, at, `${what}: a second delivery with that count`)
    counts.add(event.count)
    seen.set(k, counts)
    const ck = `${k}\u0000${event.member}\u0000${event.connection}`
    const last = lastOnConnection.get(ck)
    if (last !== undefined && !(event.count > last)) {
      fail(Invariants.deliveryCount, at, `${what} after delivery-count ${last} on the same connection`)
    }
    lastOnConnection.set(ck, Math.max(last ?? 0, event.count))
    const beforeKill = maxBeforeKill.get(k)
    if (beforeKill !== undefined && !(event.count > beforeKill)) {
      fail(Invariants.deliveryCount, at, `${what} after delivery-count ${beforeKill} before the kill -9`)
    }
    if (event.count > maxDeliveries) {
      fail(
        Invariants.deliveryCount,
        at,
        `${what}: more deliveries than retry.maxDeliveries ${maxDeliveries} (it should have been dead-lettered)`,
      )
    }
    maxCount.set(k, Math.max(maxCount.get(k) ?? 0, event.count))
  }
}

/** Invariant 6: a fresh settle of a held delivery succeeds; a repeated ack is refused. */
function checkSettleReplies(index: TraceIndex, fail: Fail): void {
  for (const [at, event] of index.events.entries()) {
    if (event.k !== 'settleDone' || event.outcome === 'lost') continue
    const sent = index.settles.get(event.id)?.sent
    if (sent === undefined) continue
    const what = `$${sent.verb} #${sent.id} of ${sent.msg} (${sent.messageId}) by m${sent.member}/${sent.group}`
    if (sent.fresh && event.outcome.code !== 0) {
      fail(
        Invariants.settleReplies,
        at,
        `${what}, sent soon after the delivery, was refused: 0x${event.outcome.code.toString(16)} ${event.outcome.reasonString ?? ''}`,
      )
    }
    if (sent.repeat && event.outcome.code === 0) {
      fail(Invariants.settleReplies, at, `${what}: a repeated $ack of an acked message got PUBACK 0`)
    }
  }
}

/** Invariant 7: the broker closes no connection, and a persistent session is always there. */
function checkConnections(events: readonly Stamped[], fail: Fail): void {
  for (const [at, event] of events.entries()) {
    if (event.k === 'closed') {
      const who = event.member === 'publisher' ? 'the publisher' : `m${event.member}`
      fail(Invariants.sessions, at, `the broker closed the connection of ${who}`)
    }
    if (event.k === 'reconn' && !event.sessionPresent) {
      fail(Invariants.sessions, at, `m${event.member} reconnected with Clean Start 0 and got no session`)
    }
  }
}

/**
 * Invariant 3, ordered modes (`partition`, `strict`; maxInflightPerPartition 1). The docs promise
 * "FIFO per partition ... at most maxInflightPerPartition unsettled deliveries, so order holds across
 * retries: nothing after a message waiting for its retry is delivered". The stricter reading checked
 * here, per group and partition: when a delivery of seq s arrives, every message of a lower seq in the
 * partition that the group ever gets was delivered to it before, and is (possibly) settled already.
 */
function checkOrder(index: TraceIndex, fail: Fail): void {
  const byPartition = new Map<number, Array<{ msg: string; seq: number }>>()
  for (const [msg, id] of index.ids) {
    const list = byPartition.get(id.partition) ?? []
    list.push({ msg, seq: id.seq })
    byPartition.set(id.partition, list)
  }
  for (const [at, event] of index.events.entries()) {
    if (event.k !== 'deliver') continue
    const id = index.ids.get(event.msg)
    if (id === undefined) continue
    for (const earlier of byPartition.get(id.partition) ?? []) {
      if (earlier.seq >= id.seq) continue
      const got = index.deliveries.get(key(event.group, earlier.msg))
      if (got === undefined || got.length === 0) continue
      const what = `${event.msg} (${id.id}, delivery-count ${event.count}) to m${event.member}/${event.group}`
      if (got[0]!.at > at) {
        fail(
          Invariants.order,
          at,
          `${what} before the first delivery of ${earlier.msg} (${id.partition}-${earlier.seq}) at #${got[0]!.at}`,
        )
      } else if (!index.possiblySettled(event.group, earlier.msg, at)) {
        fail(
          Invariants.order,
          at,
          `${what} while the earlier ${earlier.msg} (${id.partition}-${earlier.seq}) is not settled for the group`,
        )
      }
    }
  }
}

/** Invariant 3, keys: one partition per `partition-key`, seqs in publish order. */
function checkKeys(index: TraceIndex, fail: Fail): void {
  const byKey = new Map<string, Array<{ msg: string; order: number }>>()
  for (const [msg, p] of index.published) {
    if (p.key === undefined) continue
    const list = byKey.get(p.key) ?? []
    list.push({ msg, order: p.order })
    byKey.set(p.key, list)
  }
  const at = index.events.length
  for (const [k, messages] of byKey) {
    messages.sort((a, b) => a.order - b.order)
    let previous: { msg: string; partition: number; seq: number } | undefined
    for (const { msg } of messages) {
      const id = index.ids.get(msg)
      if (id === undefined) continue
      if (previous !== undefined) {
        if (previous.partition !== id.partition) {
          fail(
            Invariants.order,
            at,
            `key ${k}: ${previous.msg} went to partition ${previous.partition}, ${msg} to ${id.partition}`,
          )
        } else if (!(previous.seq < id.seq)) {
          fail(
            Invariants.order,
            at,
            `key ${k}: ${msg} (${id.id}) was published after ${previous.msg} (${previous.partition}-${previous.seq})`,
          )
        }
      }
      previous = { msg, partition: id.partition, seq: id.seq }
    }
  }
}

/** Invariants 1 and 5, after the drain. */
function checkEnd(spec: SequenceSpec, index: TraceIndex, final: FinalState, fail: Fail, end: number): void {
  if (final.drainProblem !== undefined) fail(Invariants.endState, end, final.drainProblem)
  const groups = index.groups()
  // Dead letters: each one stands for a settle the contract allows, at most one per group and message.
  const letters = new Map<Key, number>()
  for (const letter of final.deadLetters) {
    const d = letter.deadLetter
    const msg = letter.payloadUtf8 ?? ''
    const what = `dead letter ${letter.id} (${msg}, ${d.originalMessageId}, group ${d.originalGroup}, ${d.reason})`
    const k = key(d.originalGroup, msg)
    letters.set(k, (letters.get(k) ?? 0) + 1)
    if (letters.get(k) === 2) fail(Invariants.endState, end, `${what}: dead-lettered twice for the group`)
    if (d.originalQueue !== spec.queue)
      fail(Invariants.endState, end, `${what}: dlq-original-queue ${d.originalQueue}`)
    if (!groups.includes(d.originalGroup)) fail(Invariants.endState, end, `${what}: not a group of the queue`)
    if (!index.published.has(msg)) fail(Invariants.endState, end, `${what}: not a published message`)
    const id = index.ids.get(msg)
    if (id !== undefined && id.id !== d.originalMessageId)
      fail(Invariants.endState, end, `${what}: the message was delivered as ${id.id}`)
    const acked = index.confirmedSettle(d.originalGroup, msg, ['ack'])
    if (acked !== undefined)
      fail(Invariants.endState, end, `${what}: the group acked it with PUBACK 0 at #${acked}`)
    const rejects = [...index.settles.values()].filter(
      (s) =>
        s.sent.verb === 'reject' &&
        s.sent.group === d.originalGroup &&
        s.sent.msg === msg &&
        (s.code === undefined || s.code === 'lost' || s.code === 0),
    )
    if (d.reason === 'rejected') {
      if (rejects.length === 0) fail(Invariants.endState, end, `${what}: the group never sent $reject for it`)
      else if (!rejects.some((s) => s.sent.reason === d.rejectReason))
        fail(Invariants.endState, end, `${what}: reason "${d.rejectReason}" is not what the $reject said`)
    } else if (d.reason === 'max-deliveries') {
      if (d.deliveryCount < spec.settings.retry.maxDeliveries)
        fail(Invariants.endState, end, `${what}: dlq-delivery-count ${d.deliveryCount} < maxDeliveries`)
    } else {
      fail(Invariants.endState, end, `${what}: unexpected reason (no expiry, no total timeout in the model)`)
    }
  }
  // A $reject with PUBACK 0 moved the message to the dead letters in the same write.
  for (const s of index.settles.values()) {
    if (s.sent.verb !== 'reject' || s.code !== 0) continue
    if (!letters.has(key(s.sent.group, s.sent.msg)))
      fail(
        Invariants.endState,
        end,
        `$reject #${s.sent.id} of ${s.sent.msg} by ${s.sent.group} got PUBACK 0, and no dead letter`,
      )
  }
  if (final.drainProblem !== undefined) return
  for (const group of groups) {
    for (const msg of index.published.keys()) {
      if (!index.stored(msg) || !index.must(group, msg)) continue
      const k = key(group, msg)
      if (index.confirmedSettle(group, msg, ['ack']) !== undefined || letters.has(k)) continue
      // An $ack whose PUBACK was lost (disconnect, kill) may have been written; the drain found the
      // queue empty (checked below), so it was.
      if (index.lostAck(group, msg)) continue
      const got = index.deliveries.get(k) ?? []
      fail(
        Invariants.delivery,
        end,
        `${msg} (PUBACK 0) was ${got.length === 0 ? 'never delivered' : `delivered ${got.length}x but never acked`} to group ${group}, and is not among its dead letters`,
      )
    }
  }
  const stats = final.stats
  if (stats === undefined) {
    if (index.published.size > 0 || groups.length > 0)
      fail(Invariants.endState, end, 'the admin API does not know the queue')
    return
  }
  if (stats.depth !== 0 || stats.inflight !== 0)
    fail(Invariants.endState, end, `depth ${stats.depth}, inflight ${stats.inflight} after the drain`)
  for (const g of stats.groups) {
    if (!groups.includes(g.name))
      fail(Invariants.endState, end, `the admin API lists group ${g.name}, never subscribed`)
    if (g.backlog !== 0 || g.inflight !== 0)
      fail(
        Invariants.endState,
        end,
        `group ${g.name}: backlog ${g.backlog}, inflight ${g.inflight} after the drain`,
      )
  }
  for (const group of index.sureFrom.keys()) {
    if (!stats.groups.some((g) => g.name === group))
      fail(
        Invariants.endState,
        end,
        `group ${group} existed (SUBACK or delivery) and is gone from the admin API`,
      )
  }
}
