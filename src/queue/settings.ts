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
