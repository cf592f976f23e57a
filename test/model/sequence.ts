/**
 * Operation sequences for the model-based queue test: what one sequence does to its own queue, and a
 * seeded generator of them. A sequence is abstract: "ack the 3rd delivery member 1 holds" is resolved
 * when it runs (deliveries arrive when the broker sends them), so the seed fixes the operations and
 * the queue's settings, not the interleaving.
 */
import { mulberry32, type Rng } from './prng.js'

export const Orderings = { partition: 'partition', strict: 'strict', none: 'none' } as const
export type Ordering = (typeof Orderings)[keyof typeof Orderings]

/** The `queues.declared` entry of a sequence's queue. */
export interface ModelQueueSettings {
  partitions: number
  ordering: Ordering
  deliveryTimeoutMs: number
  retry: { initialDelayMs: number; factor: number; maxDelayMs: number; maxDeliveries: number }
}

export type SettleVerb = 'ack' | 'nack' | 'reject' | 'extend'

export type Op =
  /** A new member `member` joins group `group` (SUBSCRIBE with `consumer-group`); `persistent`: Clean Start 0 + Session Expiry. */
  | { op: 'sub'; member: number; group: number; persistent: boolean }
  /** UNSUBSCRIBE, then a clean DISCONNECT: the member is gone for good (its stored membership too). */
  | { op: 'unsub'; member: number }
  /** The member's connection ends (DISCONNECT, or the socket destroyed when `abrupt`). */
  | { op: 'disc'; member: number; abrupt: boolean }
  /** An offline persistent member connects again with its session (no SUBSCRIBE). */
  | { op: 'reconn'; member: number }
  /** `count` QoS 1 publishes, with `partition-key` k<key> or none; `wait`: until their PUBACKs. */
  | { op: 'pub'; key: number | undefined; count: number; wait: boolean }
  /** A settle of the delivery at index `pick` (mod the count) of those the member holds. */
  | {
      op: 'settle'
      verb: SettleVerb
      member: number
      pick: number
      wait: boolean
      groupId: boolean
      delayMs: number | undefined
    }
  /** `$ack` of everything the member holds. */
  | { op: 'ackAll'; member: number; wait: boolean }
  /** `$ack` again of a message the member's group already acked with PUBACK 0: must be refused. */
  | { op: 'reack'; member: number; pick: number }
  /** Let the delivery timeout (plus the longest backoff) pass. */
  | { op: 'timeout' }
  /** `kill -9` of the broker, then a restart on the same data dir. */
  | { op: 'crash' }

export interface SequenceSpec {
  seed: number
  /** Steps asked for (MODEL_STEPS): part of what the seed needs to be replayed. */
  maxSteps: number
  queue: string
  settings: ModelQueueSettings
  /** Whether the sequence has `crash` steps: such sequences run on the broker that gets killed. */
  crashes: boolean
  ops: Op[]
}

export const MAX_GROUPS = 3
export const MAX_MEMBERS_PER_GROUP = 3
export const KEYS = 3
export const MAX_CRASHES = 2

/**
 * Operation kinds that are generated. A kind is switched off here only while it exposes a known,
 * reported broker bug (say which in a comment), so that the rest of the model keeps running green.
 */
export const GENERATED = {
  sub: true,
  persistentSub: true,
  unsub: true,
  disc: true,
  reconn: true,
  pub: true,
  ack: true,
  nack: true,
  reject: true,
  extend: true,
  ackAll: true,
  reack: true,
  timeout: true,
  crash: true,
} as const

type MemberPhase = 'online' | 'offline' | 'retired'

interface GenMember {
  group: number
  persistent: boolean
  phase: MemberPhase
}

/** The sequence for `seed`: settings, whether it crashes, and 1/2..1 times `maxSteps` operations. */
export function generateSequence(seed: number, maxSteps: number, crashFraction: number): SequenceSpec {
  const rng = mulberry32(seed)
  const crashes = GENERATED.crash && rng.chance(crashFraction)
  const ordering = rng.weighted<Ordering>({ partition: 6, strict: 2, none: 2 })
  const settings: ModelQueueSettings = {
    partitions: ordering === Orderings.strict ? 1 : rng.int(1, 3),
    ordering,
    deliveryTimeoutMs: rng.int(400, 600),
    retry: {
      initialDelayMs: rng.int(20, 60),
      factor: 2,
      maxDelayMs: 150,
      maxDeliveries: rng.int(3, 6),
    },
  }
  const length = rng.int(Math.max(1, Math.ceil(maxSteps / 2)), Math.max(1, maxSteps))
  const ops = generateOps(rng, length, crashes)
  return { seed, maxSteps, queue: `model/s${seed}`, settings, crashes, ops }
}

function generateOps(rng: Rng, length: number, crashes: boolean): Op[] {
  const members: GenMember[] = []
  const ops: Op[] = []
  let groups = 0
  let crashesLeft = crashes ? rng.int(1, MAX_CRASHES) : 0
  const live = (group: number) => members.filter((m) => m.group === group && m.phase !== 'retired').length
  const indexes = (phase: MemberPhase, persistent?: boolean) =>
    members.flatMap((m, i) =>
      m.phase === phase && (persistent === undefined || m.persistent === persistent) ? [i] : [],
    )

  while (ops.length < length) {
    const online = indexes('online')
    const offlinePersistent = indexes('offline', true)
    const canJoin = [...Array(groups).keys()].filter((g) => live(g) < MAX_MEMBERS_PER_GROUP)
    if (groups < MAX_GROUPS) canJoin.push(groups)
    const weights = {
      sub: GENERATED.sub && canJoin.length > 0 ? (online.length === 0 ? 8 : 2) : 0,
      unsub: GENERATED.unsub && online.length > 0 ? 0.5 : 0,
      disc: GENERATED.disc && online.length > 0 ? 1 : 0,
      reconn: GENERATED.reconn && offlinePersistent.length > 0 ? 2 : 0,
      pub: GENERATED.pub ? 5 : 0,
      ack: GENERATED.ack && online.length > 0 ? 5 : 0,
      nack: GENERATED.nack && online.length > 0 ? 1.5 : 0,
      reject: GENERATED.reject && online.length > 0 ? 0.7 : 0,
      extend: GENERATED.extend && online.length > 0 ? 0.7 : 0,
      ackAll: GENERATED.ackAll && online.length > 0 ? 1.5 : 0,
      reack: GENERATED.reack && online.length > 0 ? 0.5 : 0,
      timeout: GENERATED.timeout ? 0.6 : 0,
      crash: crashesLeft > 0 && ops.length > 0 ? 1 : 0,
    }
    const kind = rng.weighted(weights)
    switch (kind) {
      case 'sub': {
        const group = rng.pick(canJoin)
        if (group === groups) groups++
        const persistent = GENERATED.persistentSub && rng.chance(0.35)
        members.push({ group, persistent, phase: 'online' })
        ops.push({ op: 'sub', member: members.length - 1, group, persistent })
        break
      }
      case 'unsub': {
        const member = rng.pick(online)
        members[member]!.phase = 'retired'
        ops.push({ op: 'unsub', member })
        break
      }
      case 'disc': {
        const member = rng.pick(online)
        const m = members[member]!
        m.phase = m.persistent ? 'offline' : 'retired'
        ops.push({ op: 'disc', member, abrupt: rng.chance(0.3) })
        break
      }
      case 'reconn': {
        const member = rng.pick(offlinePersistent)
        members[member]!.phase = 'online'
        ops.push({ op: 'reconn', member })
        break
      }
      case 'pub':
        ops.push({
          op: 'pub',
          key: rng.chance(0.4) ? undefined : rng.int(0, KEYS - 1),
          count: rng.int(1, 3),
          wait: rng.chance(0.8),
        })
        break
      case 'ack':
      case 'nack':
      case 'reject':
      case 'extend':
        ops.push({
          op: 'settle',
          verb: kind,
          member: rng.pick(online),
          pick: rng.int(0, 9),
          wait: rng.chance(0.8),
          groupId: rng.chance(0.5),
          delayMs: kind === 'nack' && rng.chance(0.6) ? rng.int(0, 150) : undefined,
        })
        break
      case 'ackAll':
        ops.push({ op: 'ackAll', member: rng.pick(online), wait: rng.chance(0.8) })
        break
      case 'reack':
        ops.push({ op: 'reack', member: rng.pick(online), pick: rng.int(0, 9) })
        break
      case 'timeout':
        ops.push({ op: 'timeout' })
        break
      case 'crash':
        crashesLeft--
        for (const m of members) if (m.phase === 'online') m.phase = m.persistent ? 'offline' : 'retired'
        ops.push({ op: 'crash' })
        break
    }
  }
  return ops
}

/** One operation, compactly: `sub(m0:g1,p)`, `pub(k2x3!)`, `nack(m1#4,d50)` ... (`!` = not awaited). */
export function formatOp(op: Op): string {
  switch (op.op) {
    case 'sub':
      return `sub(m${op.member}:g${op.group}${op.persistent ? ',p' : ''})`
    case 'unsub':
      return `unsub(m${op.member})`
    case 'disc':
      return `disc(m${op.member}${op.abrupt ? ',abrupt' : ''})`
    case 'reconn':
      return `reconn(m${op.member})`
    case 'pub':
      return `pub(${op.key === undefined ? '-' : `k${op.key}`}x${op.count}${op.wait ? '' : '!'})`
    case 'settle': {
      const extra = `${op.delayMs === undefined ? '' : `,d${op.delayMs}`}${op.groupId ? ',gid' : ''}`
      return `${op.verb}(m${op.member}#${op.pick}${extra}${op.wait ? '' : '!'})`
    }
    case 'ackAll':
      return `ackall(m${op.member}${op.wait ? '' : '!'})`
    case 'reack':
      return `reack(m${op.member}#${op.pick})`
    case 'timeout':
      return 'timeout'
    case 'crash':
      return 'crash'
  }
}

export function formatOps(ops: readonly Op[]): string {
  return ops.map(formatOp).join(' ')
}
