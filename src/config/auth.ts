/** `auth.*` (MQTT users and ACLs) and `admin.*` (the admin API token). */
import { AclGrants, patternProblem, type AclRule } from '../auth/acl.js'
import { parsePasswordHash, PasswordHashError } from '../auth/password.js'
import { boolean, ConfigError, objectAt, oneOf } from './fields.js'
import type { AdminConfig, AuthConfig, AuthUser } from './types.js'

/** Shortest admin token accepted: a guessable token is worse than none (none = loopback only). */
const MIN_ADMIN_TOKEN_LENGTH = 16

export function validateAdmin(raw: unknown): AdminConfig {
  const admin = objectAt(raw, 'admin', ['token'])
  if (admin.token === undefined || admin.token === null || admin.token === '') return { token: null }
  if (typeof admin.token !== 'string' || admin.token.trim().length < MIN_ADMIN_TOKEN_LENGTH) {
    // The value is not echoed: it is a secret.
    throw new ConfigError(
      'admin.token',
      `must be a string of at least ${MIN_ADMIN_TOKEN_LENGTH} characters (e.g. \`openssl rand -hex 32\`)`,
      '[redacted]',
    )
  }
  return { token: admin.token.trim() }
}

function aclRules(raw: unknown, field: string): AclRule[] | null {
  if (raw === undefined || raw === null) return null
  if (!Array.isArray(raw)) throw new ConfigError(field, 'must be a list of { allow, topics } rules', raw)
  return raw.map((item: unknown, i) => {
    const f = `${field}[${i}]`
    const rule = objectAt(item, f, ['allow', 'topics'])
    if (rule.allow === undefined) throw new ConfigError(`${f}.allow`, 'is required', undefined)
    const allow = oneOf(rule.allow, `${f}.allow`, Object.values(AclGrants), AclGrants.all)
    if (!Array.isArray(rule.topics) || rule.topics.length === 0) {
      throw new ConfigError(`${f}.topics`, 'must be a non-empty list of topic patterns', rule.topics)
    }
    const topics = rule.topics.map((pattern: unknown, j) => {
      const problem = typeof pattern === 'string' ? patternProblem(pattern) : 'must be a string'
      if (problem !== undefined) throw new ConfigError(`${f}.topics[${j}]`, problem, pattern)
      return pattern as string
    })
    return { allow, topics }
  })
}

export function validateAuth(raw: unknown): AuthConfig {
  const auth = objectAt(raw, 'auth', ['allowAnonymous', 'users', 'anonymousAcl'])
  const allowAnonymous =
    auth.allowAnonymous === 'loopback' || auth.allowAnonymous === undefined
      ? 'loopback'
      : boolean(auth.allowAnonymous, 'auth.allowAnonymous', false)
  const usersRaw = auth.users ?? []
  if (!Array.isArray(usersRaw)) throw new ConfigError('auth.users', 'must be a list of users', usersRaw)
  const seen = new Set<string>()
  const users = usersRaw.map((item: unknown, i): AuthUser => {
    const f = `auth.users[${i}]`
    const user = objectAt(item, f, ['username', 'passwordHash', 'acl'])
    if (typeof user.username !== 'string' || user.username === '') {
      throw new ConfigError(`${f}.username`, 'must be a non-empty string', user.username)
    }
    if (seen.has(user.username)) throw new ConfigError(`${f}.username`, 'is listed twice', user.username)
    seen.add(user.username)
    if (typeof user.passwordHash !== 'string') {
      throw new ConfigError(`${f}.passwordHash`, 'must be a string made by `spool passwd`', '[redacted]')
    }
    try {
      parsePasswordHash(user.passwordHash)
    } catch (err) {
      if (!(err instanceof PasswordHashError)) throw err
      // The value is not echoed: it may be a password typed in by mistake.
      throw new ConfigError(`${f}.passwordHash`, err.message, '[redacted]')
    }
    return { username: user.username, passwordHash: user.passwordHash, acl: aclRules(user.acl, `${f}.acl`) }
  })
  return { allowAnonymous, users, anonymousAcl: aclRules(auth.anonymousAcl, 'auth.anonymousAcl') }
}
