/**
 * Password hashes for MQTT users: scrypt (node:crypto) in one self-describing text format, so the
 * cost parameters travel with each hash and can be raised later without breaking old entries:
 *
 * ```
 * scrypt$<N>$<r>$<p>$<salt, base64>$<derived key, base64>
 * scrypt$16384$8$1$3q2+7w...==$Xk1c...=
 * ```
 *
 * `N` (CPU/memory cost, a power of two), `r` (block size) and `p` (parallelism) are scrypt's own
 * parameters; the derived key's length is the decoded hash's length. `spool passwd` makes one
 * (src/cli/passwd.ts); docs/security.md is the user-facing description.
 */
import { randomBytes, scrypt, timingSafeEqual, type ScryptOptions } from 'node:crypto'

/** Cost parameters of new hashes: about 16 MiB and a few tens of ms per check (OWASP's scrypt minimum). */
export const SCRYPT_DEFAULTS = { N: 16_384, r: 8, p: 1 } as const

/** Bounds a hash in the config may use: low enough to stay usable per CONNECT, high enough to matter. */
const LIMITS = {
  minN: 1_024,
  maxN: 1_048_576,
  maxR: 32,
  maxP: 16,
  minSaltBytes: 8,
  maxSaltBytes: 64,
  minKeyBytes: 16,
  maxKeyBytes: 64,
} as const

const SALT_BYTES = 16
const KEY_BYTES = 32

/** A parsed `scrypt$N$r$p$salt$hash` string. */
export interface ScryptHash {
  readonly N: number
  readonly r: number
  readonly p: number
  readonly salt: Buffer
  readonly hash: Buffer
}

/** A password hash string that is not in the documented format; `message` says what is wrong. */
export class PasswordHashError extends Error {
  readonly code = 'INVALID_PASSWORD_HASH'
  constructor(message: string) {
    super(message)
    this.name = 'PasswordHashError'
  }
}

const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/
const DECIMAL = /^[1-9][0-9]{0,9}$/

function decodeBase64(text: string, what: string, min: number, max: number): Buffer {
  if (!BASE64.test(text)) throw new PasswordHashError(`${what} is not base64`)
  const bytes = Buffer.from(text, 'base64')
  if (bytes.length < min || bytes.length > max) {
    throw new PasswordHashError(`${what} must be ${min}-${max} bytes, is ${bytes.length}`)
  }
  return bytes
}

function parameter(text: string, name: string, min: number, max: number): number {
  const n = DECIMAL.test(text) ? Number(text) : NaN
  if (!Number.isInteger(n) || n < min || n > max) {
    throw new PasswordHashError(`${name} must be an integer ${min}-${max}`)
  }
  return n
}

/** Parses and checks a hash string; throws {@link PasswordHashError} naming the bad part. */
export function parsePasswordHash(text: string): ScryptHash {
  const parts = text.split('$')
  if (parts.length !== 6 || parts[0] !== 'scrypt') {
    throw new PasswordHashError('must look like scrypt$N$r$p$salt$hash (make one with `spool passwd`)')
  }
  const [, nText = '', rText = '', pText = '', saltText = '', hashText = ''] = parts
  const N = parameter(nText, 'N', LIMITS.minN, LIMITS.maxN)
  if ((N & (N - 1)) !== 0) throw new PasswordHashError('N must be a power of two')
  const r = parameter(rText, 'r', 1, LIMITS.maxR)
  const p = parameter(pText, 'p', 1, LIMITS.maxP)
  const salt = decodeBase64(saltText, 'salt', LIMITS.minSaltBytes, LIMITS.maxSaltBytes)
  const hash = decodeBase64(hashText, 'hash', LIMITS.minKeyBytes, LIMITS.maxKeyBytes)
  return { N, r, p, salt, hash }
}

/** The text form of a parsed hash (inverse of {@link parsePasswordHash}). */
export function formatPasswordHash(h: ScryptHash): string {
  return ['scrypt', h.N, h.r, h.p, h.salt.toString('base64'), h.hash.toString('base64')].join('$')
}

function derive(
  password: string | Buffer,
  salt: Buffer,
  keyBytes: number,
  cost: ScryptOptions,
): Promise<Buffer> {
  const { N = SCRYPT_DEFAULTS.N, r = SCRYPT_DEFAULTS.r } = cost
  // Node refuses when 128 * N * r exceeds maxmem (32 MiB by default); give it what the params need.
  const options: ScryptOptions = { ...cost, maxmem: 256 * N * r + 1024 * 1024 }
  return new Promise((resolve, reject) => {
    scrypt(password, salt, keyBytes, options, (err, key) => (err ? reject(err) : resolve(key)))
  })
}

/** Hashes a password with a fresh random salt; the result goes into `auth.users[].passwordHash`. */
export async function hashPassword(
  password: string | Buffer,
  cost: { N: number; r: number; p: number } = SCRYPT_DEFAULTS,
): Promise<string> {
  const salt = randomBytes(SALT_BYTES)
  const hash = await derive(password, salt, KEY_BYTES, cost)
  // Round-trip through the parser so a hash we print is always one the config accepts.
  return formatPasswordHash(parsePasswordHash(formatPasswordHash({ ...cost, salt, hash })))
}

/** True when `password` matches; compares in constant time ([crypto.timingSafeEqual]). */
export async function verifyPassword(password: string | Buffer, expected: ScryptHash): Promise<boolean> {
  const { N, r, p } = expected
  const actual = await derive(password, expected.salt, expected.hash.length, { N, r, p })
  return timingSafeEqual(actual, expected.hash)
}

/**
 * A hash no password matches in practice (random key), checked for unknown user names so that a
 * CONNECT with an unknown name costs as much as one with a wrong password (no user enumeration by
 * timing).
 */
export function decoyHash(): ScryptHash {
  return { ...SCRYPT_DEFAULTS, salt: randomBytes(SALT_BYTES), hash: randomBytes(KEY_BYTES) }
}
