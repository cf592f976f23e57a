/**
 * What a sequence run records: every operation sent and every answer and delivery received, in the
 * order the test process saw them. The checker judges the contract on this trace alone.
 */
import type { SettleVerb } from './sequence.js'

/** A PUBACK's reason code (and Reason String), or `lost`: the connection closed before it came. */
export type Outcome = { code: number; reasonString: string | undefined } | 'lost'

export type TraceEvent =
  /** Operation `index` of the sequence starts (`text` is its compact form, resolved). */
  | { k: 'op'; index: number; text: string }
  | { k: 'pubSent'; msg: string; key: string | undefined }
  | { k: 'pubDone'; msg: string; outcome: Outcome }
  | { k: 'subSent'; member: number; group: string; persistent: boolean }
  | { k: 'subDone'; member: number; group: string; code: number | 'lost' }
  | {
      k: 'deliver'
      member: number
      group: string
      topic: string
      msg: string
      messageId: string | undefined
      partition: string | undefined
      groupId: string | undefined
      count: number
      /** The member's connection it came on (1, 2, ... per member). */
      connection: number
      /** False when it reached a connection the member was leaving (after UNSUBSCRIBE / DISCONNECT sent). */
      held: boolean
    }
  | {
      k: 'settleSent'
      id: number
      member: number
      group: string
      verb: SettleVerb
      msg: string
      messageId: string
      /**
       * The settle names the member's current delivery, sent well inside its delivery timeout on the
       * same connection and broker process: the contract says it succeeds.
       */
      fresh: boolean
      /** A repeated `$ack` of a message already acked with PUBACK 0: the contract says it is refused. */
      repeat: boolean
      reason: string | undefined
    }
  | { k: 'settleDone'; id: number; outcome: Outcome }
  | { k: 'unsub'; member: number }
  | { k: 'disc'; member: number; abrupt: boolean }
  | { k: 'reconn'; member: number; sessionPresent: boolean }
  /** A connection closed that the test did not close (neither a disconnect step nor a crash). */
  | { k: 'closed'; member: number | 'publisher' }
  | { k: 'crash' }
  | { k: 'restart' }
  | { k: 'note'; text: string }

export type Stamped = TraceEvent & { atMs: number }

/** The queue as the admin API shows it (`GET /api/v1/queues/{queue}`). */
export interface QueueJson {
  name: string
  depth: number
  inflight: number
  consumers: number
  groups: Array<{ name: string; consumers: string[]; backlog: number; inflight: number }>
}

/** A dead letter as the admin API lists it (`GET /api/v1/queues/{queue}/dead-letters`). */
export interface DeadLetterJson {
  id: string
  payloadUtf8?: string
  deadLetter: {
    reason: string
    originalQueue: string
    originalGroup: string
    originalMessageId: string
    deliveryCount: number
    rejectReason?: string
  }
}

/** How the sequence ended: the drain phase, and what the admin API said afterwards. */
export interface FinalState {
  /** Undefined when the drain finished: every group settled everything, depth 0. */
  drainProblem: string | undefined
  stats: QueueJson | undefined
  deadLetters: DeadLetterJson[]
  /** The run stopped early (a PUBACK or SUBACK that never came while the broker was up). */
  aborted: string | undefined
}

export function formatOutcome(outcome: Outcome): string {
  if (outcome === 'lost') return 'lost'
  return outcome.code === 0
    ? '0'
    : `0x${outcome.code.toString(16)}${outcome.reasonString === undefined ? '' : ` "${outcome.reasonString}"`}`
}

export function formatEvent(event: Stamped, index: number): string {
  const head = `#${index} +${event.atMs}ms`
  switch (event.k) {
    case 'op':
      return `${head} --- step ${event.index}: ${event.text}`
    case 'pubSent':
      return `${head} pub ${event.msg}${event.key === undefined ? '' : ` key=${event.key}`}`
    case 'pubDone':
      return `${head} puback ${event.msg}: ${formatOutcome(event.outcome)}`
    case 'subSent':
      return `${head} subscribe m${event.member}/${event.group}${event.persistent ? ' (session)' : ''}`
    case 'subDone':
      return `${head} suback m${event.member}/${event.group}: ${event.code === 'lost' ? 'lost' : `0x${event.code.toString(16)}`}`
    case 'deliver':
      return (
        `${head} deliver m${event.member}/${event.group} ${event.msg} id=${event.messageId} p=${event.partition} ` +
        `n=${event.count}${event.groupId === event.group ? '' : ` group-id=${event.groupId}`}${event.held ? '' : ' (leaving)'}`
      )
    case 'settleSent':
      return (
        `${head} $${event.verb} #${event.id} m${event.member}/${event.group} ${event.msg} id=${event.messageId}` +
        `${event.fresh ? ' fresh' : ''}${event.repeat ? ' repeat' : ''}`
      )
    case 'settleDone':
      return `${head} settle #${event.id}: ${formatOutcome(event.outcome)}`
    case 'unsub':
      return `${head} unsubscribe m${event.member}`
    case 'disc':
      return `${head} disconnect m${event.member}${event.abrupt ? ' (abrupt)' : ''}`
    case 'reconn':
      return `${head} reconnect m${event.member}: sessionPresent=${event.sessionPresent}`
    case 'closed':
      return `${head} connection of ${event.member === 'publisher' ? 'publisher' : `m${event.member}`} closed by the broker`
    case 'crash':
      return `${head} kill -9`
    case 'restart':
      return `${head} broker restarted`
    case 'note':
      return `${head} (${event.text})`
  }
}
