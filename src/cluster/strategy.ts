/**
 * Who should own a partition: the `hash` strategy. Deterministic, so every node computes the same
 * answer from the same node list without talking to the others; etcd only records the outcome.
 */
import { fnv1a } from '../queue/partitioner.js'

/**
 * `(partition + offset(queue)) % nodes.length` over the node ids in sorted order. The per-queue
 * offset spreads queues with few partitions: without it partition 0 of every queue would land on the
 * same node.
 */
export function hashOwner(queue: string, partition: number, nodes: readonly string[]): string | undefined {
  if (nodes.length === 0) return undefined
  const sorted = [...nodes].sort()
  return sorted[(partition + (fnv1a(queue) % sorted.length)) % sorted.length]
}
