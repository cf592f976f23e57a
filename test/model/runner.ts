/**
 * Runs one operation sequence against a real `spool start` child with real mqtt.js 5 clients and
 * records the trace the checker judges. Each sequence has its own queue, so many run at once on one
 * broker. A `crash` step waits at the broker's crash barrier: the broker is killed once every running
 * sequence on it has reached a crash step (or finished), then restarted on the same data dir.
 *
 * Every wait is bounded: PUBACK / SUBACK / CONNACK by TIMEOUT_MS, the drain by DRAIN_TIMEOUT_MS. The
 * only timer that is not a bounded wait for an answer is the `timeout` step, whose purpose is to let
 * time pass (the delivery timeout is what it tests).
 */
import type { TestContext } from 'node:test'
import type { Socket } from 'node:net'
import { setTimeout as delay } from 'node:timers/promises'
import type { IClientOptions, IPublishPacket, MqttClient } from 'mqtt'
import { callApi, seg } from '../helpers/admin.js'
import { connackOf, connectClient, TIMEOUT_MS } from '../helpers/server.js'
import { within } from '../helpers/wait.js'
import { formatOp, type Op, type SequenceSpec, type SettleVerb } from './sequence.js'
import type { DeadLetterJson, FinalState, Outcome, QueueJson, Stamped, TraceEvent } from './trace.js'

/** A settle sent within this fraction of the delivery timeout after the delivery counts as fresh. */
export const FRESH_FRACTION = 0.3
/** No settle counts as fresh while the last PUBACK took this fraction of the delivery timeout or more. */
const LAG_FRACTION = 0.1
/** Session Expiry Interval of persistent members: longer than any run. */
const SESSION_EXPIRY_S = 300
const DRAIN_TIMEOUT_MS = 20_000
const DRAIN_POLL_MS = 50

/** The broker a sequence runs on, as it is now (ports change on a restart). */
export interface BrokerLink {
  readonly mqttPort: number
  readonly httpBase: string
  /** A crash step: resolves once the broker was killed and runs again. */
  crash(run: SequenceRun): Promise<void>
  /** The sequence is done with the broker (it no longer holds up a crash). */
  leave(run: SequenceRun): void
}

/** A delivery a member holds: received on its current connection, no `$ack`/`$nack`/`$reject` sent. */
interface Held {
  readonly msg: string
  readonly messageId: string
  readonly receivedAtMs: number
  /** Receipt, or the send of the last `$extend` that got PUBACK 0. */
  freshFromMs: number
}

class Member {
  client: MqttClient | undefined
  /** Which connection is current; deliveries to an older one are not held. */
  connection = 0
  online = false
  retired = false
  autoAck = false
  readonly held = new Map<string, Held>()
  constructor(
    readonly index: number,
    readonly group: string,
    readonly persistent: boolean,
    readonly clientId: string,
  ) {}
}

/** Thrown when the broker stops answering a live connection: the run ends there. */
class Stuck extends Error {}

export class SequenceRun {
  readonly events: Stamped[] = []
  private readonly startedMs = Date.now()
  private readonly members: Member[] = []
  private readonly outstanding = new Set<Promise<void>>()
  /** Per group, messages whose `$ack` got PUBACK 0 (for repeated acks), in that order. */
  private readonly acked = new Map<string, Array<{ msg: string; messageId: string }>>()
  private publisher: MqttClient | undefined
  private publisherConnection = 0
  private published = 0
  private settleIds = 0
  private clientIds = 0
  private readonly expectClose = new Set<MqttClient>()
  private stuck: Stuck | undefined
  /** `$ack` / `$reject` sent per group and message whose PUBACK has not come yet. */
  private readonly settling = new Map<string, number>()
  private readonly pendingAnswers = new Map<MqttClient, Set<() => void>>()
  /** Time from send to PUBACK of the last answered publish: how far behind the broker is. */
  private lastRoundTripMs = 0

  constructor(
    readonly spec: SequenceSpec,
    private readonly broker: BrokerLink,
    private readonly t: TestContext,
  ) {}

  private get topic(): string {
    return `$queue/${this.spec.queue}`
  }

  private record(event: TraceEvent): number {
    this.events.push({ ...event, atMs: Date.now() - this.startedMs })
    return this.events.length - 1
  }

  async run(): Promise<FinalState> {
    try {
      for (const [index, op] of this.spec.ops.entries()) {
        this.record({ k: 'op', index, text: formatOp(op) })
        await this.step(op)
        this.throwIfStuck()
      }
      return await this.drain()
    } catch (error) {
      if (!(error instanceof Stuck)) throw error
      return { drainProblem: undefined, stats: undefined, deadLetters: [], aborted: error.message }
    } finally {
      await this.closeAll()
      this.broker.leave(this)
    }
  }

  private throwIfStuck(): void {
    if (this.stuck !== undefined) throw this.stuck
  }

  private async step(op: Op): Promise<void> {
    switch (op.op) {
      case 'sub':
        return this.subscribe(op.member, `g${op.group}`, op.persistent)
      case 'unsub':
        return this.unsubscribe(this.memberAt(op.member))
      case 'disc':
        return this.disconnect(this.memberAt(op.member), op.abrupt)
      case 'reconn':
        return this.reconnect(this.memberAt(op.member))
      case 'pub':
        return this.publish(op.key, op.count, op.wait)
      case 'settle': {
        const member = this.onlineMember(op.member, formatOp(op))
        if (member === undefined) return
        const held = [...member.held.values()].sort((a, b) => a.receivedAtMs - b.receivedAtMs)
        const target = held[op.pick % Math.max(1, held.length)]
        if (target === undefined) {
          this.record({ k: 'note', text: `m${member.index} holds no delivery` })
          return
        }
        const sent = this.settle(member, op.verb, target, {
          groupId: op.groupId,
          delayMs: op.delayMs,
          repeat: false,
        })
        return this.maybeWait(sent, op.wait)
      }
      case 'ackAll': {
        const member = this.onlineMember(op.member, formatOp(op))
        if (member === undefined) return
        const sent = Promise.all(
          [...member.held.values()].map((held) =>
            this.settle(member, 'ack', held, { groupId: false, delayMs: undefined, repeat: false }),
          ),
        ).then(() => undefined)
        return this.maybeWait(sent, op.wait)
      }
      case 'reack': {
        const member = this.onlineMember(op.member, formatOp(op))
        if (member === undefined) return
        const acked = this.acked.get(member.group) ?? []
        const target = acked[op.pick % Math.max(1, acked.length)]
        if (target === undefined) {
          this.record({ k: 'note', text: `group ${member.group} has acked nothing yet` })
          return
        }
        const held: Held = { ...target, receivedAtMs: 0, freshFromMs: 0 }
        return this.settle(member, 'ack', held, { groupId: true, delayMs: undefined, repeat: true })
      }
      case 'timeout': {
        // The step is time passing: every delivery held now times out, and its backoff runs out.
        const { deliveryTimeoutMs, retry } = this.spec.settings
        await delay(deliveryTimeoutMs + retry.maxDelayMs + 100)
        return
      }
      case 'crash':
        await this.broker.crash(this)
        this.record({ k: 'restart' })
        return
    }
  }

  private maybeWait(sent: Promise<void>, wait: boolean): Promise<void> {
    if (wait) return sent
    this.track(sent)
    return Promise.resolve()
  }

  /** Keeps a PUBACK the step did not wait for; a Stuck one ends the run at the next step. */
  private track(promise: Promise<void>): void {
    const settled: Promise<void> = promise.then(
      () => void this.outstanding.delete(settled),
      (error: unknown) => {
        this.outstanding.delete(settled)
        if (error instanceof Stuck) this.stuck ??= error
        else this.stuck ??= new Stuck(String(error))
      },
    )
    this.outstanding.add(settled)
  }

  private memberAt(index: number): Member {
    const member = this.members[index]
    if (member === undefined) throw new Error(`sequence ${this.spec.seed}: no member m${index}`)
    return member
  }

  private onlineMember(index: number, what: string): Member | undefined {
    const member = this.memberAt(index)
    if (member.online && member.client !== undefined) return member
    this.record({ k: 'note', text: `${what}: m${index} is not online` })
    return undefined
  }

  // ---- connections ----

  private async connect(member: Member): Promise<MqttClient> {
    const connection = ++member.connection
    const options: IClientOptions = {
      clientId: member.clientId,
      clean: !member.persistent,
      connectTimeout: TIMEOUT_MS,
      ...(member.persistent ? { properties: { sessionExpiryInterval: SESSION_EXPIRY_S } } : {}),
    }
    try {
      const client = await connectClient(this.t, this.broker.mqttPort, options, (c) => {
        ;(c.stream as Socket).setNoDelay(true)
        member.client = c
        member.online = true
        c.on('message', (topic, payload, packet) =>
          this.onDelivery(member, connection, topic, payload, packet),
        )
        c.on('error', (err) => this.record({ k: 'note', text: `m${member.index}: ${err.message}` }))
        c.on('close', () => this.onClose(c, member, connection))
      })
      return client
    } catch (error) {
      member.online = false
      throw new Stuck(`m${member.index} could not connect: ${String(error)}`)
    }
  }

  private onClose(client: MqttClient, member: Member, connection: number): void {
    if (this.expectClose.has(client) || member.connection !== connection || !member.online) return
    this.record({ k: 'closed', member: member.index })
    this.goOffline(member)
    client.end(true)
    this.losePending(client)
  }

  private goOffline(member: Member): void {
    member.online = false
    member.held.clear()
    if (!member.persistent) member.retired = true
  }

  /** Ends a client on purpose; its pending PUBACKs become `lost`. */
  private async endClient(client: MqttClient | undefined, abrupt: boolean): Promise<void> {
    if (client === undefined) return
    this.expectClose.add(client)
    if (abrupt) {
      ;(client.stream as Socket).destroy()
      client.end(true)
    } else {
      await within(client.endAsync(), TIMEOUT_MS, 'a client to disconnect').catch(() => client.end(true))
    }
    this.losePending(client)
  }

  /**
   * Sends a QoS 1 publish with `send` and calls `onOutcome` once: with the PUBACK, or `lost` when the
   * test ends or loses the connection first (mqtt.js never calls back the pending publishes of a
   * Clean Start 0 client that closes).
   */
  private answered(
    client: MqttClient,
    onOutcome: (outcome: Outcome) => void,
    send: (callback: (err?: Error, packet?: unknown) => void) => void,
  ): void {
    let pending = this.pendingAnswers.get(client)
    if (pending === undefined) {
      pending = new Set()
      this.pendingAnswers.set(client, pending)
    }
    const set = pending
    let done = false
    const sentMs = Date.now()
    const answer = (outcome: Outcome) => {
      if (done) return
      done = true
      if (outcome !== 'lost') this.lastRoundTripMs = Date.now() - sentMs
      set.delete(lose)
      onOutcome(outcome)
    }
    const lose = () => answer('lost')
    set.add(lose)
    send((err, packet) => answer(outcomeOf(err, packet)))
  }

  /** The connection is gone: its PUBACKs that did not come are lost. */
  private losePending(client: MqttClient | undefined): void {
    if (client === undefined) return
    for (const lose of [...(this.pendingAnswers.get(client) ?? [])]) lose()
    this.pendingAnswers.delete(client)
  }

  private async subscribe(index: number, group: string, persistent: boolean): Promise<void> {
    const member = new Member(index, group, persistent, this.clientId(`m${index}`))
    this.members[index] = member
    const client = await this.connect(member)
    this.record({ k: 'subSent', member: index, group, persistent })
    const granted = await within(
      client.subscribeAsync(this.topic, {
        qos: 1,
        properties: { userProperties: { 'consumer-group': group } },
      }),
      TIMEOUT_MS,
      `SUBACK for m${index}`,
    ).catch((error: unknown) => {
      if (!member.online) return undefined // a crash or close came first
      throw new Stuck(`m${index}: no SUBACK: ${String(error)}`)
    })
    const code = granted?.[0]?.qos
    this.record({ k: 'subDone', member: index, group, code: code ?? 'lost' })
  }

  private async unsubscribe(member: Member): Promise<void> {
    const client = member.client
    if (!member.online || client === undefined) {
      this.record({ k: 'note', text: `unsub: m${member.index} is not online` })
      return
    }
    this.record({ k: 'unsub', member: member.index })
    member.online = false
    member.held.clear()
    member.retired = true
    this.expectClose.add(client)
    await within(client.unsubscribeAsync(this.topic), TIMEOUT_MS, `UNSUBACK for m${member.index}`).catch(
      (error: unknown) => {
        throw new Stuck(`m${member.index}: no UNSUBACK: ${String(error)}`)
      },
    )
    await this.endClient(client, false)
  }

  private async disconnect(member: Member, abrupt: boolean): Promise<void> {
    if (!member.online) {
      this.record({ k: 'note', text: `disc: m${member.index} is not online` })
      return
    }
    this.record({ k: 'disc', member: member.index, abrupt })
    this.goOffline(member)
    await this.endClient(member.client, abrupt)
  }

  private async reconnect(member: Member): Promise<void> {
    if (member.online || member.retired) {
      this.record({ k: 'note', text: `reconn: m${member.index} is ${member.online ? 'online' : 'gone'}` })
      return
    }
    const client = await this.connect(member)
    const sessionPresent = connackOf(client).sessionPresent
    this.record({ k: 'reconn', member: member.index, sessionPresent })
    if (!sessionPresent) {
      // The broker forgot the session: the member is no consumer any more (the checker reports it).
      this.goOffline(member)
      member.retired = true
      await this.endClient(client, false)
    }
  }

  private clientId(suffix: string): string {
    return `model-s${this.spec.seed}-${suffix}-${++this.clientIds}`
  }

  private async ensurePublisher(): Promise<MqttClient> {
    if (this.publisher !== undefined && this.publisher.connected) return this.publisher
    const connection = ++this.publisherConnection
    const client = await connectClient(
      this.t,
      this.broker.mqttPort,
      { clientId: this.clientId('pub'), connectTimeout: TIMEOUT_MS },
      (c) => {
        ;(c.stream as Socket).setNoDelay(true)
        c.on('error', (err) => this.record({ k: 'note', text: `publisher: ${err.message}` }))
        c.on('close', () => {
          if (this.expectClose.has(c) || connection !== this.publisherConnection) return
          this.record({ k: 'closed', member: 'publisher' })
          c.end(true)
          this.losePending(c)
        })
      },
    ).catch((error: unknown) => {
      throw new Stuck(`publisher could not connect: ${String(error)}`)
    })
    this.publisher = client
    return client
  }

  // ---- publishing and settling ----

  private async publish(key: number | undefined, count: number, wait: boolean): Promise<void> {
    const client = await this.ensurePublisher()
    const acks: Array<Promise<void>> = []
    for (let i = 0; i < count; i++) {
      const msg = `${this.spec.seed}:${this.published++}`
      const partitionKey = key === undefined ? undefined : `k${key}`
      this.record({ k: 'pubSent', msg, key: partitionKey })
      acks.push(
        new Promise<void>((resolve) => {
          this.answered(
            client,
            (outcome) => {
              this.record({ k: 'pubDone', msg, outcome })
              resolve()
            },
            (callback) =>
              client.publish(
                this.topic,
                msg,
                {
                  qos: 1,
                  ...(partitionKey === undefined
                    ? {}
                    : { properties: { userProperties: { 'partition-key': partitionKey } } }),
                },
                callback,
              ),
          )
        }),
      )
    }
    const all = Promise.all(acks).then(() => undefined)
    if (!wait) {
      this.track(all)
      return
    }
    await within(all, TIMEOUT_MS, 'PUBACKs').catch((error: unknown) => {
      throw new Stuck(`no PUBACK for a publish: ${String(error)}`)
    })
  }

  private settle(
    member: Member,
    verb: SettleVerb,
    held: Held,
    options: { groupId: boolean; delayMs: number | undefined; repeat: boolean },
  ): Promise<void> {
    const client = member.client
    if (client === undefined) return Promise.resolve()
    const nowMs = Date.now()
    const current = member.held.get(held.msg) === held
    const groupKey = `${member.group}\u0000${held.msg}`
    const fresh =
      !options.repeat &&
      current &&
      member.online &&
      // An earlier $ack/$reject of the group may still settle this very delivery (message-ids name
      // messages, not deliveries): then this one is rightly refused as already settled.
      (this.settling.get(groupKey) ?? 0) === 0 &&
      // The delivery timeout runs from the broker's decision, before its write and send: a broker that
      // answers slowly right now may have let a just-received delivery time out already.
      this.lastRoundTripMs < this.spec.settings.deliveryTimeoutMs * LAG_FRACTION &&
      nowMs - held.freshFromMs < this.spec.settings.deliveryTimeoutMs * FRESH_FRACTION
    const ends = (verb === 'ack' || verb === 'reject') && !options.repeat
    if (ends) this.settling.set(groupKey, (this.settling.get(groupKey) ?? 0) + 1)
    const id = ++this.settleIds
    const reason = verb === 'reject' ? `why-${id}` : undefined
    this.record({
      k: 'settleSent',
      id,
      member: member.index,
      group: member.group,
      verb,
      msg: held.msg,
      messageId: held.messageId,
      fresh,
      repeat: options.repeat,
      reason,
    })
    if (verb !== 'extend' && current) member.held.delete(held.msg)
    const userProperties: Record<string, string> = { 'message-id': held.messageId }
    if (options.groupId) userProperties['group-id'] = member.group
    if (options.delayMs !== undefined) userProperties['delay-ms'] = String(options.delayMs)
    if (reason !== undefined) userProperties['reason'] = reason
    const done = new Promise<void>((resolve) => {
      this.answered(
        client,
        (outcome) => {
          this.record({ k: 'settleDone', id, outcome })
          if (ends) {
            this.settling.set(groupKey, (this.settling.get(groupKey) ?? 1) - 1)
            // Settled for the group (or unknown): nobody in the group holds it any more.
            if (outcome === 'lost' || outcome.code === 0) {
              for (const other of this.members) if (other.group === member.group) other.held.delete(held.msg)
            }
          }
          if (outcome !== 'lost' && outcome.code === 0) {
            if (verb === 'extend' && member.held.get(held.msg) === held) held.freshFromMs = nowMs
            if (verb === 'ack' && !options.repeat) {
              const list = this.acked.get(member.group) ?? []
              list.push({ msg: held.msg, messageId: held.messageId })
              this.acked.set(member.group, list)
            }
          }
          resolve()
        },
        (callback) =>
          client.publish(`${this.topic}/$${verb}`, '', { qos: 1, properties: { userProperties } }, callback),
      )
    })
    return within(done, TIMEOUT_MS, `PUBACK of $${verb} ${held.messageId}`).catch((error: unknown) => {
      if (!member.online) return
      throw new Stuck(`m${member.index}: no PUBACK for $${verb} ${held.messageId}: ${String(error)}`)
    })
  }

  private onDelivery(
    member: Member,
    connection: number,
    topic: string,
    payload: Buffer,
    packet: IPublishPacket,
  ): void {
    const msg = payload.toString()
    const props = packet.properties?.userProperties ?? {}
    const one = (name: string): string | undefined => {
      const value = props[name]
      return typeof value === 'string' ? value : value === undefined ? undefined : JSON.stringify(value)
    }
    const messageId = one('message-id')
    const heldNow = member.online && member.connection === connection
    this.record({
      k: 'deliver',
      member: member.index,
      group: member.group,
      topic,
      msg,
      messageId,
      partition: one('partition'),
      groupId: one('group-id'),
      count: Number(one('delivery-count')),
      connection,
      held: heldNow,
    })
    if (!heldNow || messageId === undefined) return
    // A delivery of the message elsewhere in the group means an earlier holder's one timed out.
    for (const other of this.members) if (other.group === member.group) other.held.delete(msg)
    const nowMs = Date.now()
    const held: Held = { msg, messageId, receivedAtMs: nowMs, freshFromMs: nowMs }
    member.held.set(msg, held)
    if (member.autoAck) {
      this.track(this.settle(member, 'ack', held, { groupId: false, delayMs: undefined, repeat: false }))
    }
  }

  // ---- crash barrier callbacks ----

  /** The broker is about to be killed: everything online is gone with it. */
  onKill(): void {
    this.record({ k: 'crash' })
    for (const member of this.members) {
      if (member.client !== undefined) this.expectClose.add(member.client)
      if (member.online) this.goOffline(member)
    }
    if (this.publisher !== undefined) this.expectClose.add(this.publisher)
  }

  /** The broker is dead: fail the pending publishes of every client as lost. */
  afterKill(): void {
    for (const client of [...this.members.map((m) => m.client), this.publisher]) {
      client?.end(true)
      this.losePending(client)
    }
    this.publisher = undefined
  }

  // ---- drain ----

  /**
   * Settles everything: reconnects offline persistent members, gives every group an online member,
   * acks every delivery at once, and polls the admin API until the queue is empty.
   */
  private async drain(): Promise<FinalState> {
    this.record({ k: 'op', index: this.spec.ops.length, text: 'drain' })
    let drainProblem: string | undefined
    try {
      await within(Promise.all([...this.outstanding]), TIMEOUT_MS, 'outstanding PUBACKs')
      this.throwIfStuck()
      for (const member of this.members) {
        if (member.persistent && !member.online && !member.retired) {
          await this.reconnect(member)
        }
      }
      const groups = new Set<string>()
      for (const event of this.events) if (event.k === 'subSent') groups.add(event.group)
      if (groups.size === 0 && this.published > 0) groups.add('g0')
      for (const group of groups) {
        if (!this.members.some((m) => m.group === group && m.online)) {
          await this.subscribe(this.members.length, group, false)
        }
      }
      for (const member of this.members) {
        if (!member.online) continue
        member.autoAck = true
        for (const held of [...member.held.values()]) {
          this.track(this.settle(member, 'ack', held, { groupId: false, delayMs: undefined, repeat: false }))
        }
      }
      drainProblem = await this.untilEmpty()
    } catch (error) {
      if (!(error instanceof Stuck)) throw error
      drainProblem = error.message
    }
    const stats = await this.queueStats()
    const deadLetters = await this.deadLetters()
    return { drainProblem, stats, deadLetters, aborted: undefined }
  }

  /** Polls until depth and in-flight are 0 and no PUBACK is pending; the problem if not in time. */
  private async untilEmpty(): Promise<string | undefined> {
    const deadline = Date.now() + DRAIN_TIMEOUT_MS
    let stats: QueueJson | undefined
    for (;;) {
      stats = await this.queueStats()
      const empty = stats === undefined ? this.published === 0 : stats.depth === 0 && stats.inflight === 0
      this.throwIfStuck()
      if (empty && this.outstanding.size === 0) return undefined
      if (Date.now() > deadline) break
      await delay(DRAIN_POLL_MS)
    }
    const held = this.members.flatMap((m) => [...m.held.keys()])
    return (
      `not drained after ${DRAIN_TIMEOUT_MS} ms: ${JSON.stringify(stats)}; ` +
      `${this.outstanding.size} PUBACKs pending; held: ${held.join(' ') || 'nothing'}`
    )
  }

  private async queueStats(): Promise<QueueJson | undefined> {
    const res = await callApi<QueueJson>(this.broker.httpBase, 'GET', `/queues/${seg(this.spec.queue)}`)
    return res.status === 200 ? res.body : undefined
  }

  private async deadLetters(): Promise<DeadLetterJson[]> {
    const res = await callApi<{ messages: DeadLetterJson[] }>(
      this.broker.httpBase,
      'GET',
      `/queues/${seg(this.spec.queue)}/dead-letters?limit=1000`,
    )
    return res.status === 200 ? res.body.messages : []
  }

  private async closeAll(): Promise<void> {
    const clients = [...this.members.map((m) => m.client), this.publisher]
    for (const member of this.members) member.online = false
    await Promise.all(clients.map((client) => this.endClient(client, false)))
  }
}

function outcomeOf(err: Error | undefined, packet: unknown): Outcome {
  const ack = packet as { reasonCode?: number; properties?: { reasonString?: string } } | undefined
  const code = (err as { code?: unknown } | undefined)?.code
  if (err !== undefined && err !== null && typeof code !== 'number') return 'lost'
  return {
    code: typeof code === 'number' ? code : (ack?.reasonCode ?? 0),
    reasonString: ack?.properties?.reasonString,
  }
}
