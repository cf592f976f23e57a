/**
 * What the forward buffer keeps. Its own module so that both the buffer (./forward-buffer.ts) and its
 * key and value codec (./forward-keys.ts), which the buffer imports, can name it without a cycle.
 */
import type { MessageProperties } from '../../queue/types.js'

/** A `$queue/` publish kept until the owner of its partition has taken it. */
export interface BufferedPublish {
  readonly queue: string
  readonly partition: number
  readonly payload: Uint8Array
  readonly properties: MessageProperties
  /** When this node accepted it; the owner keeps it as the enqueue time. */
  readonly acceptedAtMs: number
  /** The publisher's Message Expiry Interval, counted from {@link acceptedAtMs}. */
  readonly messageExpirySeconds?: number
}
