/**
 * `queues.*`: the settings for every queue (`defaults`), per declared queue (`declared.<name>`), and
 * `implicitGroups`. The settings themselves are parsed by the one table in src/queue/settings.ts.
 */
import {
  mergeQueueSettings,
  parseQueueSettingsOverrides,
  queueNameProblem,
  QueueSettingError,
} from '../queue/settings.js'
import type { QueueSettings } from '../queue/types.js'
import { boolean, ConfigError, isObject, objectAt } from './fields.js'
import type { SpoolConfig } from './types.js'

/**
 * Parses a (partial) queue settings object at `field` by the settings table and lays it over `base`.
 * Throws {@link ConfigError} naming the field, e.g. `queues.declared.q.retry.maxDeliveries`.
 */
export function parseQueueSettings(raw: unknown, field: string, base: QueueSettings): QueueSettings {
  try {
    return mergeQueueSettings(base, parseQueueSettingsOverrides(raw))
  } catch (err) {
    if (!(err instanceof QueueSettingError)) throw err
    throw new ConfigError(err.path === '' ? field : `${field}.${err.path}`, err.expected, err.value)
  }
}

/** Queue names are MQTT topic names after `$queue/`: non-empty, no wildcards. */
function checkQueueName(name: string, field: string): void {
  const problem = queueNameProblem(name)
  if (problem !== undefined) throw new ConfigError(field, `must be a valid queue name (${problem})`, name)
}

/** `queues`: defaults over DEFAULT_QUEUE_SETTINGS, each declared queue over the defaults. */
export function validateQueues(raw: unknown, d: SpoolConfig['queues']): SpoolConfig['queues'] {
  const queues = objectAt(raw, 'queues', ['defaults', 'declared', 'implicitGroups'])
  const defaults = parseQueueSettings(queues.defaults, 'queues.defaults', d.defaults)
  const declaredRaw = queues.declared === undefined ? {} : queues.declared
  if (!isObject(declaredRaw)) throw new ConfigError('queues.declared', 'must be an object', declaredRaw)
  const declared: Record<string, QueueSettings> = {}
  for (const [name, settings] of Object.entries(declaredRaw)) {
    const field = `queues.declared.${name}`
    checkQueueName(name, field)
    declared[name] = parseQueueSettings(settings ?? {}, field, defaults)
  }
  return {
    defaults,
    declared,
    implicitGroups: boolean(queues.implicitGroups, 'queues.implicitGroups', d.implicitGroups),
  }
}
