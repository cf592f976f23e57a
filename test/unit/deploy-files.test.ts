// The deploy files (deploy/): Docker cannot run on the development machines, so this test parses every
// file and checks that what it names exists in Spool: env vars and flags go through the real config
// loader (loadConfig), ports must be the ports that config makes Spool listen on, the data volume must
// be the data dir, HTTP paths (health checks, probes, scrape paths) must be served by a real server,
// and cross references (services, selectors, mounts, files) must resolve. docs/deploy.md says what
// this does not cover.
import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs'
import { dirname, join, posix, relative } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parse as parseYaml, parseAllDocuments } from 'yaml'
import { ADMIN_PROTO_PATH } from '../../src/admin/grpc-server.js'
import { CLUSTER_PROTO_PATH } from '../../src/cluster/peer-protocol.js'
import { loadConfig, SOURCE_MAPPINGS, type SpoolConfig } from '../../src/config/index.js'
import { startTestServer } from '../helpers/server.js'

// ---------------------------------------------------------------------------------------------------
// Repository files

/** The repository root: the nearest directory above this file with Spool's package.json. */
function findRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url))
  for (;;) {
    const pkg = join(dir, 'package.json')
    if (existsSync(pkg) && (JSON.parse(readFileSync(pkg, 'utf8')) as { name?: string }).name === 'spool') {
      return dir
    }
    const up = dirname(dir)
    if (up === dir) throw new Error('repository root (package.json of spool) not found')
    dir = up
  }
}

const ROOT = findRoot()
const read = (rel: string): string => readFileSync(join(ROOT, rel), 'utf8')
const exists = (rel: string): boolean => existsSync(join(ROOT, rel))

function filesUnder(rel: string): string[] {
  return readdirSync(join(ROOT, rel)).flatMap((name) => {
    const path = posix.join(rel, name)
    return statSync(join(ROOT, path)).isDirectory() ? filesUnder(path) : [path]
  })
}

const DEPLOY_FILES = filesUnder('deploy')

// ---------------------------------------------------------------------------------------------------
// Loose access to parsed YAML / JSON

type Obj = Record<string, unknown>
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v)

function obj(v: unknown, where: string): Obj {
  assert.ok(isObj(v), `${where}: expected a mapping, got ${JSON.stringify(v)}`)
  return v
}
function arr(v: unknown, where: string): unknown[] {
  if (v === undefined) return []
  assert.ok(Array.isArray(v), `${where}: expected a list, got ${JSON.stringify(v)}`)
  return v
}
function str(v: unknown, where: string): string {
  assert.ok(typeof v === 'string' || typeof v === 'number', `${where}: expected a string`)
  return String(v)
}
const at = (v: unknown, ...path: string[]): unknown =>
  path.reduce<unknown>((node, key) => (isObj(node) ? node[key] : undefined), v)

// ---------------------------------------------------------------------------------------------------
// Spool: the env vars, flags and config it knows, and the effective config of a deployed command line

const SPOOL_ENV = new Set([...SOURCE_MAPPINGS.map((m) => m.env), 'SPOOL_CONFIG'])
const SPOOL_FLAGS = new Set([
  ...SOURCE_MAPPINGS.flatMap((m) => (m.flag === undefined ? [] : [`--${m.flag}`])),
  '--config',
])

/** How a deploy file starts Spool: arguments after `main.js`, environment, files it can read. */
interface SpoolRun {
  where: string
  argv: readonly string[]
  env: Readonly<Record<string, string>>
  /** Absolute path in the deployment -> content (a mounted ConfigMap, an env file). */
  files?: Readonly<Record<string, string>>
}

/** The config Spool would run with; fails naming the file when Spool would refuse to start. */
function effectiveConfig(run: SpoolRun): SpoolConfig {
  for (const name of Object.keys(run.env)) {
    if (name.startsWith('SPOOL_')) {
      assert.ok(
        SPOOL_ENV.has(name),
        `${run.where}: env var ${name} is not read by Spool (src/config/load.ts)`,
      )
    }
  }
  for (const arg of run.argv) {
    if (arg.startsWith('-')) {
      const flag = arg.split('=')[0] ?? arg
      assert.ok(SPOOL_FLAGS.has(flag), `${run.where}: flag ${flag} is not a flag of spool start`)
    }
  }
  assert.equal(run.argv[0], 'start', `${run.where}: the command must be "spool start"`)
  const files = run.files ?? {}
  try {
    return loadConfig({
      argv: run.argv,
      env: { ...run.env },
      readFile: (path) => {
        const content = files[path]
        if (content === undefined) throw Object.assign(new Error(`ENOENT: ${path}`), { code: 'ENOENT' })
        return content
      },
    }).config
  } catch (err) {
    assert.fail(
      `${run.where}: Spool would refuse to start (${(err as Error).message}) with ` +
        `argv ${JSON.stringify(run.argv)} and env ${JSON.stringify(run.env)}`,
    )
  }
}

/** Every port the config makes Spool listen on, by listener. */
function listenerPorts(config: SpoolConfig): Map<number, string> {
  const ports = new Map<number, string>([
    [config.mqtt.port, 'mqtt'],
    [config.http.port, 'http'],
  ])
  if (config.ws.port !== null) ports.set(config.ws.port, 'ws')
  if (config.grpc.port !== null) ports.set(config.grpc.port, 'grpc')
  return ports
}

/** `http://host:port` of an etcd endpoint, split. */
function etcdEndpoint(url: string, where: string): { host: string; port: number } {
  const parsed = new URL(url)
  assert.equal(parsed.protocol, 'http:', `${where}: etcd URL ${url}`)
  return { host: parsed.hostname, port: Number(parsed.port === '' ? 80 : parsed.port) }
}

/** A cluster member's settings: etcd endpoints, and a gRPC port for the traffic between nodes. */
function assertClusterMember(config: SpoolConfig, where: string): void {
  assert.ok(config.cluster.etcd.length > 0, `${where}: a cluster member (--etcd / SPOOL_ETCD)`)
  assert.ok(config.grpc.port !== null && config.grpc.port > 0, `${where}: a fixed grpc.port`)
  assert.notEqual(config.cluster.advertise, '127.0.0.1', `${where}: --advertise a name the other nodes reach`)
}

function assertListenerPort(config: SpoolConfig, port: number, where: string): void {
  assert.ok(
    listenerPorts(config).has(port),
    `${where}: port ${port} is none of Spool's listeners (${[...listenerPorts(config).entries()]
      .map(([p, l]) => `${l} ${p}`)
      .join(', ')})`,
  )
}

/** HTTP paths the deploy files expect Spool to serve, and where; checked against a real server. */
const httpPaths = new Map<string, string[]>()
function expectHttpPath(path: string, where: string): void {
  assert.match(path, /^\/[\w/.-]*$/, `${where}: not an HTTP path: ${path}`)
  httpPaths.set(path, [...(httpPaths.get(path) ?? []), where])
}

/** Milliseconds from a duration like `20s`, `1m30s` or a plain number of seconds. */
function seconds(value: unknown, where: string): number {
  const text = str(value, where).trim()
  if (/^\d+$/.test(text)) return Number(text)
  const match = /^(?:(\d+)m)?(?:(\d+)s)?$/.exec(text)
  assert.ok(match !== null && text !== '', `${where}: not a duration: ${text}`)
  return Number(match[1] ?? 0) * 60 + Number(match[2] ?? 0)
}

function assertOutlastsShutdown(config: SpoolConfig, graceSeconds: number, where: string): void {
  assert.ok(
    graceSeconds * 1000 > config.shutdown.timeoutMs,
    `${where}: ${graceSeconds} s before SIGKILL is not longer than shutdown.timeoutMs ${config.shutdown.timeoutMs} ms`,
  )
}

// ---------------------------------------------------------------------------------------------------
// Dockerfile

interface Instruction {
  op: string
  args: string
  line: number
}

/** Instructions by line: comments dropped, `\` continuations joined. */
function parseDockerfile(text: string): Instruction[] {
  const out: Instruction[] = []
  let pending: { args: string; line: number } | undefined
  text.split('\n').forEach((raw, index) => {
    const line = raw.trim()
    if (line.startsWith('#') || (line === '' && pending === undefined)) return
    const continued = line.endsWith('\\')
    const body = continued ? line.slice(0, -1).trim() : line
    pending =
      pending === undefined
        ? { args: body, line: index + 1 }
        : { ...pending, args: `${pending.args} ${body}` }
    if (continued) return
    const [op = '', ...rest] = pending.args.split(/\s+/)
    out.push({ op: op.toUpperCase(), args: rest.join(' '), line: pending.line })
    pending = undefined
  })
  return out
}

/** `K=V K2="v 2"` (ENV, systemd Environment=) into a record. */
function assignments(text: string, where: string): Record<string, string> {
  const env: Record<string, string> = {}
  for (const match of text.matchAll(/([A-Za-z_][A-Za-z0-9_]*)=("[^"]*"|\S*)/g)) {
    const [, name = '', value = ''] = match
    env[name] = value.startsWith('"') ? value.slice(1, -1) : value
  }
  assert.ok(Object.keys(env).length > 0, `${where}: no NAME=value in "${text}"`)
  return env
}

function jsonArray(args: string, where: string): string[] {
  const parsed: unknown = JSON.parse(args)
  assert.ok(Array.isArray(parsed) && parsed.every((a) => typeof a === 'string'), `${where}: exec form`)
  return parsed
}

interface Image {
  env: Record<string, string>
  /** Arguments after the script (ENTRYPOINT tail + CMD). */
  argv: string[]
  config: SpoolConfig
  exposed: number[]
}

/** The Dockerfile's runtime image as Spool sees it; checks the build as it goes. */
function dockerImage(): Image {
  const file = 'deploy/Dockerfile'
  const all = parseDockerfile(read(file))
  const stages: Instruction[][] = []
  for (const ins of all) {
    if (ins.op === 'FROM') stages.push([])
    stages.at(-1)?.push(ins)
  }
  assert.ok(stages.length >= 2, `${file}: multi-stage`)
  for (const stage of stages)
    assert.match(stage[0]?.args ?? '', /^node:20-bookworm-slim\b/, `${file}: base image`)
  const build = stages[0] ?? []
  const runtime = stages.at(-1) ?? []
  const where = (ins: Instruction) => `${file}:${ins.line} ${ins.op}`

  // Every COPY from the build context names a file or directory of the repository.
  for (const ins of all.filter((i) => i.op === 'COPY' && !i.args.includes('--from='))) {
    const parts = ins.args.split(/\s+/).filter((p) => !p.startsWith('--'))
    for (const source of parts.slice(0, -1))
      assert.ok(exists(source), `${where(ins)}: ${source} is not in the repository`)
  }
  // aedes is the workspace package packages/aedes (Spool's fork): it must be in place before `npm ci`,
  // which links node_modules/aedes to it, and the runtime stage needs it behind that link.
  const pkg = JSON.parse(read('package.json')) as {
    workspaces?: string[]
    dependencies: Record<string, string>
  }
  assert.deepEqual(pkg.workspaces, ['packages/aedes'])
  assert.equal(pkg.dependencies.aedes, 'file:packages/aedes')
  const npmCi = build.findIndex((i) => i.op === 'RUN' && /\bnpm ci\b/.test(i.args))
  const copyFork = build.findIndex((i) => i.op === 'COPY' && /^packages\/aedes\b/.test(i.args))
  assert.ok(npmCi > 0 && copyFork > 0 && copyFork < npmCi, `${file}: COPY packages/aedes before RUN npm ci`)
  assert.ok(existsSync(join(ROOT, 'packages/aedes/aedes.js')))
  assert.match(build[npmCi]?.args ?? '', /\bnpm ci\b/, `${file}: npm ci`)
  assert.ok(
    runtime.some(
      (i) => i.op === 'COPY' && i.args.includes('--from=build') && i.args.includes('/app/packages/aedes'),
    ),
    `${file}: runtime copies the aedes fork`,
  )
  // The runtime stage takes node_modules (patched, production only) and the compiled server from build.
  assert.ok(
    !runtime.some((i) => i.op === 'RUN' && /\bnpm (ci|install|i)\b/.test(i.args)),
    `${file}: no install in runtime`,
  )
  assert.ok(
    build.some((i) => i.op === 'RUN' && /npm prune --omit=dev/.test(i.args)),
    `${file}: dev deps pruned`,
  )
  const fromBuild = runtime
    .filter((i) => i.op === 'COPY' && i.args.includes('--from=build'))
    .map((i) => i.args)
  assert.ok(
    fromBuild.some((a) => a.includes('/app/node_modules')),
    `${file}: runtime copies node_modules`,
  )

  // ENTRYPOINT runs what `npm run build` produces (package.json "bin"), copied into the runtime stage.
  const entry = runtime.find((i) => i.op === 'ENTRYPOINT')
  const cmd = runtime.find((i) => i.op === 'CMD')
  assert.ok(entry !== undefined && cmd !== undefined, `${file}: ENTRYPOINT and CMD`)
  const [node, script = '', ...entryArgs] = jsonArray(entry.args, where(entry))
  assert.equal(node, 'node')
  const bin = (JSON.parse(read('package.json')) as { bin: Record<string, string> }).bin.spool
  assert.equal(script, bin, `${where(entry)}: runs package.json's bin`)
  assert.ok(exists(script.replace(/^dist\//, '').replace(/\.js$/, '.ts')), `${script} is built from src`)
  assert.ok(
    fromBuild.some((a) => a.includes(`/app/${posix.dirname(script)} `)),
    `${file}: runtime stage copies /app/${posix.dirname(script)}`,
  )
  // gRPC (the admin service, the cluster's traffic) loads its .proto files at run time, from proto/
  // beside package.json: the runtime stage must have them.
  const copiesProto = runtime.some((i) => {
    if (i.op !== 'COPY') return false
    const parts = i.args.split(/\s+/).filter((p) => !p.startsWith('--'))
    const sources = parts.slice(0, -1).map((p) => p.replace(/^\/app\//, '').replace(/\/$/, ''))
    return sources.includes('proto') && /^(\.\/|\/app\/)proto\/?$/.test(parts.at(-1) ?? '')
  })
  assert.ok(copiesProto, `${file}: runtime stage copies proto/ (loaded by the gRPC services at run time)`)
  for (const proto of [ADMIN_PROTO_PATH, CLUSTER_PROTO_PATH]) {
    assert.ok(proto.split(/[\\/]/)[0] === 'proto' && exists(proto), `${proto} is under proto/`)
  }

  const env: Record<string, string> = {}
  for (const ins of runtime.filter((i) => i.op === 'ENV'))
    Object.assign(env, assignments(ins.args, where(ins)))
  const argv = [...entryArgs, ...jsonArray(cmd.args, where(cmd))]
  const config = effectiveConfig({ where: file, argv, env })

  const exposed = runtime
    .filter((i) => i.op === 'EXPOSE')
    .flatMap((i) => i.args.split(/\s+/).map((p) => Number(p.replace(/\/tcp$/, ''))))
  for (const port of exposed) assertListenerPort(config, port, `${file} EXPOSE`)
  assert.ok(
    exposed.includes(config.mqtt.port) && exposed.includes(config.http.port),
    `${file}: EXPOSE mqtt and http`,
  )

  const volumes = runtime.filter((i) => i.op === 'VOLUME').map((i) => i.args.trim())
  assert.deepEqual(volumes, [config.dataDir], `${file}: VOLUME is the data dir`)
  const user = runtime
    .filter((i) => i.op === 'USER')
    .at(-1)
    ?.args.trim()
  assert.ok(user !== undefined && !['root', '0'].includes(user.split(':')[0] ?? ''), `${file}: non-root USER`)

  // HEALTHCHECK: node's fetch on the http port (SPOOL_HTTP_PORT or the default) and a served path.
  const health = runtime.find((i) => i.op === 'HEALTHCHECK')
  assert.ok(health !== undefined, `${file}: HEALTHCHECK`)
  const probe = jsonArray(health.args.slice(health.args.indexOf('CMD ') + 4), where(health)).join(' ')
  const url = /http:\/\/127\.0\.0\.1:' \+ \(process\.env\.(\w+) \|\| (\d+)\) \+ '(\/\w*)'/.exec(probe)
  assert.ok(url !== null, `${where(health)}: fetch('http://127.0.0.1:' + (process.env.X || PORT) + '/path')`)
  const [, portVar = '', fallback = '', path = ''] = url
  assert.equal(SOURCE_MAPPINGS.find((m) => m.env === portVar)?.path.join('.'), 'http.port', where(health))
  assert.equal(Number(fallback), config.http.port, `${where(health)}: default http port`)
  assert.equal(path, '/readyz')
  expectHttpPath(path, where(health))
  return { env, argv, config, exposed }
}

// ---------------------------------------------------------------------------------------------------
// Tests: one per file, then the HTTP paths every file named, against a real server

void test('every SPOOL_* name in deploy/ and docs/deploy.md is an env var Spool reads', () => {
  for (const file of [...DEPLOY_FILES, 'docs/deploy.md']) {
    for (const [name] of read(file).matchAll(/\bSPOOL_[A-Z0-9_]+/g)) {
      assert.ok(SPOOL_ENV.has(name), `${file}: ${name} is not read by Spool (src/config/load.ts)`)
    }
  }
})

void test('Dockerfile: multi-stage, patched production deps, non-root, data volume, ports, healthcheck', () => {
  dockerImage()
})

/** compose.yaml with its Prometheus and Grafana files. */
function checkCompose(): void {
  const file = 'deploy/compose.yaml'
  const doc = obj(parseYaml(read(file), { merge: true }), file)
  const services = obj(doc.services, `${file} services`)
  const namedVolumes = new Set(Object.keys(obj(doc.volumes ?? {}, `${file} volumes`)))
  const image = dockerImage()
  const spool = new Map<string, SpoolConfig>()
  const hostPorts = new Map<string, string>()

  for (const [name, raw] of Object.entries(services)) {
    const svc = obj(raw, `${file} ${name}`)
    const where = `${file} services.${name}`
    for (const dep of arr(svc.depends_on, `${where}.depends_on`)) {
      assert.ok(str(dep, where) in services, `${where}: depends_on unknown service ${String(dep)}`)
    }
    for (const entry of arr(svc.ports, `${where}.ports`)) {
      const [host = '', container = ''] = str(entry, where).split(':')
      assert.ok(!hostPorts.has(host), `${where}: host port ${host} also used by ${hostPorts.get(host)}`)
      hostPorts.set(host, name)
      if (container === '') assert.fail(`${where}: port mapping ${String(entry)} needs host:container`)
    }
    for (const entry of arr(svc.volumes, `${where}.volumes`)) {
      const [source = ''] = str(entry, where).split(':')
      if (source.startsWith('.'))
        assert.ok(exists(posix.join('deploy', source)), `${where}: ${source} missing`)
      else assert.ok(namedVolumes.has(source), `${where}: volume ${source} not declared`)
    }

    const build = svc.build === undefined ? undefined : obj(svc.build, `${where}.build`)
    if (build === undefined && !str(svc.image ?? '', where).startsWith('spool')) continue
    // A Spool node: built from deploy/Dockerfile with the repository root as context.
    assert.ok(build !== undefined, `${where}: build`)
    const context = posix.join('deploy', str(build.context, where))
    assert.equal(relative(ROOT, join(ROOT, context)), '', `${where}: build context is the repository root`)
    assert.equal(str(build.dockerfile, where), 'deploy/Dockerfile')

    const env: Record<string, string> = { ...image.env }
    const environment = svc.environment ?? {}
    if (Array.isArray(environment)) {
      for (const item of environment) Object.assign(env, assignments(str(item, where), where))
    } else {
      for (const [k, v] of Object.entries(obj(environment, where))) env[k] = str(v, `${where} ${k}`)
    }
    const command = svc.command === undefined ? image.argv : arr(svc.command, where).map((a) => str(a, where))
    const config = effectiveConfig({ where, argv: command, env })
    spool.set(name, config)

    for (const entry of arr(svc.ports, `${where}.ports`)) {
      const container = Number(str(entry, where).split(':')[1])
      assertListenerPort(config, container, `${where} ports`)
    }
    const mounts = arr(svc.volumes, where).map((v) => str(v, where).split(':')[1])
    assert.ok(mounts.includes(config.dataDir), `${where}: a volume at the data dir ${config.dataDir}`)
    assertOutlastsShutdown(config, seconds(svc.stop_grace_period ?? 10, where), `${where}.stop_grace_period`)
  }

  assert.equal(spool.size, 3, `${file}: three Spool nodes`)
  const nodeIds = [...spool.values()].map((c) => c.nodeId)
  assert.equal(new Set(nodeIds).size, nodeIds.length, `${file}: distinct node ids`)
  assert.ok('etcd' in services, `${file}: etcd`)

  // One cluster: every node on the compose etcd, reachable by the others at its service name, with
  // its own data volume and the same prefix and routing.
  const dataVolumes = new Set<string>()
  for (const [name, config] of spool) {
    const where = `${file} services.${name}`
    const svc = obj(services[name], where)
    assertClusterMember(config, where)
    for (const url of config.cluster.etcd) {
      const { host, port } = etcdEndpoint(url, where)
      const etcd = obj(services[host], `${where}: etcd host ${host} is a compose service`)
      const listens = arr(etcd.command, `${file} ${host}.command`)
        .map((a) => str(a, host))
        .find((a) => a.startsWith('--listen-client-urls='))
      assert.ok(
        listens
          ?.split('=')[1]
          ?.split(',')
          .some((u) => etcdEndpoint(u, host).port === port) === true,
        `${where}: ${host} listens for clients on ${port}`,
      )
      assert.ok(arr(svc.depends_on, where).includes(host), `${where}: depends_on ${host}`)
    }
    assert.ok(
      config.cluster.advertise === name || config.cluster.advertise === svc.hostname,
      `${where}: --advertise ${config.cluster.advertise} is its service name`,
    )
    const data = arr(svc.volumes, where)
      .map((v) => str(v, where).split(':'))
      .find(([, target]) => target === config.dataDir)?.[0]
    assert.ok(data !== undefined && !dataVolumes.has(data), `${where}: its own data volume`)
    dataVolumes.add(data)
  }
  const first = [...spool.values()][0]!
  for (const config of spool.values()) {
    assert.equal(config.cluster.prefix, first.cluster.prefix, `${file}: one etcd prefix`)
    assert.equal(config.cluster.routing, first.cluster.routing, `${file}: one routing mode`)
  }

  // Prometheus: the mounted config scrapes every Spool node on its http port.
  const prometheus = obj(services.prometheus, `${file} prometheus`)
  const configFlag = arr(prometheus.command, file)
    .map((a) => str(a, file))
    .find((a) => a.startsWith('--config.file='))
  const mounted = arr(prometheus.volumes, file)
    .map((v) => str(v, file).split(':'))
    .find(([, target]) => target === configFlag?.split('=')[1])
  assert.ok(mounted?.[0] !== undefined, `${file}: prometheus mounts its --config.file`)
  const promFile = posix.join('deploy', mounted[0])
  const prom = obj(parseYaml(read(promFile)), promFile)
  const scraped = new Set<string>()
  for (const job of arr(prom.scrape_configs, promFile)) {
    const where = `${promFile} job ${str(at(job, 'job_name'), promFile)}`
    expectHttpPath(str(at(job, 'metrics_path') ?? '/metrics', where), where)
    for (const sc of arr(at(job, 'static_configs'), where)) {
      for (const target of arr(at(sc, 'targets'), where)) {
        const [host = '', port = ''] = str(target, where).split(':')
        const config = spool.get(host)
        assert.ok(config !== undefined, `${where}: target ${host} is not a Spool service of ${file}`)
        assert.equal(Number(port), config.http.port, `${where}: ${host} serves HTTP on ${config.http.port}`)
        scraped.add(host)
      }
    }
  }
  assert.deepEqual([...scraped].sort(), [...spool.keys()].sort(), `${promFile}: scrapes every node`)

  // Grafana: provisioning points at the mounted dashboard and at the compose Prometheus.
  const grafana = obj(services.grafana, `${file} grafana`)
  const grafanaMounts = arr(grafana.volumes, file).map((v) => str(v, file).split(':'))
  const dashboardMount = grafanaMounts.find(([source]) => source === './grafana/spool-queues.json')
  assert.ok(dashboardMount?.[1] !== undefined, `${file}: grafana mounts the dashboard`)
  const providers = parseYaml(read('deploy/grafana/provisioning/dashboards/spool.yaml')) as unknown
  const providerPaths = arr(at(providers, 'providers'), 'providers').map((p) =>
    str(at(p, 'options', 'path'), 'path'),
  )
  assert.ok(providerPaths.includes(posix.dirname(dashboardMount[1])), 'dashboard provider path = mounted dir')
  const sources = parseYaml(read('deploy/grafana/provisioning/datasources/prometheus.yaml')) as unknown
  const urls = arr(at(sources, 'datasources'), 'datasources').map((d) => str(at(d, 'url'), 'url'))
  const promPort = arr(prometheus.ports, file).map((p) => str(p, file).split(':')[1])[0]
  assert.ok(urls.includes(`http://prometheus:${promPort}`), 'grafana datasource is the compose prometheus')
}

/** Every metric name in the dashboard's queries. */
function dashboardMetrics(): Map<string, string> {
  const file = 'deploy/grafana/spool-queues.json'
  const dashboard = obj(JSON.parse(read(file)), file)
  const exprs: string[] = []
  const variables = arr(at(dashboard, 'templating', 'list'), file)
  for (const v of variables) {
    const query = at(v, 'query', 'query')
    if (typeof query === 'string') exprs.push(query)
  }
  const panels = arr(dashboard.panels, file)
  assert.ok(panels.length > 0, `${file}: panels`)
  for (const panel of panels) {
    const targets = arr(at(panel, 'targets'), `${file} panel`)
    assert.ok(targets.length > 0, `${file}: panel "${String(at(panel, 'title'))}" has queries`)
    for (const target of targets) exprs.push(str(at(target, 'expr'), `${file} expr`))
  }
  const metrics = new Map<string, string>()
  for (const expr of exprs) {
    const names = [...expr.matchAll(/\b(spool_[a-z0-9_]+)\b/g)].map((m) => m[1] ?? '')
    assert.ok(names.length > 0, `${file}: query without a spool_ metric: ${expr}`)
    for (const name of names) metrics.set(name, expr)
  }
  return metrics
}

void test('Grafana dashboard: valid JSON, every query reads spool_ metrics', () => {
  const metrics = dashboardMetrics()
  for (const name of metrics.keys()) {
    assert.match(name, /^spool_[a-z0-9_]+$/)
  }
  assert.ok(metrics.has('spool_queue_depth'))
})

/** deploy/k8s: the manifests in kustomization.yaml and optional/. */
function checkKubernetes(): void {
  const dir = 'deploy/k8s'
  const kustomization = obj(parseYaml(read(`${dir}/kustomization.yaml`)), 'kustomization')
  const resources = arr(kustomization.resources, 'kustomization').map((r) => posix.join(dir, str(r, dir)))
  const manifests = DEPLOY_FILES.filter((f) => f.startsWith(`${dir}/`) && f.endsWith('.yaml'))
  for (const f of manifests) {
    if (!f.endsWith('kustomization.yaml') && !f.startsWith(`${dir}/optional/`)) {
      assert.ok(resources.includes(f), `${f} is listed in kustomization.yaml`)
    }
  }
  const docs: Array<{ file: string; doc: Obj }> = []
  for (const f of manifests.filter((m) => !m.endsWith('kustomization.yaml'))) {
    for (const d of parseAllDocuments(read(f))) {
      assert.deepEqual(d.errors, [], `${f}: YAML errors`)
      const doc = obj(d.toJS(), f)
      assert.ok(
        typeof doc.apiVersion === 'string' && typeof doc.kind === 'string',
        `${f}: apiVersion and kind`,
      )
      docs.push({ file: f, doc })
    }
  }
  const ofKind = (kind: string) => docs.filter(({ doc }) => doc.kind === kind)
  const nameOf = (doc: Obj) => str(at(doc, 'metadata', 'name'), 'metadata.name')
  const matches = (selector: unknown, labels: unknown) =>
    isObj(selector) &&
    Object.keys(selector).length > 0 &&
    Object.entries(selector).every(([k, v]) => isObj(labels) && labels[k] === v)

  // Workloads: their pod labels and container ports by name and number.
  const workloads = ofKind('StatefulSet').concat(ofKind('Deployment'))
  const podsOf = (selector: unknown) =>
    workloads.filter(({ doc }) => matches(selector, at(doc, 'spec', 'template', 'metadata', 'labels')))
  const containerPorts = (doc: Obj) =>
    arr(at(doc, 'spec', 'template', 'spec', 'containers'), 'containers').flatMap((c) =>
      arr(at(c, 'ports'), 'ports').map((p) => ({
        name: at(p, 'name'),
        port: Number(at(p, 'containerPort')),
      })),
    )
  const resolvePort = (doc: Obj, port: unknown, where: string): number => {
    const found = containerPorts(doc).find((p) => p.name === port || p.port === port)
    assert.ok(found !== undefined, `${where}: port ${String(port)} is not a container port`)
    return found.port
  }

  // Every Service selects pods and every targetPort resolves in them.
  for (const { file, doc } of ofKind('Service')) {
    const where = `${file} Service ${nameOf(doc)}`
    const selected = podsOf(at(doc, 'spec', 'selector'))
    assert.ok(selected.length > 0, `${where}: selector matches no pods`)
    for (const p of arr(at(doc, 'spec', 'ports'), where)) {
      for (const w of selected) resolvePort(w.doc, at(p, 'targetPort') ?? at(p, 'port'), where)
    }
  }

  const spoolSets = ofKind('StatefulSet').filter(({ doc }) =>
    arr(at(doc, 'spec', 'template', 'spec', 'containers'), 'containers').some((c) =>
      String(at(c, 'image')).startsWith('spool'),
    ),
  )
  assert.equal(spoolSets.length, 1, `${dir}: one Spool StatefulSet`)
  const { file, doc: sts } = spoolSets[0]!
  const where = `${file} StatefulSet ${nameOf(sts)}`
  const pod = obj(at(sts, 'spec', 'template', 'spec'), where)
  const podLabels = at(sts, 'spec', 'template', 'metadata', 'labels')
  assert.ok(
    matches(at(sts, 'spec', 'selector', 'matchLabels'), podLabels),
    `${where}: selector matches its pods`,
  )
  const container = obj(
    arr(pod.containers, where).find((c) => String(at(c, 'image')).startsWith('spool')),
    where,
  )

  // Environment (values and the pod name from the downward API) and mounted config files.
  const env: Record<string, string> = {}
  // Kubernetes expands $(VAR) in env values and args from the variables defined before (env order).
  const expand = (text: string) =>
    text.replace(/\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g, (whole, name: string) => env[name] ?? whole)
  for (const e of arr(container.env, `${where} env`)) {
    const name = str(at(e, 'name'), where)
    const value = at(e, 'value')
    if (value !== undefined) env[name] = expand(str(value, `${where} ${name}`))
    else {
      assert.equal(
        at(e, 'valueFrom', 'fieldRef', 'fieldPath'),
        'metadata.name',
        `${where} ${name}: valueFrom`,
      )
      env[name] = `${nameOf(sts)}-0`
    }
  }
  const volumes = arr(pod.volumes, where)
  const claims = arr(at(sts, 'spec', 'volumeClaimTemplates'), where).map((c) =>
    str(at(c, 'metadata', 'name'), where),
  )
  const files: Record<string, string> = {}
  const mounts = arr(container.volumeMounts, where).map((m) => ({
    name: str(at(m, 'name'), where),
    path: str(at(m, 'mountPath'), where),
  }))
  for (const mount of mounts) {
    const volume = volumes.find((v) => at(v, 'name') === mount.name)
    const configMap = at(volume, 'configMap', 'name')
    if (configMap === undefined) {
      assert.ok(
        claims.includes(mount.name) || volume !== undefined,
        `${where}: volume ${mount.name} undefined`,
      )
      continue
    }
    const cm = ofKind('ConfigMap').find(({ doc }) => nameOf(doc) === configMap)
    assert.ok(cm !== undefined, `${where}: ConfigMap ${JSON.stringify(configMap)} not in ${dir}`)
    for (const [key, content] of Object.entries(obj(at(cm.doc, 'data'), 'data'))) {
      files[posix.join(mount.path, key)] = str(content, key)
    }
  }
  if (env.SPOOL_CONFIG !== undefined)
    assert.ok(env.SPOOL_CONFIG in files, `${where}: SPOOL_CONFIG is a mounted file`)
  const args = arr(container.args ?? ['start'], where).map((a) => expand(str(a, where)))
  for (const a of args) assert.ok(!a.includes('$('), `${where}: args ${a}: $(VAR) of an undefined env var`)
  const config = effectiveConfig({ where, argv: args, env, files })

  for (const p of containerPorts(sts))
    assertListenerPort(config, p.port, `${where} containerPort ${String(p.name)}`)
  const dataMount = mounts.find((m) => m.path === config.dataDir)
  assert.ok(
    dataMount !== undefined && claims.includes(dataMount.name),
    `${where}: a volumeClaimTemplate at ${config.dataDir}`,
  )
  for (const kind of ['readinessProbe', 'livenessProbe', 'startupProbe']) {
    const probe = at(container, kind, 'httpGet')
    if (probe === undefined) continue
    assert.equal(
      resolvePort(sts, at(probe, 'port'), `${where} ${kind}`),
      config.http.port,
      `${where} ${kind}: http port`,
    )
    expectHttpPath(str(at(probe, 'path'), kind), `${where} ${kind}`)
  }
  assert.equal(at(container, 'readinessProbe', 'httpGet', 'path'), '/readyz')
  const annotations = obj(at(sts, 'spec', 'template', 'metadata', 'annotations'), `${where} annotations`)
  assert.equal(annotations['prometheus.io/scrape'], 'true')
  assert.equal(Number(annotations['prometheus.io/port']), config.http.port, `${where}: scrape port`)
  expectHttpPath(str(annotations['prometheus.io/path'], where), `${where} prometheus.io/path`)
  assert.equal(at(pod, 'securityContext', 'runAsNonRoot'), true, `${where}: runAsNonRoot`)
  assert.notEqual(at(pod, 'securityContext', 'runAsUser'), 0, `${where}: not root`)
  assertOutlastsShutdown(
    config,
    Number(pod.terminationGracePeriodSeconds ?? 30),
    `${where} terminationGracePeriodSeconds`,
  )

  // The headless service of the StatefulSet, a client service, a PDB for its pods.
  const services = ofKind('Service').map(({ doc }) => doc)
  const headless = services.find((s) => nameOf(s) === at(sts, 'spec', 'serviceName'))
  assert.ok(
    headless !== undefined && at(headless, 'spec', 'clusterIP') === 'None',
    `${where}: headless serviceName`,
  )
  const clients = services.filter((s) => s !== headless && matches(at(s, 'spec', 'selector'), podLabels))
  assert.ok(clients.length > 0, `${dir}: a client Service for Spool`)
  for (const s of clients) {
    const ports = arr(at(s, 'spec', 'ports'), 'ports').map((p) =>
      resolvePort(sts, at(p, 'targetPort'), nameOf(s)),
    )
    assert.ok(ports.includes(config.mqtt.port), `Service ${nameOf(s)}: MQTT port`)
  }
  const pdb = ofKind('PodDisruptionBudget').find(({ doc }) =>
    matches(at(doc, 'spec', 'selector', 'matchLabels'), podLabels),
  )
  assert.ok(pdb !== undefined, `${dir}: a PodDisruptionBudget for Spool`)

  // Several replicas only as one cluster (otherwise the client Service spreads a queue's producers and
  // consumers over brokers that never exchange messages): etcd is a Service here, each pod advertises
  // its DNS name through the headless Service, which carries the gRPC port; one pod down at a time.
  const replicas = Number(at(sts, 'spec', 'replicas') ?? 1)
  if (replicas > 1 || config.cluster.etcd.length > 0) {
    assertClusterMember(config, where)
    for (const url of config.cluster.etcd) {
      const { host, port } = etcdEndpoint(url, where)
      // `<service>` or `<pod>.<service>` (namespace-relative DNS names).
      const etcdService = services.find((s) => host.split('.').slice(0, 2).includes(nameOf(s)))
      assert.ok(etcdService !== undefined, `${where}: etcd host ${host} is a Service of ${dir}`)
      const etcdPorts = arr(at(etcdService, 'spec', 'ports'), 'ports').map((p) => Number(at(p, 'port')))
      assert.ok(etcdPorts.includes(port), `${where}: Service ${nameOf(etcdService)} has port ${port}`)
      assert.ok(podsOf(at(etcdService, 'spec', 'selector')).length > 0, `${where}: etcd pods`)
    }
    assert.equal(
      config.cluster.advertise,
      `${env.SPOOL_NODE_ID}.${nameOf(headless)}`,
      `${where}: --advertise is the pod's DNS name <pod>.<headless Service>`,
    )
    assert.equal(env.SPOOL_NODE_ID, `${nameOf(sts)}-0`, `${where}: SPOOL_NODE_ID is the pod name`)
    const headlessPorts = arr(at(headless, 'spec', 'ports'), 'ports').map((p) =>
      resolvePort(sts, at(p, 'targetPort') ?? at(p, 'port'), nameOf(headless)),
    )
    assert.ok(headlessPorts.includes(config.grpc.port!), `${where}: the headless Service carries gRPC`)
    assert.ok(
      containerPorts(sts).some((p) => p.port === config.grpc.port),
      `${where}: a containerPort for gRPC`,
    )
    assert.equal(at(pdb.doc, 'spec', 'maxUnavailable'), 1, `${dir}: PDB maxUnavailable 1`)
  }
  assert.ok(
    ofKind('StatefulSet').some(({ doc }) => nameOf(doc).includes('etcd')),
    `${dir}: etcd`,
  )

  // A NetworkPolicy selects the Spool pods; its ports and peers resolve to them.
  for (const { file: f, doc: np } of ofKind('NetworkPolicy')) {
    assert.ok(matches(at(np, 'spec', 'podSelector', 'matchLabels'), podLabels), `${f}: selects Spool pods`)
    for (const rule of arr(at(np, 'spec', 'ingress'), f)) {
      for (const p of arr(at(rule, 'ports'), f)) resolvePort(sts, at(p, 'port'), `${f} ingress port`)
      for (const peer of arr(at(rule, 'from'), f)) {
        const selector = at(peer, 'podSelector', 'matchLabels')
        if (selector !== undefined) assert.ok(podsOf(selector).length > 0, `${f}: from selects pods`)
      }
    }
  }

  // The optional ServiceMonitor selects exactly one Spool service and names one of its ports.
  for (const { file: f, doc: sm } of ofKind('ServiceMonitor')) {
    const selected = services.filter((s) =>
      matches(at(sm, 'spec', 'selector', 'matchLabels'), at(s, 'metadata', 'labels')),
    )
    assert.equal(selected.length, 1, `${f}: selects one Service`)
    for (const endpoint of arr(at(sm, 'spec', 'endpoints'), f)) {
      const port = arr(at(selected[0], 'spec', 'ports'), f).find(
        (p) => at(p, 'name') === at(endpoint, 'port'),
      )
      assert.equal(
        resolvePort(sts, at(port, 'targetPort'), f),
        config.http.port,
        `${f}: scrapes the http port`,
      )
      expectHttpPath(str(at(endpoint, 'path'), f), `${f} path`)
    }
  }
}

/** The systemd unit with its example env file. */
function checkSystemd(): void {
  const file = 'deploy/systemd/spool.service'
  const sections = new Map<string, Array<[string, string]>>()
  let section = ''
  for (const raw of read(file).split('\n')) {
    const line = raw.trim()
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue
    const header = /^\[(\w+)\]$/.exec(line)
    if (header !== null) {
      section = header[1] ?? ''
      sections.set(section, [])
      continue
    }
    const eq = line.indexOf('=')
    assert.ok(eq > 0 && section !== '', `${file}: "${line}" is not Key=Value in a section`)
    sections.get(section)?.push([line.slice(0, eq), line.slice(eq + 1)])
  }
  const service = sections.get('Service') ?? []
  const values = (key: string) => service.filter(([k]) => k === key).map(([, v]) => v)
  const one = (key: string) => {
    const found = values(key)
    assert.equal(found.length, 1, `${file}: one ${key}=`)
    return found[0] ?? ''
  }
  assert.ok(sections.has('Unit') && sections.has('Install'), `${file}: [Unit] and [Install]`)

  const env: Record<string, string> = {}
  for (const v of values('Environment')) Object.assign(env, assignments(v, `${file} Environment=`))
  // The example env file is what EnvironmentFile= points at once installed.
  const envFiles = values('EnvironmentFile').map((v) => v.replace(/^-/, ''))
  assert.deepEqual(envFiles, ['/etc/spool/spool.env'], `${file}: EnvironmentFile`)
  for (const raw of read('deploy/systemd/spool.env').split('\n')) {
    const line = raw.trim()
    if (line === '' || line.startsWith('#')) continue
    Object.assign(env, assignments(line, `deploy/systemd/spool.env: ${line}`))
  }

  const [node = '', script = '', ...argv] = one('ExecStart').split(/\s+/)
  assert.ok(node.startsWith('/') && node.endsWith('/node'), `${file}: ExecStart runs node by absolute path`)
  const bin = (JSON.parse(read('package.json')) as { bin: Record<string, string> }).bin.spool ?? ''
  assert.equal(script, posix.join(one('WorkingDirectory'), bin), `${file}: ExecStart runs package.json's bin`)
  const config = effectiveConfig({ where: file, argv, env })
  assert.equal(
    config.dataDir,
    `/var/lib/${one('StateDirectory')}`,
    `${file}: SPOOL_DATA_DIR is the StateDirectory`,
  )
  assertOutlastsShutdown(config, seconds(one('TimeoutStopSec'), file), `${file} TimeoutStopSec`)
  assert.equal(one('KillSignal'), 'SIGTERM')
  // main.ts exits 2 for a bad command line or config; restarting cannot fix that.
  assert.match(read('src/main.ts'), new RegExp(`EXIT_USAGE = ${one('RestartPreventExitStatus')}\\b`))
}

void test('compose.yaml: Spool nodes start with their env and command; ports, volumes, Prometheus, Grafana', () => {
  checkCompose()
})

void test('Kubernetes manifests: StatefulSet, services, probes, config map, volumes, PDB, scrape', () => {
  checkKubernetes()
})

void test('systemd unit and env file: ExecStart, environment, data dir, stop timeout', () => {
  checkSystemd()
})

void test('every HTTP path named by a deploy file is served by Spool', async (t: TestContext) => {
  httpPaths.clear()
  dockerImage()
  checkCompose()
  checkKubernetes()
  checkSystemd()
  const server = await startTestServer(t)
  const get = async (path: string) => {
    const response = await fetch(`http://127.0.0.1:${server.httpPort}${path}`)
    return { status: response.status, text: await response.text() }
  }
  for (const [path, where] of httpPaths) {
    const { status } = await get(path)
    await t.test(path, () => {
      assert.notEqual(status, 404, `${path} (named by ${where.join(', ')}) is not served`)
    })
  }

  // Every metric the dashboard queries must be exposed.
  const metrics = await get('/metrics')
  await t.test('every metric the Grafana dashboard queries is exposed on /metrics', () => {
    assert.equal(metrics.status, 200)
    const exposed = new Set([...metrics.text.matchAll(/^# TYPE (\S+) /gm)].map((m) => m[1]))
    for (const [name, expr] of dashboardMetrics()) {
      const base = name.replace(/_(bucket|sum|count)$/, '')
      assert.ok(
        exposed.has(name) || exposed.has(base),
        `deploy/grafana/spool-queues.json queries ${name} (in ${expr}), which /metrics does not expose`,
      )
    }
  })
})
