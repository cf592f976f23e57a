export { ConfigError } from './fields.js'
export { parseQueueSettings } from './queues.js'
export { defaultConfig, validateConfig } from './schema.js'
export { LogLevels, RoutingModes } from './types.js'
export type {
  AdminConfig,
  AuthConfig,
  AuthUser,
  ClusterConfig,
  LogLevel,
  RawConfig,
  RoutingMode,
  SpoolConfig,
} from './types.js'
export { loadConfig, SOURCE_MAPPINGS, USAGE, UsageError } from './load.js'
export type { LoadInput, LoadResult } from './load.js'
