export { ConfigError, defaultConfig, LogLevels, resolveQueueSettings, validateConfig } from './schema.js'
export type {
  AuthConfig,
  AuthUser,
  LogLevel,
  QueueSettingsOverride,
  RawConfig,
  SpoolConfig,
} from './schema.js'
export { loadConfig, SOURCE_MAPPINGS, USAGE, UsageError } from './load.js'
export type { LoadInput, LoadResult } from './load.js'
