/**
 * The one error the LevelDB kernel throws. Each store maps it to its own error class at its surface
 * (`QueueError` for the queue store, `ForwardBufferError` for the forward buffer); the message is
 * the same either way, and the LevelDB error, if any, is the `cause`.
 */
export const LevelErrorCodes = {
  /** The directory could not be created, or LevelDB could not open it (e.g. another process holds it). */
  openFailed: 'LEVEL_OPEN_FAILED',
  /** The database was written in a format this version cannot read. */
  formatMismatch: 'LEVEL_FORMAT_MISMATCH',
  /** A write batch failed; nothing of it was applied. */
  writeFailed: 'LEVEL_WRITE_FAILED',
  /** A write was asked of a committer that has been closed. */
  closed: 'LEVEL_CLOSED',
} as const
export type LevelErrorCode = (typeof LevelErrorCodes)[keyof typeof LevelErrorCodes]

export class LevelError extends Error {
  override readonly name = 'LevelError'
  constructor(
    readonly code: LevelErrorCode,
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options)
  }
}

/** `LevelDB <what> failed: <detail>`, the wording every store has always used. */
export function levelFailure(code: LevelErrorCode, what: string, cause: unknown): LevelError {
  const detail = cause instanceof Error ? cause.message : String(cause)
  return new LevelError(code, `LevelDB ${what} failed: ${detail}`, { cause })
}
