/**
 * The forward buffer moved to src/storage/forward/ with the other LevelDB stores (one kernel, and
 * classic-level only under src/storage). This re-export keeps the cluster's imports working; the
 * draining policy (what is forwarded when, what is dead-lettered) stays in ./cluster-queues.ts.
 */
export {
  ForwardBuffer,
  ForwardBufferError,
  ForwardBufferErrorCodes,
  type BufferedEntry,
  type BufferedPublish,
  type ForwardBufferErrorCode,
} from '../storage/forward/forward-buffer.js'
