export const ForwardBufferErrorCodes = {
  /** Not opened yet, or closed. */
  notOpen: 'NOT_OPEN',
  invalidInput: 'INVALID_INPUT',
  /** LevelDB failed; after a failed write the buffer refuses writes until it is reopened. */
  storageFailure: 'STORAGE_FAILURE',
} as const
export type ForwardBufferErrorCode = (typeof ForwardBufferErrorCodes)[keyof typeof ForwardBufferErrorCodes]

export class ForwardBufferError extends Error {
  override readonly name = 'ForwardBufferError'
  constructor(
    readonly code: ForwardBufferErrorCode,
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options)
  }
}
