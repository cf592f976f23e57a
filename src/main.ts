#!/usr/bin/env node
/**
 * Composition root: `spool start [flags]` (and `spool passwd`, src/cli/passwd.ts; the operator commands
 * `spool queues|dlq|groups|cluster`, src/cli/admin.ts, which talk to a running broker). Parses the command
 * line and config, builds the node (compose.ts: each part in order, handed only what it uses), and
 * turns SIGTERM/SIGINT into a graceful stop, in the reverse order, bounded by `shutdown.timeoutMs`.
 *
 * Exit codes: 0 clean stop; 1 start-up failure or forced stop; 2 bad command line or config.
 */
import { ConfigError, loadConfig, USAGE, UsageError, type LoadResult } from './config/index.js'
import { runPasswd } from './cli/passwd.js'
import { ADMIN_COMMANDS, runAdminCli } from './cli/admin.js'
import { startServer } from './compose.js'

const EXIT_OK = 0
const EXIT_FAILURE = 1
const EXIT_USAGE = 2

async function main(argv: readonly string[]): Promise<void> {
  if (argv[0] === 'passwd') {
    // Needs no config: it only turns a password into a hash line for auth.users.
    process.exitCode = await runPasswd(argv.slice(1), process)
    return
  }
  if (argv[0] !== undefined && ADMIN_COMMANDS.has(argv[0])) {
    // Needs no config either: a client of the admin HTTP API of a running broker.
    process.exitCode = await runAdminCli(argv, process)
    return
  }
  let loaded: LoadResult
  try {
    loaded = loadConfig({ argv, env: process.env })
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`spool: invalid config: ${err.message}\n`)
    } else if (err instanceof UsageError) {
      process.stderr.write(`spool: ${err.message}\n${USAGE}\n`)
    } else {
      throw err
    }
    process.exitCode = EXIT_USAGE
    return
  }
  if (loaded.command !== 'start') {
    process.stderr.write(`spool: unknown command "${loaded.command}"\n${USAGE}\n`)
    process.exitCode = EXIT_USAGE
    return
  }

  const { config } = loaded
  const server = await startServer(config)
  const { logger } = server

  let stopping = false
  const onSignal = (signal: NodeJS.Signals): void => {
    if (stopping) {
      logger.warn({ signal }, 'second signal: exiting now')
      process.exit(EXIT_FAILURE)
    }
    stopping = true
    logger.info({ signal, timeoutMs: config.shutdown.timeoutMs }, 'shutting down')
    const force = setTimeout(() => {
      logger.error({ timeoutMs: config.shutdown.timeoutMs }, 'graceful shutdown timed out: forcing exit')
      process.exit(EXIT_FAILURE)
    }, config.shutdown.timeoutMs)
    server.close().then(
      () => {
        clearTimeout(force)
        process.exit(EXIT_OK)
      },
      (err: unknown) => {
        logger.error({ err }, 'shutdown failed')
        process.exit(EXIT_FAILURE)
      },
    )
  }
  process.on('SIGTERM', onSignal)
  process.on('SIGINT', onSignal)
}

main(process.argv.slice(2)).catch((err: unknown) => {
  process.stderr.write(
    `spool: failed to start: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
  )
  process.exit(EXIT_FAILURE)
})
