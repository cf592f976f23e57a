/**
 * Summarizes a V8 CPU profile (`node --cpu-prof`, e.g. from `BENCH_CPU_PROF=dir npm run bench`): self
 * time by where the code lives (idle, GC, a package under node_modules, a file of Spool, Node's own
 * modules) and the top functions.
 *
 *   node dist/bench/profile-summary.js FILE.cpuprofile [topN]
 */
import { readFile } from 'node:fs/promises'

interface ProfileNode {
  id: number
  callFrame: { functionName: string; url: string; lineNumber: number }
}

interface Profile {
  nodes: ProfileNode[]
  samples: number[]
  timeDeltas: number[]
}

/** Where a frame's code lives: a package, a Spool file, Node internals, or V8's pseudo frames. */
export function categoryOf(url: string, functionName: string): string {
  if (url === '') {
    if (functionName === '(idle)' || functionName === '(garbage collector)' || functionName === '(program)') {
      return functionName
    }
    return '(native)'
  }
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url)
  if (pkg !== null) return pkg[1]!
  if (url.startsWith('node:')) return `node:${url.slice(5).split('/')[0]}`
  const own = /\/dist\/(src\/.+|bench\/.+)\.js$/.exec(url)
  if (own !== null) return own[1]!
  return url
}

async function main(): Promise<void> {
  const [file, topArg] = process.argv.slice(2)
  if (file === undefined) throw new Error('usage: profile-summary FILE.cpuprofile [topN]')
  const top = Number(topArg ?? 25)
  const profile = JSON.parse(await readFile(file, 'utf8')) as Profile
  const byId = new Map(profile.nodes.map((node) => [node.id, node]))
  const selfUs = new Map<number, number>()
  let total = 0
  profile.samples.forEach((id, i) => {
    const delta = profile.timeDeltas[i] ?? 0
    selfUs.set(id, (selfUs.get(id) ?? 0) + delta)
    total += delta
  })
  const categories = new Map<string, number>()
  const functions = new Map<string, number>()
  for (const [id, us] of selfUs) {
    const frame = byId.get(id)!.callFrame
    const category = categoryOf(frame.url, frame.functionName)
    categories.set(category, (categories.get(category) ?? 0) + us)
    const name = `${frame.functionName || '(anonymous)'} ${category}:${frame.lineNumber + 1}`
    functions.set(name, (functions.get(name) ?? 0) + us)
  }
  const idle = categories.get('(idle)') ?? 0
  const busy = total - idle
  const pct = (us: number, of: number) => `${((100 * us) / of).toFixed(1)} %`
  const lines = [
    `${file}: ${(total / 1e6).toFixed(1)} s sampled, idle ${pct(idle, total)}`,
    '',
    'self time by place (share of busy time):',
    ...[...categories]
      .filter(([name]) => name !== '(idle)')
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([name, us]) => `  ${pct(us, busy).padStart(7)}  ${name}`),
    '',
    'top functions by self time (share of busy time):',
    ...[...functions]
      .filter(([name]) => !name.startsWith('(idle)'))
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([name, us]) => `  ${pct(us, busy).padStart(7)}  ${name}`),
  ]
  process.stdout.write(`${lines.join('\n')}\n`)
}

if (process.argv[1]?.endsWith('profile-summary.js') === true) await main()
