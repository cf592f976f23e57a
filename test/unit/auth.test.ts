// Password hashes (scrypt format), ACL pattern matching, the auth section of the config, and the
// PUBLISH-topic-to-ACL-request mapping of the MQTT edge.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { Acl, patternCovers, patternProblem, substitute, unsharedFilter } from '../../src/auth/acl.js'
import {
  formatPasswordHash,
  hashPassword,
  parsePasswordHash,
  PasswordHashError,
  SCRYPT_DEFAULTS,
  verifyPassword,
} from '../../src/auth/password.js'
import { ConfigError, validateConfig, type RawConfig } from '../../src/config/index.js'
import { isLoopbackAddress } from '../../src/net/loopback.js'
import { publishRequest } from '../../src/protocol/mqtt-auth.js'

void test('hashPassword makes a scrypt$N$r$p$salt$hash line that verifies the password and no other', async () => {
  const line = await hashPassword('correct horse')
  assert.match(line, /^scrypt\$16384\$8\$1\$[A-Za-z0-9+/]+=*\$[A-Za-z0-9+/]+=*$/)
  const parsed = parsePasswordHash(line)
  assert.deepEqual({ N: parsed.N, r: parsed.r, p: parsed.p }, SCRYPT_DEFAULTS)
  assert.equal(parsed.salt.length, 16)
  assert.equal(parsed.hash.length, 32)
  assert.equal(formatPasswordHash(parsed), line)
  assert.equal(await verifyPassword('correct horse', parsed), true)
  assert.equal(await verifyPassword(Buffer.from('correct horse'), parsed), true, 'MQTT passwords are bytes')
  assert.equal(await verifyPassword('correct hors', parsed), false)
  assert.equal(await verifyPassword('', parsed), false)
})

void test('the same password hashes differently each time (random salt)', async () => {
  assert.notEqual(await hashPassword('x'), await hashPassword('x'))
})

void test('other cost parameters are kept in the line and used to verify', async () => {
  const line = await hashPassword('pw', { N: 1024, r: 4, p: 2 })
  assert.match(line, /^scrypt\$1024\$4\$2\$/)
  assert.equal(await verifyPassword('pw', parsePasswordHash(line)), true)
})

void test('parsePasswordHash names what is wrong', () => {
  const good = parsePasswordHash(
    'scrypt$16384$8$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=',
  )
  assert.equal(good.salt.length, 16)
  const cases: Array<[string, RegExp]> = [
    ['hunter2', /scrypt\$N\$r\$p\$salt\$hash/],
    ['bcrypt$16384$8$1$AAAAAAAAAAA=$AAAAAAAAAAAAAAAAAAAAAA==', /scrypt\$N/],
    ['scrypt$1000$8$1$AAAAAAAAAAA=$AAAAAAAAAAAAAAAAAAAAAA==', /N must be an integer/],
    ['scrypt$3072$8$1$AAAAAAAAAAA=$AAAAAAAAAAAAAAAAAAAAAA==', /power of two/],
    ['scrypt$16384$0$1$AAAAAAAAAAA=$AAAAAAAAAAAAAAAAAAAAAA==', /r must be/],
    ['scrypt$16384$8$99$AAAAAAAAAAA=$AAAAAAAAAAAAAAAAAAAAAA==', /p must be/],
    ['scrypt$16384$8$1$not*base64$AAAAAAAAAAAAAAAAAAAAAA==', /salt is not base64/],
    ['scrypt$16384$8$1$AAAA$AAAAAAAAAAAAAAAAAAAAAA==', /salt must be 8-64 bytes/],
    ['scrypt$16384$8$1$AAAAAAAAAAA=$AAAA', /hash must be 16-64 bytes/],
  ]
  for (const [text, message] of cases) {
    assert.throws(
      () => parsePasswordHash(text),
      (err: unknown) => {
        assert.ok(err instanceof PasswordHashError, text)
        assert.match(err.message, message, text)
        return true
      },
    )
  }
})

void test('the example config holds a hash of the documented example password', async () => {
  const file = new URL('../../../config/spool.example.json', import.meta.url)
  const config = validateConfig(JSON.parse(readFileSync(file, 'utf8')) as RawConfig)
  const example = config.auth.users.find((u) => u.username === 'example')
  assert.ok(example, 'config/spool.example.json lists user "example"')
  assert.equal(await verifyPassword('change-me', parsePasswordHash(example.passwordHash)), true)
})

void test('patternProblem: wildcards only as whole levels, # only last', () => {
  for (const ok of ['a', 'a/b', '+', '#', 'a/+/c', 'a/#', '$queue/orders/+', 'users/%u/#', '/a', 'a/']) {
    assert.equal(patternProblem(ok), undefined, ok)
  }
  assert.match(patternProblem('') ?? '', /empty/)
  assert.match(patternProblem('a/#/b') ?? '', /#/)
  assert.match(patternProblem('a#') ?? '', /#/)
  assert.match(patternProblem('a/b+') ?? '', /\+/)
  assert.match(patternProblem('a\u0000') ?? '', /NUL/)
})

void test('patternCovers: a pattern covers a topic, or a filter when it covers every topic the filter does', () => {
  const covered: Array<[string, string]> = [
    ['a/b', 'a/b'],
    ['a/+', 'a/b'],
    ['a/+', 'a/+'],
    ['a/#', 'a'],
    ['a/#', 'a/b/c'],
    ['a/#', 'a/+/c'],
    ['a/#', 'a/#'],
    ['#', 'a/b'],
    ['#', '#'],
    ['+/+', 'a/b'],
    ['$queue/orders/+', '$queue/orders/eu'],
    ['$queue/#', '$queue/orders/eu'],
    ['$SYS/#', '$SYS/broker'],
  ]
  for (const [pattern, filter] of covered)
    assert.equal(patternCovers(pattern, filter), true, `${pattern} ⊇ ${filter}`)
  const notCovered: Array<[string, string]> = [
    ['a/b', 'a/c'],
    ['a/b', 'a/+'],
    ['a/b', 'a/#'],
    ['a/+', 'a/#'],
    ['a/+', 'a/b/c'],
    ['a/+', 'a'],
    ['a/b/c', 'a/b'],
    ['+', 'a/b'],
    // A first-level wildcard does not reach `$` topics (as in MQTT): queues need their own grant.
    ['#', '$queue/orders'],
    ['+/orders', '$queue/orders'],
    ['#', '$SYS/broker'],
    ['$queue/orders/+', '$queue/orders'],
  ]
  for (const [pattern, filter] of notCovered)
    assert.equal(patternCovers(pattern, filter), false, `${pattern} ⊉ ${filter}`)
})

void test('substitute: %u and %c become the user name and client id, unless that would widen the pattern', () => {
  const alice = { username: 'alice', clientId: 'dev-1' }
  assert.equal(substitute('users/%u/#', alice), 'users/alice/#')
  assert.equal(substitute('devices/%c/%u', alice), 'devices/dev-1/alice')
  assert.equal(substitute('plain/topic', alice), 'plain/topic')
  assert.equal(substitute('users/%u', { username: null, clientId: 'x' }), null, 'anonymous has no %u')
  assert.equal(substitute('users/%u', { username: 'a/b', clientId: 'x' }), null)
  assert.equal(substitute('devices/%c', { username: 'a', clientId: '#' }), null)
  assert.equal(substitute('devices/%c', { username: 'a', clientId: 'x+y' }), null)
})

void test('unsharedFilter strips $share/<group>/', () => {
  assert.equal(unsharedFilter('$share/g/a/b'), 'a/b')
  assert.equal(unsharedFilter('a/b'), 'a/b')
  assert.equal(unsharedFilter('$share/g'), '$share/g')
})

void test('Acl: no list allows all; a list denies what it does not grant; all grants every action', () => {
  const subject = { username: 'alice', clientId: 'alice-1' }
  assert.equal(Acl.allowAll.allows(subject, 'publish', '$queue/x'), true)
  assert.equal(new Acl([]).allows(subject, 'publish', 'a'), false)

  const acl = new Acl([
    { allow: 'publish', topics: ['sensors/%c/#', '$queue/orders/+'] },
    { allow: 'subscribe', topics: ['commands/%u/+', '$queue/jobs/+'] },
    { allow: 'settle', topics: ['$queue/jobs/+'] },
    { allow: 'all', topics: ['scratch/#'] },
  ])
  assert.equal(acl.allows(subject, 'publish', 'sensors/alice-1/temp'), true)
  assert.equal(acl.allows(subject, 'publish', 'sensors/bob-1/temp'), false)
  assert.equal(
    acl.allows(subject, 'subscribe', 'sensors/alice-1/temp'),
    false,
    'publish does not grant subscribe',
  )
  assert.equal(acl.allows(subject, 'publish', '$queue/orders/eu'), true)
  assert.equal(acl.allows(subject, 'settle', '$queue/orders/eu'), false, 'publish does not grant settle')
  assert.equal(acl.allows(subject, 'subscribe', 'commands/alice/reboot'), true)
  assert.equal(acl.allows(subject, 'subscribe', 'commands/alice/#'), false, 'a wider filter is not covered')
  assert.equal(acl.allows(subject, 'subscribe', '$queue/jobs/eu'), true)
  assert.equal(acl.allows(subject, 'settle', '$queue/jobs/eu'), true)
  assert.equal(acl.allows(subject, 'publish', '$queue/jobs/eu'), false)
  for (const action of ['publish', 'subscribe', 'settle'] as const) {
    assert.equal(acl.allows(subject, action, 'scratch/x'), true, action)
  }
})

void test('publishRequest: settles are checked as settle on their queue, everything else as publish', () => {
  assert.deepEqual(publishRequest('a/b'), { action: 'publish', topic: 'a/b' })
  assert.deepEqual(publishRequest('$queue/jobs'), { action: 'publish', topic: '$queue/jobs' })
  for (const verb of ['$ack', '$nack', '$reject', '$extend']) {
    assert.deepEqual(publishRequest(`$queue/jobs/eu/${verb}`), { action: 'settle', topic: '$queue/jobs/eu' })
  }
})

void test('isLoopbackAddress', () => {
  for (const a of ['127.0.0.1', '127.1.2.3', '::1', '::ffff:127.0.0.1'])
    assert.equal(isLoopbackAddress(a), true, a)
  for (const a of ['192.0.2.1', '::ffff:192.0.2.1', '10.0.0.1', 'fe80::1', '::', undefined]) {
    assert.equal(isLoopbackAddress(a), false, String(a))
  }
})

function configError(raw: RawConfig): ConfigError {
  try {
    validateConfig(raw)
  } catch (err) {
    if (err instanceof ConfigError) return err
    throw err
  }
  assert.fail(`expected a ConfigError for ${JSON.stringify(raw)}`)
}

void test('auth config: defaults, and errors that name the field', async () => {
  assert.deepEqual(validateConfig({}).auth, { allowAnonymous: 'loopback', users: [], anonymousAcl: null })
  assert.equal(validateConfig({ auth: { allowAnonymous: 'false' } }).auth.allowAnonymous, false)
  assert.equal(validateConfig({ auth: { allowAnonymous: true } }).auth.allowAnonymous, true)
  assert.equal(validateConfig({ auth: { allowAnonymous: 'loopback' } }).auth.allowAnonymous, 'loopback')

  const passwordHash = await hashPassword('pw')
  const user = { username: 'alice', passwordHash, acl: [{ allow: 'publish', topics: ['a/#'] }] }
  assert.deepEqual(validateConfig({ auth: { users: [user] } }).auth.users, [user])
  assert.equal(
    validateConfig({ auth: { users: [{ username: 'bob', passwordHash }] } }).auth.users[0]?.acl,
    null,
  )

  const cases: Array<[RawConfig, string, RegExp]> = [
    [{ auth: { allowAnonymous: 'yes' } }, 'auth.allowAnonymous', /true or false/],
    [{ auth: { anonymous: true } }, 'auth.anonymous', /not a known setting/],
    [{ auth: { users: {} } }, 'auth.users', /list/],
    [{ auth: { users: [{ passwordHash }] } }, 'auth.users[0].username', /non-empty/],
    [{ auth: { users: [{ username: 'a' }] } }, 'auth.users[0].passwordHash', /spool passwd/],
    [
      { auth: { users: [{ username: 'a', passwordHash: 'hunter2' }] } },
      'auth.users[0].passwordHash',
      /scrypt/,
    ],
    [
      {
        auth: {
          users: [
            { username: 'a', passwordHash },
            { username: 'a', passwordHash },
          ],
        },
      },
      'auth.users[1].username',
      /twice/,
    ],
    [
      { auth: { users: [{ username: 'a', passwordHash, password: 'x' }] } },
      'auth.users[0].password',
      /not a known/,
    ],
    [{ auth: { users: [{ username: 'a', passwordHash, acl: {} }] } }, 'auth.users[0].acl', /list/],
    [
      { auth: { users: [{ username: 'a', passwordHash, acl: [{ topics: ['a'] }] }] } },
      'auth.users[0].acl[0].allow',
      /required/,
    ],
    [
      { auth: { users: [{ username: 'a', passwordHash, acl: [{ allow: 'read', topics: ['a'] }] }] } },
      'auth.users[0].acl[0].allow',
      /publish, subscribe, settle, all/,
    ],
    [
      { auth: { users: [{ username: 'a', passwordHash, acl: [{ allow: 'all', topics: [] }] }] } },
      'auth.users[0].acl[0].topics',
      /non-empty/,
    ],
    [
      { auth: { users: [{ username: 'a', passwordHash, acl: [{ allow: 'all', topics: ['a/#/b'] }] }] } },
      'auth.users[0].acl[0].topics[0]',
      /#/,
    ],
    [{ auth: { anonymousAcl: [{ allow: 'all', topics: [1] }] } }, 'auth.anonymousAcl[0].topics[0]', /string/],
  ]
  for (const [raw, field, message] of cases) {
    const err = configError(raw)
    assert.equal(err.field, field, JSON.stringify(raw))
    assert.match(err.message, message, JSON.stringify(raw))
  }
  // A bad hash is not echoed: it may be a password typed in by mistake.
  assert.doesNotMatch(configError(cases[5]![0]).message, /hunter2/)
})
