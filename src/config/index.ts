export { ConfigError, defaultConfig, LogLevels, resolveQueueSettings, validateConfig } from './schema.js'
export type {
  AdminConfig,
  AuthConfig,
  AuthUser,
  LogLevel,
  QueueSettingsOverride,
  RawConfig,
  SpoolConfig,
} from './schema.js'
export { loadConfig, SOURCE_MAPPINGS, USAGE, UsageError } from './load.js'
export type { LoadInput, LoadResult } from './load.js'
