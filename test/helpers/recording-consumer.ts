/**
 * Unit tests of the queue core: a {@link ConsumerConnection} that records what the core delivers to
 * it, and small readers of deliveries.
 */
import type { ConsumerConnection, Delivery } from '../../src/queue/types.js'

export class FakeConsumer implements ConsumerConnection {
  readonly deliveries: Delivery[] = []
  constructor(
    readonly clientId: string,
    readonly receiveMaximum = 65535,
  ) {}
  deliver(delivery: Delivery): void {
    this.deliveries.push(delivery)
  }
  userProperty(delivery: Delivery, key: string): string | undefined {
    return delivery.message.properties.userProperties?.find(([name]) => name === key)?.[1]
  }
}

/** A delivery's payload as text. */
export const text = (delivery: Delivery) => Buffer.from(delivery.message.payload).toString()
export const payload = (value: string) => Buffer.from(value)
