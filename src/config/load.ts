/**
 * Builds a {@link SpoolConfig} from its four sources. Precedence, highest first:
 * CLI flags > environment (`SPOOL_*`) > JSON config file (`--config` / `SPOOL_CONFIG`) > defaults.
 */
import { readFileSync } from 'node:fs'
import { parseArgs } from 'node:util'
import { ConfigError } from './fields.js'
import { validateConfig } from './schema.js'
import type { RawConfig, SpoolConfig } from './types.js'

/** One setting reachable from env and CLI: its path in the config tree. */
interface Mapping {
  path: readonly string[]
  env: string
  /** Absent for secrets: a flag's value is visible to every local user in `ps`. */
  flag?: string
}

/** Every env var and flag; docs/configuration.md lists the same table. */
export const SOURCE_MAPPINGS: readonly Mapping[] = [
  { path: ['mqtt', 'port'], env: 'SPOOL_MQTT_PORT', flag: 'mqtt-port' },
  { path: ['mqtt', 'host'], env: 'SPOOL_HOST', flag: 'host' },
  { path: ['ws', 'port'], env: 'SPOOL_WS_PORT', flag: 'ws-port' },
  { path: ['http', 'port'], env: 'SPOOL_HTTP_PORT', flag: 'http-port' },
  { path: ['grpc', 'port'], env: 'SPOOL_GRPC_PORT', flag: 'grpc-port' },
  { path: ['dataDir'], env: 'SPOOL_DATA_DIR', flag: 'data-dir' },
  { path: ['nodeId'], env: 'SPOOL_NODE_ID', flag: 'node-id' },
  { path: ['cluster', 'etcd'], env: 'SPOOL_ETCD', flag: 'etcd' },
  { path: ['cluster', 'advertise'], env: 'SPOOL_ADVERTISE', flag: 'advertise' },
  { path: ['cluster', 'routing'], env: 'SPOOL_ROUTING', flag: 'routing' },
  { path: ['cluster', 'leaseTtlSeconds'], env: 'SPOOL_LEASE_TTL_SECONDS', flag: 'lease-ttl-seconds' },
  { path: ['cluster', 'prefix'], env: 'SPOOL_ETCD_PREFIX', flag: 'etcd-prefix' },
  { path: ['log', 'level'], env: 'SPOOL_LOG_LEVEL', flag: 'log-level' },
  { path: ['queues', 'implicitGroups'], env: 'SPOOL_IMPLICIT_GROUPS', flag: 'implicit-groups' },
  { path: ['auth', 'allowAnonymous'], env: 'SPOOL_ALLOW_ANONYMOUS', flag: 'allow-anonymous' },
  { path: ['admin', 'token'], env: 'SPOOL_ADMIN_TOKEN' },
]

export const USAGE = `usage: spool start [--config FILE] [--mqtt-port N] [--host ADDR] [--ws-port N]
                   [--http-port N] [--grpc-port N] [--data-dir DIR] [--node-id ID] [--log-level LEVEL]
                   [--allow-anonymous true|false|loopback]
                   [--etcd URL[,URL]] [--advertise HOST] [--routing proxy|direct]
                   [--lease-ttl-seconds N] [--etcd-prefix PREFIX]
       spool passwd     (reads a password from stdin, prints its hash for auth.users)
       spool queues|dlq|groups|cluster ...   (operator commands; spool queues --help)`

/** A command line that cannot be parsed (unknown flag, missing command). */
export class UsageError extends Error {
  readonly code = 'USAGE'
  constructor(message: string) {
    super(message)
    this.name = 'UsageError'
  }
}

export interface LoadInput {
  /** Arguments after the executable and script, e.g. `['start', '--mqtt-port', '0']`. */
  argv: readonly string[]
  env?: NodeJS.ProcessEnv
  /** Injected for tests; defaults to reading UTF-8 from disk. */
  readFile?: (path: string) => string
}

export interface LoadResult {
  command: string
  config: SpoolConfig
  /** The config file that was read, if any. */
  configFile: string | null
}

function setPath(tree: RawConfig, path: readonly string[], value: unknown): void {
  let node: Record<string, unknown> = tree
  for (const key of path.slice(0, -1)) {
    const next = node[key]
    if (typeof next === 'object' && next !== null && !Array.isArray(next)) {
      node = next as Record<string, unknown>
    } else {
      const fresh: Record<string, unknown> = {}
      node[key] = fresh
      node = fresh
    }
  }
  const last = path[path.length - 1]
  if (last !== undefined) node[last] = value
}

function readConfigFile(path: string, source: string, readFile: (p: string) => string): RawConfig {
  let text: string
  try {
    text = readFile(path)
  } catch (err) {
    const reason = err instanceof Error && 'code' in err ? String(err.code) : String(err)
    throw new ConfigError(source, `must name a readable file (${reason})`, path)
  }
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch (err) {
    throw new ConfigError(source, `must hold valid JSON (${(err as Error).message})`, path)
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new ConfigError(source, 'must hold a JSON object', path)
  }
  return parsed as RawConfig
}

/**
 * Parses the command line and merges all sources. Throws {@link UsageError} for a bad command line
 * and {@link ConfigError} (naming the field and value) for a bad setting.
 */
export function loadConfig(input: LoadInput): LoadResult {
  const env = input.env ?? {}
  const readFile = input.readFile ?? ((p: string) => readFileSync(p, 'utf8'))
  const options: Record<string, { type: 'string' }> = { config: { type: 'string' } }
  for (const m of SOURCE_MAPPINGS) if (m.flag !== undefined) options[m.flag] = { type: 'string' }

  let parsed: ReturnType<typeof parseArgs>
  try {
    parsed = parseArgs({ args: [...input.argv], options, allowPositionals: true, strict: true })
  } catch (err) {
    throw new UsageError((err as Error).message)
  }
  const command = parsed.positionals[0]
  if (command === undefined) throw new UsageError('missing command')
  if (parsed.positionals.length > 1) throw new UsageError(`unexpected argument "${parsed.positionals[1]}"`)
  const flags = parsed.values as Record<string, string | undefined>

  // Lowest to highest: file, env, CLI. Each later source overwrites single leaves only.
  const configFlag = flags.config
  const configEnv = env.SPOOL_CONFIG
  const configFile = configFlag ?? (configEnv !== undefined && configEnv !== '' ? configEnv : null)
  const raw: RawConfig =
    configFile === null
      ? {}
      : readConfigFile(configFile, configFlag !== undefined ? '--config' : 'SPOOL_CONFIG', readFile)

  for (const m of SOURCE_MAPPINGS) {
    const value = env[m.env]
    if (value !== undefined && value !== '') setPath(raw, m.path, value)
  }
  for (const m of SOURCE_MAPPINGS) {
    const value = m.flag === undefined ? undefined : flags[m.flag]
    if (value !== undefined) setPath(raw, m.path, value)
  }
  return { command, config: validateConfig(raw), configFile }
}
