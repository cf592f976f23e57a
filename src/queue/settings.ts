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

/** `<name>` of `$queue/<name>`: one or more non-empty levels, no wildcards, no `$`-reserved level. */
export function queueNameProblem(name: string): string | undefined {
  if (name.length === 0) return 'queue name is empty'
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
