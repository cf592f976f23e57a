// Runs aedes-persistence 10.3.1's own conformance suite (abstract.js) against LevelPersistence,
// one fresh LevelDB directory per test case.
import { test, after } from 'node:test'
import { createRequire } from 'node:module'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { LevelPersistence } from '../../src/protocol/persistence/level-persistence.js'

const require = createRequire(import.meta.url)
const abstractPersistence = require('aedes-persistence/abstract.js') as (opts: {
  test: typeof test
  persistence: () => LevelPersistence
  testAsync: boolean
}) => void

const root = mkdtempSync(join(tmpdir(), 'spool-persistence-'))
let n = 0
after(() => rmSync(root, { recursive: true, force: true }))

abstractPersistence({
  test,
  persistence: () => new LevelPersistence({ path: join(root, String(n++)) }),
  testAsync: true,
})
