import { DEFAULT_QUEUE_SETTINGS, Orderings, type QueueSettings } from './types.js'

/** Per-queue overrides as written in config: any field, nested ones field by field. */
export type QueueSettingsOverrides = Partial<Omit<QueueSettings, 'retry' | 'durability'>> & {
  retry?: Partial<QueueSettings['retry']>
  durability?: Partial<QueueSettings['durability']>
}

export function resolveQueueSettings(
  defaults: QueueSettings = DEFAULT_QUEUE_SETTINGS,
  overrides: QueueSettingsOverrides = {},
): QueueSettings {
  const settings: QueueSettings = {
    ...defaults,
    ...overrides,
    retry: { ...defaults.retry, ...overrides.retry },
    durability: { ...defaults.durability, ...overrides.durability },
  }
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

/** What is wrong with resolved settings, or undefined; for settings that come from the admin API. */
export function settingsProblem(settings: QueueSettings): string | undefined {
  const positive: Array<[string, number]> = [
    ['partitions', settings.partitions],
    ['maxInflightPerPartition', settings.maxInflightPerPartition],
    ['maxInflightPerConsumer', settings.maxInflightPerConsumer],
    ['deliveryTimeoutMs', settings.deliveryTimeoutMs],
    ['retry.maxDeliveries', settings.retry.maxDeliveries],
    ['retry.totalTimeoutMs', settings.retry.totalTimeoutMs],
    ['maxMessageBytes', settings.maxMessageBytes],
    ['maxDepth', settings.maxDepth],
  ]
  for (const [field, value] of positive) {
    if (!Number.isSafeInteger(value) || value < 1)
      return `${field} must be a positive integer, got ${String(value)}`
  }
  if (settings.partitions > 1024) return `partitions must be at most 1024, got ${settings.partitions}`
  const nonNegative: Array<[string, number]> = [
    ['retry.initialDelayMs', settings.retry.initialDelayMs],
    ['retry.maxDelayMs', settings.retry.maxDelayMs],
    ['groupExpiryMs', settings.groupExpiryMs],
    ['implicitGroupExpiryMs', settings.implicitGroupExpiryMs],
  ]
  for (const [field, value] of nonNegative) {
    if (!Number.isSafeInteger(value) || value < 0)
      return `${field} must be an integer >= 0, got ${String(value)}`
  }
  if (typeof settings.retry.factor !== 'number' || !(settings.retry.factor >= 1)) {
    return `retry.factor must be a number >= 1, got ${String(settings.retry.factor)}`
  }
  if (!Object.values(Orderings).includes(settings.ordering)) {
    return `ordering must be one of ${Object.values(Orderings).join(', ')}, got ${String(settings.ordering)}`
  }
  if (typeof settings.durability.sync !== 'boolean') return 'durability.sync must be true or false'
  return undefined
}
