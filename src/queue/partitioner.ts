/**
 * Chooses a partition: a stable hash of the `partition-key` (FNV-1a, 32 bit, over UTF-8) so a key
 * always lands on the same partition across restarts and nodes, or round robin without a key.
 */
export class Partitioner {
  private nextRoundRobin = 0

  constructor(private readonly partitions: number) {}

  partitionFor(key: string | undefined): number {
    if (key === undefined) {
      const partition = this.nextRoundRobin
      this.nextRoundRobin = (this.nextRoundRobin + 1) % this.partitions
      return partition
    }
    return fnv1a(key) % this.partitions
  }
}

export function fnv1a(text: string): number {
  let hash = 0x811c9dc5
  for (const byte of Buffer.from(text, 'utf8')) {
    hash ^= byte
    hash = Math.imul(hash, 0x01000193) >>> 0
  }
  return hash
}
