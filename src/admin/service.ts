/**
 * The admin operations as a transport-neutral service: it validates raw inputs (path parameters,
 * query values, JSON bodies) before anything reaches the queue core, calls the core, and turns its
 * results into JSON-ready views. The HTTP API (./http-api.ts) is a thin layer over it; an admin gRPC
 * service would be another.
 */
import type { GroupStats, QueueAdmin, QueueStats } from '../queue/admin.js'
import { PENDING_DEAD_LETTERS_GROUP } from '../queue/dead-letters.js'
import { QueueErrorCodes } from '../queue/errors.js'
import { parseMessageId } from '../queue/message-id.js'
import {
  DEAD_LETTER_PREFIX,
  parseQueueSettingsOverrides,
  queueNameProblem,
  QueueSettingError,
  type QueueSettingsOverrides,
} from '../queue/settings.js'
import type { QueueMessage, QueueSettings } from '../queue/types.js'
import { AdminError, AdminErrorCodes } from './errors.js'

/** What the service needs of the core: its administration port. */
export type AdminQueueCore = QueueAdmin

/** A queue as the admin API shows it: the core's stats plus its pending dead letters. */
export interface QueueView {
  readonly name: string
  readonly settings: QueueSettings
  readonly depth: number
  readonly inflight: number
  readonly consumers: number
  /** Dead letters in `dlq/<name>` not redriven or purged yet. */
  readonly deadLetters: number
  readonly groups: GroupStats[]
}

/** A stored message; `payloadUtf8` only when the payload is valid UTF-8. */
export interface MessageView {
  readonly id: string
  readonly partition: number
  readonly payloadBase64: string
  readonly payloadUtf8?: string
  readonly properties: {
    readonly contentType?: string
    readonly responseTopic?: string
    readonly correlationDataBase64?: string
    readonly payloadFormatIndicator?: boolean
    /** In publish order; a key may repeat. */
    readonly userProperties: Array<[string, string]>
  }
  /** ISO 8601. */
  readonly enqueuedAt: string
  /** ISO 8601, or null without a Message Expiry Interval. */
  readonly expiresAt: string | null
}

/** A dead letter: the message plus what its `dlq-*` user properties say. */
export interface DeadLetterView extends MessageView {
  readonly deadLetter: {
    readonly reason: string | null
    readonly originalQueue: string | null
    readonly originalGroup: string | null
    readonly originalMessageId: string | null
    readonly deliveryCount: number | null
    /** The `reason` of a `$reject`, if the consumer gave one. */
    readonly rejectReason: string | null
  }
}

/** The cluster as the answering node sees it (a single node: itself, owning everything). */
export interface ClusterView {
  readonly mode: 'single' | 'cluster'
  /** `proxy` or `direct` (cluster only). */
  readonly routing?: string
  /** False while this node cannot reach etcd (it then serves no partition). */
  readonly healthy?: boolean
  readonly nodes: ReadonlyArray<{
    readonly id: string
    readonly self: boolean
    /** Up (holds a live lease); cluster only. */
    readonly alive?: boolean
    /** `host:port` of its MQTT and gRPC listeners; cluster only. */
    readonly mqtt?: string
    readonly grpc?: string
    /** Partitions it owns; cluster only. */
    readonly partitions?: number
  }>
  /** Owner of every partition of every queue; cluster only. */
  readonly queues?: ReadonlyArray<{
    readonly name: string
    readonly owners: ReadonlyArray<{ readonly partition: number; readonly owner: string | null }>
  }>
  /** Messages this node holds for partitions it could not hand to their owner yet. */
  readonly forwardBuffer?: number
}

export const PEEK_DEFAULT_LIMIT = 10
export const DEAD_LETTERS_DEFAULT_LIMIT = 100
/** Most messages one peek or dead-letter listing returns. */
export const LIST_MAX_LIMIT = 1000
/** Most dead letters one redrive moves; the core's default when no limit is given. */
export const REDRIVE_MAX_LIMIT = 100_000
export const REDRIVE_DEFAULT_LIMIT = 1000
/**
 * A redrive request is answered when the redrive is done; a paced one must finish well within the
 * 300 s that HTTP clients (fetch's headers timeout, proxies) commonly wait.
 */
export const REDRIVE_MAX_DURATION_SECONDS = 240

const utf8 = new TextDecoder('utf-8', { fatal: true })

function invalid(message: string): AdminError {
  return new AdminError(AdminErrorCodes.invalidArgument, message)
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

/** A JSON body that must be an object (absent = `{}`) with only `allowed` keys. */
function bodyObject(raw: unknown, allowed: readonly string[]): Record<string, unknown> {
  if (raw === undefined) return {}
  if (!isObject(raw)) throw invalid('request body must be a JSON object')
  for (const key of Object.keys(raw)) {
    if (!allowed.includes(key)) {
      throw invalid(`unknown field "${key}" in request body (allowed: ${allowed.join(', ')})`)
    }
  }
  return raw
}

/** An integer from a query string (string) or a JSON body (number), within `min`..`max`. */
function integerIn(raw: unknown, field: string, min: number, max: number, fallback: number): number {
  if (raw === undefined || raw === null) return fallback
  const value = typeof raw === 'string' && /^\d+$/.test(raw) ? Number(raw) : raw
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min || value > max) {
    throw invalid(`${field} must be an integer ${min}-${max}, got ${JSON.stringify(raw)}`)
  }
  return value
}

function queueName(name: string): string {
  const problem = queueNameProblem(name)
  if (problem !== undefined) throw new AdminError(QueueErrorCodes.invalidQueueName, problem)
  return name
}

/**
 * Parses settings overrides by the one settings table (src/queue/settings.ts), with the config file's
 * rules (field-named errors, unknown keys refused), keeping only the fields given: the core stores
 * them as the queue's own settings.
 */
function settingsOverrides(raw: unknown): QueueSettingsOverrides {
  if (raw === undefined) return {}
  if (!isObject(raw)) throw invalid('settings must be a JSON object')
  try {
    return parseQueueSettingsOverrides(raw)
  } catch (err) {
    if (!(err instanceof QueueSettingError)) throw err
    throw new AdminError(QueueErrorCodes.invalidSettings, `settings.${err.message}`)
  }
}

function iso(ms: number): string {
  return new Date(ms).toISOString()
}

export function messageView(message: QueueMessage): MessageView {
  const payload = Buffer.from(message.payload.buffer, message.payload.byteOffset, message.payload.byteLength)
  let text: string | undefined
  try {
    text = utf8.decode(message.payload)
  } catch {
    text = undefined // binary payload: base64 only
  }
  const { contentType, responseTopic, correlationData, payloadFormatIndicator } = message.properties
  return {
    id: message.id,
    partition: message.partition,
    payloadBase64: payload.toString('base64'),
    ...(text === undefined ? {} : { payloadUtf8: text }),
    properties: {
      ...(contentType === undefined ? {} : { contentType }),
      ...(responseTopic === undefined ? {} : { responseTopic }),
      ...(correlationData === undefined
        ? {}
        : { correlationDataBase64: Buffer.from(correlationData).toString('base64') }),
      ...(payloadFormatIndicator === undefined ? {} : { payloadFormatIndicator }),
      userProperties: [...(message.properties.userProperties ?? [])],
    },
    enqueuedAt: iso(message.enqueuedAtMs),
    expiresAt: message.expiresAtMs === undefined ? null : iso(message.expiresAtMs),
  }
}

export function deadLetterView(message: QueueMessage): DeadLetterView {
  const props = message.properties.userProperties ?? []
  const get = (key: string) => props.find(([name]) => name === key)?.[1] ?? null
  const count = get('dlq-delivery-count')
  return {
    ...messageView(message),
    deadLetter: {
      reason: get('dlq-reason'),
      originalQueue: get('dlq-original-queue'),
      originalGroup: get('dlq-original-group'),
      originalMessageId: get('dlq-original-message-id'),
      deliveryCount: count === null ? null : Number(count),
      rejectReason: get('reason'),
    },
  }
}

export class AdminService {
  constructor(
    private readonly core: AdminQueueCore,
    private readonly nodeId: string,
    /** The cluster's view, when the node is a cluster member. */
    private readonly clusterView?: () => ClusterView,
  ) {}

  listQueues(): QueueView[] {
    const all = this.core.listQueues()
    const byName = new Map(all.map((stats) => [stats.name, stats]))
    return all
      .map((stats) => this.view(stats, byName.get(DEAD_LETTER_PREFIX + stats.name)))
      .sort((a, b) => a.name.localeCompare(b.name))
  }

  getQueue(name: string): QueueView {
    const stats = this.core.queueStats(queueName(name))
    return this.view(stats, this.statsIfExists(DEAD_LETTER_PREFIX + name))
  }

  async createQueue(body: unknown): Promise<QueueView> {
    const fields = bodyObject(body, ['name', 'settings'])
    if (typeof fields.name !== 'string') throw invalid('name must be a string (the queue name)')
    const name = queueName(fields.name)
    const stats = await this.core.createQueue(name, settingsOverrides(fields.settings))
    return this.view(stats, this.statsIfExists(DEAD_LETTER_PREFIX + name))
  }

  async updateQueue(name: string, body: unknown): Promise<QueueView> {
    const fields = bodyObject(body, ['settings'])
    if (fields.settings === undefined) throw invalid('settings is required')
    const stats = await this.core.updateQueue(queueName(name), settingsOverrides(fields.settings))
    return this.view(stats, this.statsIfExists(DEAD_LETTER_PREFIX + name))
  }

  deleteQueue(name: string): Promise<void> {
    return this.core.deleteQueue(queueName(name))
  }

  async purgeQueue(name: string): Promise<{ purged: number }> {
    return { purged: await this.core.purgeQueue(queueName(name)) }
  }

  groups(name: string): GroupStats[] {
    return this.core.queueStats(queueName(name)).groups
  }

  deleteGroup(name: string, group: string): Promise<void> {
    if (group === PENDING_DEAD_LETTERS_GROUP || group.startsWith('$')) {
      // `$pending` keeps a dead-letter queue's unhandled letters; deleting it would drop them.
      throw new AdminError(
        QueueErrorCodes.invalidGroupName,
        `group "${group}" is reserved and cannot be deleted`,
      )
    }
    return this.core.deleteGroup(queueName(name), group)
  }

  async peek(name: string, limitRaw: unknown): Promise<MessageView[]> {
    const limit = integerIn(limitRaw, 'limit', 1, LIST_MAX_LIMIT, PEEK_DEFAULT_LIMIT)
    return (await this.core.peek(queueName(name), limit)).map(messageView)
  }

  async deadLetters(name: string, limitRaw: unknown): Promise<DeadLetterView[]> {
    const limit = integerIn(limitRaw, 'limit', 1, LIST_MAX_LIMIT, DEAD_LETTERS_DEFAULT_LIMIT)
    this.assertQueueOrDeadLettersExist(queueName(name))
    return (await this.core.deadLetters(name, limit)).map(deadLetterView)
  }

  /** Body `{ messageId? , limit?, ratePerSecond? }`: one dead letter by id, or up to `limit`. */
  async redrive(name: string, body: unknown): Promise<{ redriven: number }> {
    const fields = bodyObject(body, ['messageId', 'limit', 'ratePerSecond'])
    queueName(name)
    const options: { messageId?: string; limit?: number; ratePerSecond?: number } = {}
    if (fields.messageId !== undefined) {
      if (typeof fields.messageId !== 'string' || parseMessageId(fields.messageId) === undefined) {
        throw invalid(
          `messageId must be a dead letter's id "<partition>-<seq>", got ${JSON.stringify(fields.messageId)}`,
        )
      }
      if (fields.limit !== undefined) throw invalid('give messageId or limit, not both')
      options.messageId = fields.messageId
    } else {
      options.limit = integerIn(fields.limit, 'limit', 1, REDRIVE_MAX_LIMIT, REDRIVE_DEFAULT_LIMIT)
    }
    if (fields.ratePerSecond !== undefined) {
      const rate = fields.ratePerSecond
      if (typeof rate !== 'number' || !Number.isFinite(rate) || rate <= 0 || rate > 100_000) {
        throw invalid(`ratePerSecond must be a number > 0 and <= 100000, got ${JSON.stringify(rate)}`)
      }
      const seconds = (options.limit ?? 1) / rate
      if (seconds > REDRIVE_MAX_DURATION_SECONDS) {
        throw invalid(
          `redriving ${options.limit ?? 1} at ${rate}/s would take ${Math.ceil(seconds)} s; the request ` +
            `waits for the redrive, at most ${REDRIVE_MAX_DURATION_SECONDS} s: lower limit or raise ratePerSecond`,
        )
      }
      options.ratePerSecond = rate
    }
    this.assertQueueOrDeadLettersExist(name)
    return { redriven: await this.core.redrive(name, options) }
  }

  cluster(): ClusterView {
    // A single node owns every partition of every queue.
    return this.clusterView?.() ?? { mode: 'single', nodes: [{ id: this.nodeId, self: true }] }
  }

  private view(stats: QueueStats, deadLetters: QueueStats | undefined): QueueView {
    const pending = deadLetters?.groups.find((group) => group.name === PENDING_DEAD_LETTERS_GROUP)
    return {
      name: stats.name,
      settings: stats.settings,
      depth: stats.depth,
      inflight: stats.inflight,
      consumers: stats.consumers,
      deadLetters: pending?.backlog ?? 0,
      groups: stats.groups,
    }
  }

  private statsIfExists(name: string): QueueStats | undefined {
    return this.core.depth(name) === undefined ? undefined : this.core.queueStats(name)
  }

  /** Dead letters of a queue that never existed are a typo, not an empty list. */
  private assertQueueOrDeadLettersExist(name: string): void {
    if (this.core.depth(name) === undefined && this.core.depth(DEAD_LETTER_PREFIX + name) === undefined) {
      throw new AdminError(QueueErrorCodes.queueNotFound, `queue ${name} does not exist`)
    }
  }
}
