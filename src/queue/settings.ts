/**
 * Queue settings: the one field table (path, kind, limits, default, doc) and everything made from it,
 * the defaults, the parser for raw input (config file and admin API) and the check of resolved
 * settings (the core, on admin create/update). docs/configuration.md, docs/openapi.yaml and the TSDoc
 * of {@link QueueSettings} are checked against the table by test/unit/queue-settings-docs.test.ts.
 * Why a table and not a schema library: docs/adr/0006-one-queue-settings-schema.md.
 */
import { Orderings, type QueueSettings } from './types.js'

/**
 * Most partitions a queue may have; config, the admin API and the core check this one bound. 4096 is
 * what config always accepted, so every existing data dir still loads (ADR 0006). The message id
 * format (src/queue/message-id.ts, 6 digits) and storage (u32) can carry more: those are the limits of
 * their formats, not of a queue.
 */
export const MAX_QUEUE_PARTITIONS = 4096

/** Largest `maxInflightPerPartition` / `maxInflightPerConsumer`: an MQTT Receive Maximum is at most 65535. */
export const MAX_INFLIGHT = 65535

/** Largest `maxMessageBytes` (256 MiB), MQTT's largest packet. */
export const MAX_MESSAGE_BYTES = 256 * 1024 * 1024

/** What a setting's value is; `integer` and `number` have `min` and an optional `max`. */
export const SettingKinds = {
  integer: 'integer',
  number: 'number',
  boolean: 'boolean',
  enum: 'enum',
} as const
export type SettingKind = (typeof SettingKinds)[keyof typeof SettingKinds]

type Settings = QueueSettings

/** A dotted path to one value of {@link QueueSettings}, e.g. `retry.maxDeliveries`. */
export type QueueSettingPath = {
  [K in keyof Settings]: Settings[K] extends object ? `${K}.${Extract<keyof Settings[K], string>}` : K
}[keyof Settings]

/** The type of the value at `P`. */
type ValueAt<P extends string> = P extends `${infer K}.${infer L}`
  ? K extends keyof Settings
    ? L extends keyof Settings[K]
      ? Settings[K][L]
      : never
    : never
  : P extends keyof Settings
    ? Settings[P]
    : never

interface NumericSpec {
  readonly kind: typeof SettingKinds.integer | typeof SettingKinds.number
  readonly min: number
  /** Absent: no upper bound (a safe integer, or a finite number). */
  readonly max?: number
  readonly default: number
  /** One sentence for docs and TSDoc: what the setting does, its unit, what 0 means if it may be 0. */
  readonly doc: string
}
interface BooleanSpec {
  readonly kind: typeof SettingKinds.boolean
  readonly default: boolean
  readonly doc: string
}
interface EnumSpec<V extends string> {
  readonly kind: typeof SettingKinds.enum
  readonly values: readonly V[]
  readonly default: V
  readonly doc: string
}
/** The spec a value of type `V` gets (the tuples stop the union `Ordering` from being split). */
type SpecFor<V> = [V] extends [boolean]
  ? BooleanSpec
  : [V] extends [number]
    ? NumericSpec
    : [V] extends [string]
      ? EnumSpec<V>
      : never

/** One row of the table. */
export type QueueSettingField = (NumericSpec | BooleanSpec | EnumSpec<string>) & {
  readonly path: QueueSettingPath
}

const MAX = Number.MAX_SAFE_INTEGER
const HOUR_MS = 60 * 60 * 1000

/**
 * The table, keyed by path: the mapped type makes it name every setting once, with a spec that
 * fits the setting's type. Order is the order of docs and errors.
 */
const TABLE: { readonly [P in QueueSettingPath]: SpecFor<ValueAt<P>> } = {
  partitions: {
    kind: 'integer',
    min: 1,
    max: MAX_QUEUE_PARTITIONS,
    default: 10,
    doc: 'Partitions of the queue; a message goes to one, by its `partition-key` or round robin. May grow, never shrink, and change only while the queue is empty.',
  },
  ordering: {
    kind: 'enum',
    values: Object.values(Orderings),
    default: Orderings.partition,
    doc: '`partition`: FIFO per partition; `strict`: one partition, global FIFO; `none`: any consumer takes any message.',
  },
  maxInflightPerPartition: {
    kind: 'integer',
    min: 1,
    max: MAX_INFLIGHT,
    default: 1,
    doc: 'Unsettled deliveries per partition and group in the ordered modes.',
  },
  maxInflightPerConsumer: {
    kind: 'integer',
    min: 1,
    max: MAX_INFLIGHT,
    default: 100,
    doc: 'Unsettled deliveries per consumer and group.',
  },
  deliveryTimeoutMs: {
    kind: 'integer',
    min: 1,
    default: 30_000,
    doc: 'Time a consumer has to settle a delivery before it is retried.',
  },
  'durability.sync': {
    kind: 'boolean',
    default: false,
    doc: '`true` fsyncs every group commit (survives power loss); `false` survives a killed process.',
  },
  'retry.initialDelayMs': {
    kind: 'integer',
    min: 0,
    default: 5_000,
    doc: 'Backoff before the second delivery; 0 retries at once.',
  },
  'retry.factor': {
    kind: 'number',
    min: 1,
    default: 2,
    doc: 'Growth of the backoff per earlier delivery; 1 keeps it constant.',
  },
  'retry.maxDelayMs': {
    kind: 'integer',
    min: 0,
    default: 300_000,
    doc: 'Cap of the backoff.',
  },
  'retry.maxDeliveries': {
    kind: 'integer',
    min: 1,
    default: 10,
    doc: 'Deliveries to a group before the message is dead-lettered (`max-deliveries`).',
  },
  'retry.totalTimeoutMs': {
    kind: 'integer',
    min: 1,
    default: 3 * HOUR_MS,
    doc: 'Age (since publish) past which a message is dead-lettered (`timeout`) instead of retried.',
  },
  maxMessageBytes: {
    kind: 'integer',
    min: 1,
    max: MAX_MESSAGE_BYTES,
    default: 1024 * 1024,
    doc: 'Largest message accepted, counting payload, queue name and properties.',
  },
  maxDepth: {
    kind: 'integer',
    min: 1,
    default: 100_000,
    doc: 'Most messages stored in the queue (per node in a cluster).',
  },
  groupExpiryMs: {
    kind: 'integer',
    min: 0,
    default: 24 * HOUR_MS,
    doc: 'A consumer group with no member online for this long is deleted, releasing what it held; 0: never.',
  },
  implicitGroupExpiryMs: {
    kind: 'integer',
    min: 0,
    default: HOUR_MS,
    doc: 'The same for implicit groups (a SUBSCRIBE without `consumer-group`); 0: never.',
  },
}

/** Every queue setting, in table order. */
export const QUEUE_SETTING_FIELDS: readonly QueueSettingField[] = Object.entries(TABLE).map(
  ([path, spec]) => ({ ...spec, path: path as QueueSettingPath }),
)

/** The objects nested in {@link QueueSettings} (`retry`, `durability`). */
const GROUPS = [
  ...new Set(QUEUE_SETTING_FIELDS.flatMap((f) => (f.path.includes('.') ? [groupOf(f.path)] : []))),
]

function groupOf(path: string): string {
  return path.slice(0, path.indexOf('.'))
}

function leafOf(path: string): string {
  return path.slice(path.indexOf('.') + 1)
}

type Tree = Record<string, unknown>

function isObject(value: unknown): value is Tree {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

function valueAt(tree: Tree, path: string): unknown {
  if (!path.includes('.')) return tree[path]
  const group = tree[groupOf(path)]
  return isObject(group) ? group[leafOf(path)] : undefined
}

function setAt(tree: Tree, path: string, value: unknown): void {
  if (!path.includes('.')) {
    tree[path] = value
    return
  }
  const group = groupOf(path)
  const existing = tree[group]
  const inner: Tree = isObject(existing) ? existing : {}
  tree[group] = inner
  inner[leafOf(path)] = value
}

/** Settings when nothing overrides them: the table's defaults. */
export const DEFAULT_QUEUE_SETTINGS: QueueSettings = (() => {
  const tree: Tree = {}
  for (const field of QUEUE_SETTING_FIELDS) setAt(tree, field.path, field.default)
  return tree as unknown as QueueSettings
})()

/** What a field accepts, as errors and docs say it: `integer 1-4096`, `integer >= 0`, `one of …`. */
export function settingRange(field: QueueSettingField): string {
  switch (field.kind) {
    case 'integer':
    case 'number':
      return field.max === undefined
        ? `${field.kind} >= ${field.min}`
        : `${field.kind} ${field.min}-${field.max}`
    case 'boolean':
      return 'true or false'
    case 'enum':
      return `one of ${field.values.join(', ')}`
  }
}

/** A raw or resolved setting that does not fit the table; `path` is relative to the settings object. */
export class QueueSettingError extends Error {
  constructor(
    readonly path: string,
    readonly expected: string,
    readonly value: unknown,
  ) {
    super(`${path} ${expected}, got ${describeValue(value)}`)
    this.name = 'QueueSettingError'
  }
}

function describeValue(value: unknown): string {
  if (value === undefined) return 'nothing'
  try {
    return JSON.stringify(value) ?? typeof value
  } catch {
    return typeof value
  }
}

/** The `expected` part of an error: `must be an integer 1-4096`, `must be one of …`. */
function mustBe(field: QueueSettingField): string {
  const article = { integer: 'an ', number: 'a ', boolean: '', enum: '' }[field.kind]
  return `must be ${article}${settingRange(field)}`
}

/**
 * The value `raw` stands for under `field`, or undefined when it does not fit. With `strings`, numbers
 * and booleans may be written as strings (`"3"`, `"true"`), as env vars and older config files do.
 */
function fieldValue(field: QueueSettingField, raw: unknown, strings: boolean): unknown {
  switch (field.kind) {
    case 'integer':
    case 'number': {
      const parsed =
        strings &&
        typeof raw === 'string' &&
        (field.kind === 'integer' ? /^-?\d+$/.test(raw.trim()) : raw.trim() !== '')
          ? Number(raw)
          : raw
      if (typeof parsed !== 'number' || !Number.isFinite(parsed)) return undefined
      if (field.kind === 'integer' && !Number.isSafeInteger(parsed)) return undefined
      const max = field.max ?? (field.kind === 'integer' ? MAX : Infinity)
      if (parsed < field.min || parsed > max) return undefined
      return parsed
    }
    case 'boolean':
      if (raw === true || (strings && raw === 'true')) return true
      if (raw === false || (strings && raw === 'false')) return false
      return undefined
    case 'enum':
      return typeof raw === 'string' && field.values.includes(raw) ? raw : undefined
  }
}

const BY_PATH = new Map<string, QueueSettingField>(QUEUE_SETTING_FIELDS.map((f) => [f.path, f]))

/** Per-queue overrides (config, admin API, stored): any field, nested ones field by field. */
export type QueueSettingsOverrides = Partial<Omit<QueueSettings, 'retry' | 'durability'>> & {
  retry?: Partial<QueueSettings['retry']>
  durability?: Partial<QueueSettings['durability']>
}

/**
 * Parses raw overrides (a config file's `queues.defaults` or `queues.declared.<name>`, an admin API
 * body's `settings`) by the table: any subset of the settings, nested objects field by field, unknown
 * keys refused. Numbers and booleans may be strings (`"3"`). Keeps only the fields given. Throws
 * {@link QueueSettingError} naming the first bad field.
 */
export function parseQueueSettingsOverrides(raw: unknown): QueueSettingsOverrides {
  if (raw === undefined) return {}
  if (!isObject(raw)) throw new QueueSettingError('', 'must be an object', raw)
  const overrides: Tree = {}
  const take = (path: string, value: unknown): void => {
    const field = BY_PATH.get(path)
    if (field === undefined) throw new QueueSettingError(path, 'is not a known setting', value)
    if (value === undefined) return
    const parsed = fieldValue(field, value, true)
    if (parsed === undefined) throw new QueueSettingError(path, mustBe(field), value)
    setAt(overrides, path, parsed)
  }
  for (const [key, value] of Object.entries(raw)) {
    if (!GROUPS.includes(key)) {
      take(key, value)
    } else if (value !== undefined) {
      if (!isObject(value)) throw new QueueSettingError(key, 'must be an object', value)
      overrides[key] = {}
      for (const [leaf, inner] of Object.entries(value)) take(`${key}.${leaf}`, inner)
    }
  }
  return overrides
}

/** What is wrong with resolved settings by the table, or undefined; the core's check on admin changes. */
export function settingsProblem(settings: QueueSettings): string | undefined {
  const tree = settings as unknown as Tree
  for (const field of QUEUE_SETTING_FIELDS) {
    const value = valueAt(tree, field.path)
    if (fieldValue(field, value, false) === undefined) {
      return new QueueSettingError(field.path, mustBe(field), value).message
    }
  }
  return undefined
}

/** `overrides` laid over `base`, nested objects field by field; no rule applied. */
export function mergeQueueSettings(base: QueueSettings, overrides: QueueSettingsOverrides): QueueSettings {
  return {
    ...base,
    ...overrides,
    retry: { ...base.retry, ...overrides.retry },
    durability: { ...base.durability, ...overrides.durability },
  }
}

/** A queue's settings: `overrides` over `defaults`, and `strict` ordering means one partition. */
export function resolveQueueSettings(
  defaults: QueueSettings = DEFAULT_QUEUE_SETTINGS,
  overrides: QueueSettingsOverrides = {},
): QueueSettings {
  const settings = mergeQueueSettings(defaults, overrides)
  // Global FIFO needs one partition: that is what `strict` means.
  if (settings.ordering === Orderings.strict) settings.partitions = 1
  return settings
}

/**
 * Limits on `<name>` in `$queue/<name>` (docs/queue-protocol.md). Far below what aedes' topic router
 * takes (100 levels, qlobber's `max_words`), so a queue topic, its settle topics and its dead-letter
 * queue `dlq/<name>` always fit; config and the admin API cannot declare a queue clients cannot reach.
 */
export const QueueNameLimits = {
  /** Topic levels of `<name>`; the dead-letter queue `dlq/<name>` may have one more. */
  maxLevels: 32,
  /** UTF-8 bytes of `<name>`; `dlq/<name>` may have 4 more. */
  maxBytes: 1024,
} as const

/** Dead letters of queue `<name>` go to the ordinary queue `dlq/<name>`. */
export const DEAD_LETTER_PREFIX = 'dlq/'

/**
 * Why `name` is over {@link QueueNameLimits}, or undefined. Cheap (no split): the MQTT edge asks it
 * for every `$queue/` topic before anything else sees the topic.
 */
export function queueNameLimitProblem(name: string): string | undefined {
  const own = name.startsWith(DEAD_LETTER_PREFIX) ? name.slice(DEAD_LETTER_PREFIX.length) : name
  const bytes = Buffer.byteLength(own)
  if (bytes > QueueNameLimits.maxBytes) {
    return `queue name has ${bytes} bytes, at most ${QueueNameLimits.maxBytes} allowed`
  }
  let levels = 1
  for (let i = 0; i < own.length; i++) if (own.charCodeAt(i) === 0x2f) levels++
  if (levels > QueueNameLimits.maxLevels) {
    return `queue name has ${levels} levels, at most ${QueueNameLimits.maxLevels} allowed`
  }
  return undefined
}

/**
 * `<name>` of `$queue/<name>`: one or more non-empty levels, no wildcards, no `$`-reserved level,
 * within {@link QueueNameLimits}.
 */
export function queueNameProblem(name: string): string | undefined {
  if (name.length === 0) return 'queue name is empty'
  const overLimit = queueNameLimitProblem(name)
  if (overLimit !== undefined) return overLimit
  if (name.includes('\u0000')) return 'queue name contains U+0000'
  for (const level of name.split('/')) {
    if (level.length === 0) return `queue name "${name}" has an empty level`
    if (level.includes('+') || level.includes('#')) return `queue name "${name}" contains a wildcard`
    if (level.startsWith('$')) return `queue name "${name}" has a level starting with "$" (reserved)`
  }
  return undefined
}
