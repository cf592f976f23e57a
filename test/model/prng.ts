/**
 * A small seeded PRNG for the model-based queue test: mulberry32 (32-bit state, good enough spread for
 * test generation, and the same numbers on every machine for a given seed).
 */
export interface Rng {
  /** Uniform in [0, 1). */
  next(): number
  /** Uniform integer in [min, max] (both included). */
  int(min: number, max: number): number
  /** True with probability `p`. */
  chance(p: number): boolean
  /** One of `items`, uniformly. */
  pick<T>(items: readonly T[]): T
  /** One of the keys, with probability proportional to its weight (weights >= 0, not all 0). */
  weighted<K extends string>(weights: Readonly<Record<K, number>>): K
}

export function mulberry32(seed: number): Rng {
  let state = seed >>> 0
  const next = (): number => {
    state = (state + 0x6d2b79f5) >>> 0
    let z = state
    z = Math.imul(z ^ (z >>> 15), z | 1)
    z ^= z + Math.imul(z ^ (z >>> 7), z | 61)
    return ((z ^ (z >>> 14)) >>> 0) / 4294967296
  }
  const int = (min: number, max: number): number => min + Math.floor(next() * (max - min + 1))
  return {
    next,
    int,
    chance: (p) => next() < p,
    pick: <T>(items: readonly T[]): T => {
      const item = items[int(0, items.length - 1)]
      if (item === undefined) throw new RangeError('pick from an empty list')
      return item
    },
    weighted: <K extends string>(weights: Readonly<Record<K, number>>): K => {
      const entries = Object.entries(weights) as Array<[K, number]>
      const total = entries.reduce((sum, [, w]) => sum + w, 0)
      if (!(total > 0)) throw new RangeError('weighted pick needs a positive total weight')
      let at = next() * total
      for (const [key, weight] of entries) {
        at -= weight
        if (at < 0) return key
      }
      return entries[entries.length - 1]![0]
    },
  }
}
