/**
 * The operator CLI over the admin HTTP API: `spool queues|dlq|groups|cluster ...`. Tables for people
 * by default, the API's JSON with `--json`. Talks to `--url` (env `SPOOL_URL`, default
 * `http://127.0.0.1:8080`) with `--token` (env `SPOOL_ADMIN_TOKEN`).
 *
 * Exit codes: 0 success; 1 the API refused or could not be reached (its message on stderr); 2 usage.
 */
import { parseArgs } from 'node:util'
import type { Writable } from 'node:stream'
import { AdminApiError, AdminClient } from './admin-client.js'
import { formatFields, formatTable, truncate } from './table.js'

export const ADMIN_COMMANDS: ReadonlySet<string> = new Set(['queues', 'dlq', 'groups', 'cluster'])

export const DEFAULT_ADMIN_URL = 'http://127.0.0.1:8080'

export const ADMIN_USAGE = `usage: spool queues list
       spool queues stats <queue>
       spool queues purge <queue>
       spool dlq list <queue> [--limit N]
       spool dlq redrive <queue> [--id ID | --limit N] [--rate N]
       spool groups <queue>
       spool cluster
options: --json          print the API's JSON instead of a table
         --url URL       admin API of the broker (env SPOOL_URL; default ${DEFAULT_ADMIN_URL})
         --token TOKEN   admin.token of the broker (env SPOOL_ADMIN_TOKEN)`

const EXIT_OK = 0
const EXIT_FAILURE = 1
const EXIT_USAGE = 2

/** The process streams and environment, injectable for tests. */
export interface AdminCliIo {
  stdout: Writable
  stderr: Writable
  env: NodeJS.ProcessEnv
}

class UsageError extends Error {}

interface Flags {
  json: boolean
  id?: string
  limit?: number
  rate?: number
}

/** A command: its positional arguments after the command words, which flags it takes, what it does. */
interface Command {
  args: readonly string[]
  flags: ReadonlyArray<'id' | 'limit' | 'rate'>
  run(client: AdminClient, args: readonly string[], flags: Flags): Promise<{ json: unknown; text: string }>
}

const COMMANDS: Record<string, Command> = {
  'queues list': {
    args: [],
    flags: [],
    async run(client) {
      const result = await client.listQueues()
      const rows = result.queues.map((q) => [
        q.name,
        q.depth,
        q.inflight,
        q.consumers,
        q.groups.length,
        q.deadLetters,
        q.settings.partitions,
        q.settings.ordering,
      ])
      const text =
        rows.length === 0
          ? 'no queues'
          : formatTable(
              ['QUEUE', 'DEPTH', 'INFLIGHT', 'CONSUMERS', 'GROUPS', 'DEAD-LETTERS', 'PARTITIONS', 'ORDERING'],
              rows,
            )
      return { json: result, text }
    },
  },
  'queues stats': {
    args: ['queue'],
    flags: [],
    async run(client, [name]) {
      const q = await client.queue(name!)
      const s = q.settings
      const fields = formatFields([
        ['queue', q.name],
        ['depth', q.depth],
        ['inflight', q.inflight],
        ['consumers', q.consumers],
        ['dead letters', q.deadLetters],
        ['partitions', s.partitions],
        ['ordering', s.ordering],
        ['delivery timeout', `${s.deliveryTimeoutMs} ms`],
        ['max deliveries', s.retry.maxDeliveries],
        ['max depth', s.maxDepth],
      ])
      return { json: q, text: `${fields}\n\n${groupsTable(q.groups)}` }
    },
  },
  'queues purge': {
    args: ['queue'],
    flags: [],
    async run(client, [name]) {
      const result = await client.purge(name!)
      return { json: result, text: `purged ${result.purged} messages from ${name!}` }
    },
  },
  'dlq list': {
    args: ['queue'],
    flags: ['limit'],
    async run(client, [name], flags) {
      const result = await client.deadLetters(name!, flags.limit)
      const rows = result.messages.map((m) => [
        m.id,
        m.enqueuedAt.replace(/\.\d+Z$/, 'Z'),
        m.deadLetter.reason ?? '',
        m.deadLetter.originalGroup ?? '',
        m.deadLetter.originalMessageId ?? '',
        m.deadLetter.deliveryCount ?? '',
        truncate(m.deadLetter.rejectReason ?? '', 30),
        m.payloadUtf8 === undefined
          ? `<${Buffer.from(m.payloadBase64, 'base64').byteLength} bytes, binary>`
          : truncate(m.payloadUtf8, 40),
      ])
      const text =
        rows.length === 0
          ? `no dead letters for ${name!}`
          : formatTable(
              [
                'ID',
                'DEAD-LETTERED',
                'REASON',
                'GROUP',
                'ORIGINAL-ID',
                'DELIVERIES',
                'REJECT-REASON',
                'PAYLOAD',
              ],
              rows,
            )
      return { json: result, text }
    },
  },
  'dlq redrive': {
    args: ['queue'],
    flags: ['id', 'limit', 'rate'],
    async run(client, [name], flags) {
      if (flags.id !== undefined && flags.limit !== undefined)
        throw new UsageError('give --id or --limit, not both')
      const result = await client.redrive(name!, {
        ...(flags.id === undefined ? {} : { messageId: flags.id }),
        ...(flags.limit === undefined ? {} : { limit: flags.limit }),
        ...(flags.rate === undefined ? {} : { ratePerSecond: flags.rate }),
      })
      const what = result.redriven === 1 ? 'dead letter' : 'dead letters'
      return { json: result, text: `redrove ${result.redriven} ${what} back to ${name!}` }
    },
  },
  groups: {
    args: ['queue'],
    flags: [],
    async run(client, [name]) {
      const result = await client.groups(name!)
      return { json: result, text: groupsTable(result.groups) }
    },
  },
  cluster: {
    args: [],
    flags: [],
    async run(client) {
      const result = await client.cluster()
      if (result.mode === 'single') {
        const table = formatTable(
          ['NODE', 'SELF'],
          result.nodes.map((node) => [node.id, node.self ? 'yes' : 'no']),
        )
        return { json: result, text: `mode: single\n\n${table}` }
      }
      const table = formatTable(
        ['NODE', 'SELF', 'ALIVE', 'MQTT', 'PARTITIONS'],
        result.nodes.map((node) => [
          node.id,
          node.self ? 'yes' : 'no',
          node.alive === false ? 'no' : 'yes',
          node.mqtt ?? '-',
          String(node.partitions ?? '-'),
        ]),
      )
      const header = `mode: cluster, routing: ${result.routing}, etcd: ${result.healthy === true ? 'ok' : 'UNREACHABLE'}, forward buffer: ${result.forwardBuffer ?? 0}`
      return { json: result, text: `${header}\n\n${table}` }
    },
  },
}

function groupsTable(
  groups: ReadonlyArray<{
    name: string
    consumers: string[]
    backlog: number
    inflight: number
    implicit: boolean
    lastActiveAtMs: number
    expiresAtMs: number | null
  }>,
) {
  if (groups.length === 0) return 'no consumer groups'
  return formatTable(
    ['GROUP', 'BACKLOG', 'INFLIGHT', 'CONSUMERS', 'LAST ACTIVE', 'EXPIRES'],
    groups.map((g) => [
      g.implicit ? `${g.name} (implicit)` : g.name,
      g.backlog,
      g.inflight,
      g.consumers.length === 0 ? '-' : g.consumers.join(','),
      g.consumers.length > 0 ? 'now' : new Date(g.lastActiveAtMs).toISOString(),
      g.expiresAtMs === null
        ? g.consumers.length > 0
          ? '-'
          : 'never'
        : new Date(g.expiresAtMs).toISOString(),
    ]),
  )
}

function positiveInteger(raw: string | undefined, flag: string): number | undefined {
  if (raw === undefined) return undefined
  if (!/^\d+$/.test(raw) || Number(raw) < 1)
    throw new UsageError(`--${flag} must be a positive integer, got "${raw}"`)
  return Number(raw)
}

function positiveNumber(raw: string | undefined, flag: string): number | undefined {
  if (raw === undefined) return undefined
  const value = Number(raw)
  if (raw.trim() === '' || !Number.isFinite(value) || value <= 0) {
    throw new UsageError(`--${flag} must be a number > 0, got "${raw}"`)
  }
  return value
}

const OPTIONS = {
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
  url: { type: 'string' },
  token: { type: 'string' },
  id: { type: 'string' },
  limit: { type: 'string' },
  rate: { type: 'string' },
} as const

function parseArgv(argv: readonly string[]) {
  try {
    return parseArgs({ args: [...argv], options: OPTIONS, allowPositionals: true, strict: true })
  } catch (err) {
    throw new UsageError((err as Error).message)
  }
}

function parse(argv: readonly string[], env: NodeJS.ProcessEnv) {
  const { values, positionals } = parseArgv(argv)
  const [first, second] = positionals
  const key = first === 'groups' || first === 'cluster' ? first : `${first} ${second ?? ''}`.trim()
  const command = COMMANDS[key]
  if (command === undefined) {
    throw new UsageError(
      second === undefined && (first === 'queues' || first === 'dlq')
        ? `"spool ${first}" needs a subcommand`
        : `unknown command "spool ${positionals.join(' ')}"`,
    )
  }
  const args = positionals.slice(key.split(' ').length)
  if (args.length < command.args.length)
    throw new UsageError(`"spool ${key}" needs <${command.args.join('> <')}>`)
  if (args.length > command.args.length)
    throw new UsageError(`unexpected argument "${args[command.args.length]}"`)
  for (const flag of ['id', 'limit', 'rate'] as const) {
    if (values[flag] !== undefined && !command.flags.includes(flag)) {
      throw new UsageError(`"spool ${key}" does not take --${flag}`)
    }
  }
  const flags: Flags = { json: values.json === true }
  if (values.id !== undefined) flags.id = values.id
  const limit = positiveInteger(values.limit, 'limit')
  if (limit !== undefined) flags.limit = limit
  const rate = positiveNumber(values.rate, 'rate')
  if (rate !== undefined) flags.rate = rate
  const url =
    values.url ?? (env.SPOOL_URL !== undefined && env.SPOOL_URL !== '' ? env.SPOOL_URL : DEFAULT_ADMIN_URL)
  if (!/^https?:\/\/[^/]/.test(url))
    throw new UsageError(`--url must be an http:// or https:// URL, got "${url}"`)
  const token = values.token ?? (env.SPOOL_ADMIN_TOKEN !== '' ? env.SPOOL_ADMIN_TOKEN : undefined)
  return { command, args, flags, url, token }
}

/** Runs one admin command; resolves with the exit code. */
export async function runAdminCli(argv: readonly string[], io: AdminCliIo): Promise<number> {
  let parsed: ReturnType<typeof parse>
  try {
    if (argv.includes('--help') || argv.includes('-h')) {
      io.stdout.write(`${ADMIN_USAGE}\n`)
      return EXIT_OK
    }
    parsed = parse(argv, io.env)
  } catch (err) {
    if (!(err instanceof UsageError)) throw err
    io.stderr.write(`spool: ${err.message}\n${ADMIN_USAGE}\n`)
    return EXIT_USAGE
  }
  const { command, args, flags, url, token } = parsed
  const client = new AdminClient({ url, ...(token === undefined ? {} : { token }) })
  try {
    const { json, text } = await command.run(client, args, flags)
    io.stdout.write(flags.json ? `${JSON.stringify(json, null, 2)}\n` : `${text}\n`)
    return EXIT_OK
  } catch (err) {
    if (err instanceof UsageError) {
      io.stderr.write(`spool: ${err.message}\n${ADMIN_USAGE}\n`)
      return EXIT_USAGE
    }
    if (!(err instanceof AdminApiError)) throw err
    const hint =
      err.code === 'UNAUTHORIZED'
        ? ' (give --token or set SPOOL_ADMIN_TOKEN)'
        : err.code === 'FORBIDDEN'
          ? ' (configure admin.token on the broker and pass it with --token)'
          : ''
    io.stderr.write(`spool: ${err.code}: ${err.message}${hint}\n`)
    return EXIT_FAILURE
  }
}
