/**
 * The process logger: pino, JSON lines on stdout. Every record carries `node` so logs from a cluster
 * can be merged. Tests and the child-process harness read the `msg: "listening"` records to learn
 * which ports were picked for port 0.
 */
import { pino, type Logger } from 'pino'
import type { LogLevel } from '../config/index.js'

export type { Logger } from 'pino'

export interface LoggerOptions {
  level: LogLevel
  nodeId: string
  /** Defaults to stdout (fd 1), written synchronously so nothing is lost on exit. */
  destination?: NodeJS.WritableStream
}

export function createLogger(options: LoggerOptions): Logger {
  const destination = options.destination ?? pino.destination({ dest: 1, sync: true })
  return pino({ level: options.level, base: { node: options.nodeId } }, destination)
}
