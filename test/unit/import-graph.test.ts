// The import graph of src/: no cycle (type imports included), and the layer rules ESLint cannot state
// without a plugin. Reads the TypeScript sources (not dist/), takes every `import ... from './x.js'`,
// `export ... from './x.js'`, `import './x.js'` and `import('./x.js')` with a relative path, and resolves
// it to a src/ file.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { dirname, join, relative, resolve, sep } from 'node:path'
import { fileURLToPath } from 'node:url'

function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url))
  while (!existsSync(join(dir, 'package.json'))) {
    const parent = dirname(dir)
    if (parent === dir) throw new Error('no package.json above the test')
    dir = parent
  }
  return dir
}

const ROOT = packageRoot()
const SRC = join(ROOT, 'src')

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name)
    if (entry.isDirectory()) return sourceFiles(path)
    return entry.name.endsWith('.ts') && !entry.name.endsWith('.d.ts') ? [path] : []
  })
}

/** `src/`-relative, with forward slashes: `queue/manager.ts`. */
function name(path: string): string {
  return relative(SRC, path).split(sep).join('/')
}

// Statements start a line (doc comments start with ` * `); `[^;'"]*?` spans multi-line braces, not strings.
const STATIC = /^\s*(?:import|export)\b[^;'"]*?\bfrom\s*['"]([^'"]+)['"]/gm
const BARE = /^\s*import\s*['"]([^'"]+)['"]/gm
const DYNAMIC = /\bimport\(\s*['"]([^'"]+)['"]\s*\)/g

/** The specifiers a source imports from or re-exports, type-only ones included. */
export function specifiers(text: string): string[] {
  return [STATIC, BARE, DYNAMIC].flatMap((re) => [...text.matchAll(re)].map((m) => m[1] ?? ''))
}

function resolveImport(from: string, specifier: string): string | undefined {
  if (!specifier.startsWith('.')) return undefined
  const target = resolve(dirname(from), specifier)
  for (const candidate of [target.replace(/\.js$/, '.ts'), `${target}.ts`, join(target, 'index.ts')]) {
    if (existsSync(candidate)) return candidate
  }
  throw new Error(`${name(from)}: cannot resolve ${specifier}`)
}

/** Every src/ module and the src/ modules it imports. */
function importGraph(): Map<string, string[]> {
  const graph = new Map<string, string[]>()
  for (const file of sourceFiles(SRC)) {
    const targets = specifiers(readFileSync(file, 'utf8'))
      .map((specifier) => resolveImport(file, specifier))
      .filter((target): target is string => target !== undefined && target.startsWith(SRC + sep))
    graph.set(name(file), [...new Set(targets.map(name))].sort())
  }
  return graph
}

/** The first cycle a depth-first search meets, as a path that starts and ends on the same module. */
export function findCycle(graph: ReadonlyMap<string, readonly string[]>): string[] | undefined {
  const done = new Set<string>()
  const path: string[] = []
  const onPath = new Set<string>()
  const visit = (node: string): string[] | undefined => {
    if (onPath.has(node)) return [...path.slice(path.indexOf(node)), node]
    if (done.has(node)) return undefined
    path.push(node)
    onPath.add(node)
    for (const next of graph.get(node) ?? []) {
      const cycle = visit(next)
      if (cycle !== undefined) return cycle
    }
    path.pop()
    onPath.delete(node)
    done.add(node)
    return undefined
  }
  for (const node of [...graph.keys()].sort()) {
    const cycle = visit(node)
    if (cycle !== undefined) return cycle
  }
  return undefined
}

const graph = importGraph()

function importers(target: string): string[] {
  return [...graph].filter(([, targets]) => targets.includes(target)).map(([file]) => file)
}

void test('the parser sees every import form, type-only and multi-line ones included', () => {
  const text = [
    "import { a } from './a.js'",
    "import type { B } from '../b.js'",
    'import {',
    '  c,',
    '  type D,',
    "} from './c.js'",
    "export { e } from './e.js'",
    "export type * from './f.js'",
    "import './g.js'",
    "type H = import('./h.js').H",
    " * import { x } from './in-a-doc-comment.js' (the line starts with a star: skipped)",
    "import { pino } from 'pino'",
  ].join('\n')
  assert.deepEqual(specifiers(text).sort(), [
    '../b.js',
    './a.js',
    './c.js',
    './e.js',
    './f.js',
    './g.js',
    './h.js',
    'pino',
  ])
})

void test('the cycle finder reports the cycle as a path', () => {
  const cyclic = new Map([
    ['a.ts', ['b.ts']],
    ['b.ts', ['c.ts']],
    ['c.ts', ['a.ts']],
  ])
  assert.deepEqual(findCycle(cyclic), ['a.ts', 'b.ts', 'c.ts', 'a.ts'])
  assert.equal(
    findCycle(
      new Map([
        ['a.ts', ['b.ts']],
        ['b.ts', []],
      ]),
    ),
    undefined,
  )
})

void test('src/ has no import cycle, type imports included', () => {
  assert.ok(graph.size > 50, `read ${graph.size} modules under ${SRC}`)
  const cycle = findCycle(graph)
  assert.equal(cycle, undefined, `import cycle: ${cycle?.join(' -> ')}`)
})

void test('the cluster, the admin API and the CLI use the queue core through its ports, not the manager', () => {
  const offenders = importers('queue/manager.ts').filter((file) => /^(cluster|admin|cli)\//.test(file))
  assert.deepEqual(offenders, [])
})

void test('only main.ts imports the composition root', () => {
  assert.ok(graph.has('compose.ts'), 'src/compose.ts is the composition root')
  assert.deepEqual(importers('compose.ts'), ['main.ts'])
  assert.deepEqual(importers('main.ts'), [])
})
