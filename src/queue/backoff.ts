import type { QueueSettings } from './types.js'

/**
 * Delay before the next attempt after `deliveryCount` failed deliveries: exponential from
 * `initialDelayMs` by `factor`, capped at `maxDelayMs`. Pure, so the policy is plain data.
 */
export function retryDelayMs(retry: QueueSettings['retry'], deliveryCount: number): number {
  const exponent = Math.max(0, deliveryCount - 1)
  const delay = retry.initialDelayMs * Math.pow(retry.factor, exponent)
  return Math.min(retry.maxDelayMs, Math.round(delay))
}
