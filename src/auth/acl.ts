/**
 * Access control lists for MQTT users: plain data (as in the config file) plus pure functions, so the
 * rules can be unit-tested without a broker. The aedes hooks that apply them are in
 * src/protocol/mqtt-auth.ts; the user-facing description is docs/security.md.
 *
 * A rule `{ allow: 'publish' | 'subscribe' | 'settle' | 'all', topics: ['pattern', ...] }` grants one
 * action on every topic its patterns cover. Patterns use MQTT wildcards (`+` one level, `#` the rest)
 * and `%u` / `%c` for the user name / client id. A list grants nothing it does not name.
 */

/** What a client asks to do; `settle` is a `$queue/<name>/$ack|$nack|$reject|$extend` publish. */
export const AclActions = {
  publish: 'publish',
  subscribe: 'subscribe',
  settle: 'settle',
} as const
export type AclAction = (typeof AclActions)[keyof typeof AclActions]

/** `all` grants every {@link AclAction}. */
export const AclGrants = { ...AclActions, all: 'all' } as const
export type AclGrant = (typeof AclGrants)[keyof typeof AclGrants]

/** One ACL rule as written in the config file. */
export interface AclRule {
  readonly allow: AclGrant
  readonly topics: readonly string[]
}

/** Who is asking: `username` is `null` for an anonymous client. */
export interface AclSubject {
  readonly username: string | null
  readonly clientId: string
}

/**
 * Checks an ACL topic pattern: non-empty, `+` and `#` only as whole levels, `#` only last. Returns
 * what is wrong, or `undefined` when the pattern is valid.
 */
export function patternProblem(pattern: string): string | undefined {
  if (pattern === '') return 'must not be empty'
  if (pattern.includes('\u0000')) return 'must not contain NUL'
  const levels = pattern.split('/')
  for (const [i, level] of levels.entries()) {
    if (level.includes('#') && (level !== '#' || i !== levels.length - 1)) {
      return 'may use # only as the whole last level'
    }
    if (level.includes('+') && level !== '+') return 'may use + only as a whole level'
  }
  return undefined
}

/** A level value that cannot be put into a pattern without widening it. */
const UNSAFE_IN_PATTERN = /[/+#\u0000]/

/**
 * Replaces `%u` (user name) and `%c` (client id) in a pattern. `null` when the pattern names a value
 * the subject lacks (`%u` for an anonymous client) or one that would widen the pattern (contains
 * `/`, `+` or `#`): such a rule grants nothing to that subject.
 */
export function substitute(pattern: string, subject: AclSubject): string | null {
  if (!pattern.includes('%')) return pattern
  let unusable = false
  const result = pattern.replace(/%[uc]/g, (token) => {
    const value = token === '%u' ? subject.username : subject.clientId
    if (value === null || value === '' || UNSAFE_IN_PATTERN.test(value)) unusable = true
    return value ?? ''
  })
  return unusable ? null : result
}

/**
 * True when every topic that `filter` matches is also matched by `pattern` (both MQTT topic filters;
 * a topic name is a filter without wildcards). As in MQTT ([MQTT-4.7.2-1]), a wildcard in the first
 * level does not match a level starting with `$`, so `#` does not grant `$queue/...` or `$SYS/...`.
 */
export function patternCovers(pattern: string, filter: string): boolean {
  const p = pattern.split('/')
  const f = filter.split('/')
  if ((p[0] === '+' || p[0] === '#') && f[0]?.startsWith('$') === true) return false
  for (let i = 0; i < p.length; i++) {
    const level = p[i]
    if (level === '#') return true // `a/#` covers `a` as well ([MQTT-4.7.1-2])
    const wanted = f[i]
    if (wanted === undefined) return false
    if (level === '+') {
      if (wanted === '#') return false
      continue
    }
    if (level !== wanted) return false // a literal covers only itself, not a `+` or `#` level
  }
  return p.length === f.length
}

/** A subscription filter without its `$share/<group>/` prefix: ACLs are about the topics it reaches. */
export function unsharedFilter(filter: string): string {
  if (!filter.startsWith('$share/')) return filter
  const slash = filter.indexOf('/', '$share/'.length)
  return slash < 0 ? filter : filter.slice(slash + 1)
}

/**
 * A compiled ACL. `null` rules (no `acl` key in the config) allow everything; a list, even an empty
 * one, denies whatever it does not grant.
 */
export class Acl {
  readonly #rules: readonly AclRule[] | null

  constructor(rules: readonly AclRule[] | null) {
    this.#rules = rules
  }

  /** An ACL that grants every action on every topic. */
  static readonly allowAll = new Acl(null)

  /**
   * May `subject` do `action` on `topic`? For `subscribe`, `topic` is the filter (wildcards allowed,
   * `$share/` stripped by the caller); for `settle`, it is the queue topic `$queue/<name>`.
   */
  allows(subject: AclSubject, action: AclAction, topic: string): boolean {
    if (this.#rules === null) return true
    for (const rule of this.#rules) {
      if (rule.allow !== AclGrants.all && rule.allow !== action) continue
      for (const pattern of rule.topics) {
        const concrete = substitute(pattern, subject)
        if (concrete !== null && patternCovers(concrete, topic)) return true
      }
    }
    return false
  }
}
