// The config loader: defaults, file < env < CLI precedence, queue settings, field-named errors.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { hostname } from 'node:os'
import { ConfigError, loadConfig, UsageError, validateConfig } from '../../src/config/index.js'
import { DEFAULT_QUEUE_SETTINGS } from '../../src/queue/settings.js'

function files(content: Record<string, unknown>) {
  return (path: string): string => {
    if (!(path in content)) throw Object.assign(new Error(`ENOENT: ${path}`), { code: 'ENOENT' })
    return JSON.stringify(content[path])
  }
}

function errorOf(fn: () => unknown): ConfigError {
  try {
    fn()
  } catch (err) {
    if (err instanceof ConfigError) return err
    throw err
  }
  assert.fail('expected a ConfigError')
}

void test('defaults', () => {
  const { command, config, configFile } = loadConfig({ argv: ['start'], env: {} })
  assert.equal(command, 'start')
  assert.equal(configFile, null)
  assert.deepEqual(config, {
    mqtt: {
      port: 1883,
      host: '0.0.0.0',
      receiveMaximum: 65535,
      topicAliasMaximum: 10,
      maxKeepAliveSeconds: 0,
      maximumPacketSize: 1_048_576,
    },
    ws: { port: null },
    http: { port: 8080 },
    grpc: { port: null },
    cluster: { etcd: [], advertise: '127.0.0.1', routing: 'proxy', leaseTtlSeconds: 5, prefix: '/spool' },
    dataDir: './data',
    nodeId: hostname(),
    log: { level: 'info' },
    shutdown: { timeoutMs: 10_000 },
    queues: { defaults: DEFAULT_QUEUE_SETTINGS, declared: {}, implicitGroups: true },
    auth: { allowAnonymous: 'loopback', users: [], anonymousAcl: null },
    admin: { token: null },
    metrics: { maxQueueLabels: 1000 },
  })
})

void test('precedence: CLI > env > file > defaults, per setting', () => {
  const { config, configFile } = loadConfig({
    argv: ['start', '--config', 'a.json', '--mqtt-port', '3000'],
    env: { SPOOL_MQTT_PORT: '2000', SPOOL_HTTP_PORT: '2001', SPOOL_WS_PORT: '2002' },
    readFile: files({
      'a.json': { mqtt: { port: 1000, host: '127.0.0.1' }, http: { port: 1001 }, nodeId: 'from-file' },
    }),
  })
  assert.equal(configFile, 'a.json')
  assert.equal(config.mqtt.port, 3000) // CLI
  assert.equal(config.http.port, 2001) // env over file
  assert.equal(config.ws.port, 2002) // env over default
  assert.equal(config.mqtt.host, '127.0.0.1') // file
  assert.equal(config.nodeId, 'from-file')
  assert.equal(config.log.level, 'info') // default
})

void test('every env var and flag maps to its setting', () => {
  const env = {
    SPOOL_MQTT_PORT: '1',
    SPOOL_HOST: '::1',
    SPOOL_WS_PORT: '2',
    SPOOL_HTTP_PORT: '3',
    SPOOL_GRPC_PORT: '4',
    SPOOL_DATA_DIR: '/d',
    SPOOL_NODE_ID: 'n1',
    SPOOL_LOG_LEVEL: 'debug',
    SPOOL_IMPLICIT_GROUPS: 'false',
  }
  const fromEnv = loadConfig({ argv: ['start'], env }).config
  const fromCli = loadConfig({
    argv: [
      'start',
      '--mqtt-port=1',
      '--host=::1',
      '--ws-port=2',
      '--http-port=3',
      '--grpc-port=4',
      '--data-dir=/d',
      '--node-id=n1',
      '--log-level=debug',
      '--implicit-groups=false',
    ],
    env: {},
  }).config
  for (const config of [fromEnv, fromCli]) {
    assert.equal(config.mqtt.port, 1)
    assert.equal(config.mqtt.host, '::1')
    assert.equal(config.ws.port, 2)
    assert.equal(config.http.port, 3)
    assert.equal(config.grpc.port, 4)
    assert.equal(config.dataDir, '/d')
    assert.equal(config.nodeId, 'n1')
    assert.equal(config.log.level, 'debug')
    assert.equal(config.queues.implicitGroups, false)
  }
})

void test('SPOOL_CONFIG names the file; --config wins over it', () => {
  const readFile = files({ 'env.json': { nodeId: 'env-file' }, 'cli.json': { nodeId: 'cli-file' } })
  assert.equal(
    loadConfig({ argv: ['start'], env: { SPOOL_CONFIG: 'env.json' }, readFile }).config.nodeId,
    'env-file',
  )
  assert.equal(
    loadConfig({ argv: ['start', '--config', 'cli.json'], env: { SPOOL_CONFIG: 'env.json' }, readFile })
      .config.nodeId,
    'cli-file',
  )
})

void test('queue settings: defaults and declared queues are laid over DEFAULT_QUEUE_SETTINGS', () => {
  const config = validateConfig({
    queues: {
      defaults: { partitions: 4, retry: { maxDeliveries: 3 } },
      declared: {
        'tasks/images': { ordering: 'none', durability: { sync: true }, retry: { initialDelayMs: 100 } },
        empty: {},
      },
    },
  })
  assert.equal(config.queues.defaults.partitions, 4)
  assert.equal(config.queues.defaults.retry.maxDeliveries, 3)
  assert.equal(config.queues.defaults.retry.factor, DEFAULT_QUEUE_SETTINGS.retry.factor)
  const images = config.queues.declared['tasks/images']
  assert.ok(images)
  assert.equal(images.partitions, 4) // from queues.defaults
  assert.equal(images.ordering, 'none')
  assert.equal(images.durability.sync, true)
  assert.equal(images.retry.initialDelayMs, 100)
  assert.equal(images.retry.maxDeliveries, 3)
  assert.deepEqual(config.queues.declared.empty, config.queues.defaults)
  // The shared default object is never mutated.
  assert.equal(DEFAULT_QUEUE_SETTINGS.partitions, 10)
})

void test('errors name the field and the bad value', () => {
  const cases: Array<[Record<string, unknown>, string]> = [
    [{ mqtt: { port: 'abc' } }, 'mqtt.port must be an integer 0-65535, got "abc"'],
    [{ mqtt: { port: 70000 } }, 'mqtt.port must be an integer 0-65535, got 70000'],
    [{ http: { port: 1.5 } }, 'http.port must be an integer 0-65535, got 1.5'],
    [{ ws: { port: -1 } }, 'ws.port must be an integer 0-65535, got -1'],
    [{ grpc: { port: 'x' } }, 'grpc.port must be an integer 0-65535, got "x"'],
    [{ grpc: { host: 'a' } }, 'grpc.host is not a known setting, got "a"'],
    [{ mqtt: { host: '' } }, 'mqtt.host must be a non-empty string, got ""'],
    [{ nodeId: 'a b' }, 'nodeId must be 1-64 characters of A-Z a-z 0-9 . _ -, got "a b"'],
    [
      { log: { level: 'loud' } },
      'log.level must be one of fatal, error, warn, info, debug, trace, silent, got "loud"',
    ],
    [{ mqtt: { prot: 1 } }, 'mqtt.prot is not a known setting, got 1'],
    [
      { queues: { defaults: { partitions: 0 } } },
      'queues.defaults.partitions must be an integer 1-4096, got 0',
    ],
    [
      { queues: { defaults: { ordering: 'random' } } },
      'queues.defaults.ordering must be one of partition, strict, none, got "random"',
    ],
    [
      { queues: { declared: { q: { durability: { sync: 'yes' } } } } },
      'queues.declared.q.durability.sync must be true or false, got "yes"',
    ],
    [
      { queues: { declared: { 'a/#': {} } } },
      'queues.declared.a/# must be a valid queue name (queue name "a/#" contains a wildcard), got "a/#"',
    ],
    [
      { queues: { declared: { [Array.from({ length: 33 }, (_, i) => `l${i}`).join('/')]: {} } } },
      `queues.declared.${Array.from({ length: 33 }, (_, i) => `l${i}`).join('/')} must be a valid queue name (queue name has 33 levels, at most 32 allowed), got "${Array.from({ length: 33 }, (_, i) => `l${i}`).join('/')}"`,
    ],
    [
      { queues: { declared: { q: { groupExpiryMs: -1 } } } },
      'queues.declared.q.groupExpiryMs must be an integer >= 0, got -1',
    ],
    [
      { queues: { implicitGroups: 'sometimes' } },
      'queues.implicitGroups must be true or false, got "sometimes"',
    ],
    [
      { queues: { declared: { q: { retry: { maxDeliveries: 0 } } } } },
      'queues.declared.q.retry.maxDeliveries must be an integer >= 1, got 0',
    ],
    [
      { queues: { defaults: { maxInflightPerConsumer: 70000 } } },
      'queues.defaults.maxInflightPerConsumer must be an integer 1-65535, got 70000',
    ],
  ]
  for (const [raw, message] of cases) {
    assert.equal(errorOf(() => validateConfig(raw)).message, message)
  }
  const err = errorOf(() => validateConfig({ mqtt: { port: 'abc' } }))
  assert.equal(err.field, 'mqtt.port')
  assert.equal(err.value, 'abc')
  assert.equal(err.code, 'CONFIG_INVALID')
})

void test('config file problems are ConfigErrors naming the source', () => {
  assert.match(
    errorOf(() => loadConfig({ argv: ['start', '--config', 'missing.json'], env: {}, readFile: files({}) }))
      .message,
    /^--config must name a readable file \(ENOENT\), got "missing.json"$/,
  )
  assert.match(
    errorOf(() =>
      loadConfig({ argv: ['start'], env: { SPOOL_CONFIG: 'bad.json' }, readFile: () => '{ nope' }),
    ).message,
    /^SPOOL_CONFIG must hold valid JSON/,
  )
  assert.match(
    errorOf(() => loadConfig({ argv: ['start', '--config', 'a.json'], env: {}, readFile: () => '[]' }))
      .message,
    /must hold a JSON object/,
  )
})

void test('command line errors are UsageErrors', () => {
  assert.throws(() => loadConfig({ argv: [], env: {} }), UsageError)
  assert.throws(() => loadConfig({ argv: ['start', '--nope', '1'], env: {} }), UsageError)
  assert.throws(() => loadConfig({ argv: ['start', 'extra'], env: {} }), UsageError)
})

void test('mqtt.* limits: validated with field-named errors', () => {
  const config = validateConfig({
    mqtt: { receiveMaximum: '20', maximumPacketSize: 4096, topicAliasMaximum: 0 },
  })
  assert.equal(config.mqtt.receiveMaximum, 20)
  assert.equal(config.mqtt.maximumPacketSize, 4096)
  assert.equal(config.mqtt.topicAliasMaximum, 0)
  assert.throws(
    () => validateConfig({ mqtt: { receiveMaximum: 0 } }),
    /mqtt\.receiveMaximum must be an integer 1-65535/,
  )
  assert.throws(() => validateConfig({ mqtt: { maximumPacketSize: 10 } }), /mqtt\.maximumPacketSize/)
  assert.equal(validateConfig({}).mqtt.maximumPacketSize, 1_048_576, '1 MiB by default')
  assert.equal(validateConfig({ mqtt: { maximumPacketSize: '0' } }).mqtt.maximumPacketSize, 0, '0 = no limit')
  assert.throws(() => validateConfig({ mqtt: { maxKeepAliveSeconds: -1 } }), /mqtt\.maxKeepAliveSeconds/)
})

void test('admin.token: from the file or SPOOL_ADMIN_TOKEN (no flag: argv is visible in ps); short tokens refused unechoed', () => {
  const token = 'a'.repeat(32)
  assert.equal(loadConfig({ argv: ['start'], env: { SPOOL_ADMIN_TOKEN: token } }).config.admin.token, token)
  assert.equal(validateConfig({ admin: { token } }).admin.token, token)
  assert.equal(validateConfig({ admin: {} }).admin.token, null)
  assert.throws(() => loadConfig({ argv: ['start', '--admin-token', token], env: {} }), UsageError)
  const short = errorOf(() => validateConfig({ admin: { token: 'secret' } }))
  assert.equal(short.field, 'admin.token')
  assert.ok(!short.message.includes('secret'), short.message)
  assert.equal(errorOf(() => validateConfig({ admin: { tokn: token } })).field, 'admin.tokn')
})

void test('metrics.maxQueueLabels: a positive integer', () => {
  assert.equal(validateConfig({ metrics: { maxQueueLabels: '50' } }).metrics.maxQueueLabels, 50)
  assert.equal(
    errorOf(() => validateConfig({ metrics: { maxQueueLabels: 0 } })).field,
    'metrics.maxQueueLabels',
  )
})
