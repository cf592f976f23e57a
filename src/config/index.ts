export {
  ConfigError,
  defaultConfig,
  LogLevels,
  resolveQueueSettings,
  RoutingModes,
  validateConfig,
} from './schema.js'
export type {
  AdminConfig,
  AuthConfig,
  AuthUser,
  ClusterConfig,
  LogLevel,
  QueueSettingsOverride,
  RawConfig,
  RoutingMode,
  SpoolConfig,
} from './schema.js'
export { loadConfig, SOURCE_MAPPINGS, USAGE, UsageError } from './load.js'
export type { LoadInput, LoadResult } from './load.js'
