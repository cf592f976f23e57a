/**
 * The readers validateConfig is written with: each takes a raw value and its dotted field name, and
 * returns the typed value or throws a {@link ConfigError} naming the field.
 */

/** A config value that does not fit the schema. `field` is the dotted path, e.g. `mqtt.port`. */
export class ConfigError extends Error {
  readonly code = 'CONFIG_INVALID'
  constructor(
    readonly field: string,
    readonly expected: string,
    readonly value: unknown,
  ) {
    super(`${field} ${expected}, got ${formatValue(value)}`)
    this.name = 'ConfigError'
  }
}

function formatValue(value: unknown): string {
  if (value === undefined) return 'nothing'
  try {
    return JSON.stringify(value) ?? typeof value
  } catch {
    return typeof value
  }
}

export type Obj = Record<string, unknown>

export function isObject(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

/** Reads an object-valued field; absent means empty. Rejects keys not in `allowed` (typo guard). */
export function objectAt(raw: unknown, field: string, allowed: readonly string[]): Obj {
  if (raw === undefined) return {}
  if (!isObject(raw)) throw new ConfigError(field, 'must be an object', raw)
  for (const key of Object.keys(raw)) {
    if (!allowed.includes(key)) {
      throw new ConfigError(field === '' ? key : `${field}.${key}`, 'is not a known setting', raw[key])
    }
  }
  return raw
}

/** Integers may come from JSON (number) or env/CLI (decimal string). */
export function integer(raw: unknown, field: string, min: number, max: number, fallback: number): number {
  if (raw === undefined) return fallback
  const n = typeof raw === 'string' && /^-?\d+$/.test(raw.trim()) ? Number(raw) : raw
  if (typeof n !== 'number' || !Number.isInteger(n) || n < min || n > max) {
    const range = max === Number.MAX_SAFE_INTEGER ? `>= ${min}` : `${min}-${max}`
    throw new ConfigError(field, `must be an integer ${range}`, raw)
  }
  return n
}

export function port(raw: unknown, field: string, fallback: number): number {
  return integer(raw, field, 0, 65535, fallback)
}

export function nonEmptyString(raw: unknown, field: string, fallback: string): string {
  if (raw === undefined) return fallback
  if (typeof raw !== 'string' || raw.trim() === '')
    throw new ConfigError(field, 'must be a non-empty string', raw)
  return raw
}

export function boolean(raw: unknown, field: string, fallback: boolean): boolean {
  if (raw === undefined) return fallback
  if (raw === true || raw === 'true') return true
  if (raw === false || raw === 'false') return false
  throw new ConfigError(field, 'must be true or false', raw)
}

export function oneOf<T extends string>(raw: unknown, field: string, values: readonly T[], fallback: T): T {
  if (raw === undefined) return fallback
  if (typeof raw !== 'string' || !(values as readonly string[]).includes(raw)) {
    throw new ConfigError(field, `must be one of ${values.join(', ')}`, raw)
  }
  return raw as T
}
