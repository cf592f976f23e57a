// The one queue-settings table (src/queue/settings.ts): config, the admin API and the core accept
// and refuse the same values, and a queue config accepts can always be changed through the admin API.
import assert from 'node:assert/strict'
import { test } from 'node:test'

import { AdminService } from '../../src/admin/service.js'
import { ConfigError, validateConfig } from '../../src/config/index.js'
import { AdminError } from '../../src/admin/errors.js'
import { QueueManager } from '../../src/queue/manager.js'
import { MAX_PARTITIONS as MESSAGE_ID_MAX_PARTITIONS } from '../../src/queue/message-id.js'
import {
  DEFAULT_QUEUE_SETTINGS,
  MAX_QUEUE_PARTITIONS,
  mergeQueueSettings,
  QUEUE_SETTING_FIELDS,
  settingsProblem,
  type QueueSettingField,
} from '../../src/queue/settings.js'
import type { QueueSettings } from '../../src/queue/types.js'
import { MAX_U32 } from '../../src/storage/level/keys.js'
import { MemoryQueueStore } from '../../src/storage/memory-store.js'
import { ManualClock } from '../helpers/manual-clock.js'
import { FakeConsumer } from '../helpers/recording-consumer.js'

type Tree = Record<string, unknown>

/** `{ a: { b: value } }` for path `a.b`. */
function tree(path: string, value: unknown): Tree {
  const [head, leaf] = path.split('.') as [string, string | undefined]
  return leaf === undefined ? { [head]: value } : { [head]: { [leaf]: value } }
}

function withValue(path: string, value: unknown): QueueSettings {
  return mergeQueueSettings(DEFAULT_QUEUE_SETTINGS, tree(path, value))
}

/** Values at and just past a field's limits, and values of the wrong kind. */
function probes(field: QueueSettingField): Array<{ value: unknown; ok: boolean }> {
  switch (field.kind) {
    case 'integer':
    case 'number': {
      const upper = field.max ?? (field.kind === 'integer' ? Number.MAX_SAFE_INTEGER : 1e9)
      return [
        { value: field.min, ok: true },
        { value: field.min - 1, ok: false },
        { value: upper, ok: true },
        ...(field.max === undefined ? [] : [{ value: field.max + 1, ok: false }]),
        { value: field.min + 0.5, ok: field.kind === 'number' },
        { value: Number.NaN, ok: false },
        { value: true, ok: false },
        { value: null, ok: false },
      ]
    }
    case 'boolean':
      return [
        { value: true, ok: true },
        { value: false, ok: true },
        { value: 1, ok: false },
        { value: 'yes', ok: false },
      ]
    case 'enum':
      return [
        ...field.values.map((value) => ({ value, ok: true })),
        { value: 'random', ok: false },
        { value: 1, ok: false },
      ]
  }
}

function configProblem(path: string, value: unknown): string | undefined {
  try {
    validateConfig({ queues: { declared: { q: tree(path, value) } } })
    return undefined
  } catch (err) {
    if (err instanceof ConfigError) return err.message
    throw err
  }
}

async function openManager(config: ReturnType<typeof validateConfig>) {
  const manager = new QueueManager({
    store: new MemoryQueueStore(),
    clock: new ManualClock(),
    defaults: config.queues.defaults,
    declared: config.queues.declared,
  })
  await manager.open()
  return manager
}

void test('config, the admin API and the core accept and refuse the same values of every setting', async (t) => {
  const manager = await openManager(validateConfig({}))
  t.after(() => manager.close())
  const admin = new AdminService(manager.admin, 'n')
  let n = 0
  for (const field of QUEUE_SETTING_FIELDS) {
    for (const { value, ok } of probes(field)) {
      const what = `${field.path} = ${String(value)}`
      const fromConfig = configProblem(field.path, value)
      const fromCore = settingsProblem(withValue(field.path, value))
      assert.equal(fromConfig === undefined, ok, `config: ${what}: ${fromConfig}`)
      assert.equal(fromCore === undefined, ok, `core: ${what}: ${fromCore}`)
      if (!ok) {
        // The same words, the field named from where it came.
        assert.equal(fromConfig, `queues.declared.q.${fromCore}`)
      }
      const created = admin.createQueue({ name: `q${n++}`, settings: tree(field.path, value) })
      if (ok) await created
      else await assert.rejects(created, { code: 'INVALID_SETTINGS', message: `settings.${fromCore}` })
    }
  }
})

void test('the defaults are the table, and valid by it', () => {
  assert.equal(settingsProblem(DEFAULT_QUEUE_SETTINGS), undefined)
  for (const field of QUEUE_SETTING_FIELDS) {
    const [head, leaf] = field.path.split('.') as [keyof QueueSettings, string | undefined]
    const value: unknown =
      leaf === undefined ? DEFAULT_QUEUE_SETTINGS[head] : (DEFAULT_QUEUE_SETTINGS[head] as Tree)[leaf]
    assert.equal(value, field.default, field.path)
  }
  assert.deepEqual(validateConfig({}).queues.defaults, DEFAULT_QUEUE_SETTINGS)
})

void test('one partition limit: config refuses what the core refuses; the id and storage formats carry more', () => {
  assert.equal(MAX_QUEUE_PARTITIONS, 4096)
  assert.equal(
    configProblem('partitions', MAX_QUEUE_PARTITIONS + 1),
    'queues.declared.q.partitions must be an integer 1-4096, got 4097',
  )
  assert.equal(
    settingsProblem(withValue('partitions', 4097)),
    'partitions must be an integer 1-4096, got 4097',
  )
  // 2000 used to pass config and then fail every admin update (review §3.6 item 2).
  assert.equal(configProblem('partitions', 2000), undefined)
  assert.equal(settingsProblem(withValue('partitions', 2000)), undefined)
  // A message id carries partitions 0..MESSAGE_ID_MAX_PARTITIONS-1, storage a u32.
  assert.ok(MAX_QUEUE_PARTITIONS <= MESSAGE_ID_MAX_PARTITIONS)
  assert.ok(MAX_QUEUE_PARTITIONS <= MAX_U32)
})

void test('retry.totalTimeoutMs: 0 is refused by config as by the core (0 would dead-letter every retry)', () => {
  assert.equal(
    configProblem('retry.totalTimeoutMs', 0),
    'queues.declared.q.retry.totalTimeoutMs must be an integer >= 1, got 0',
  )
  assert.equal(
    settingsProblem(withValue('retry.totalTimeoutMs', 0)),
    'retry.totalTimeoutMs must be an integer >= 1, got 0',
  )
})

void test('a queue declared in config, at any limit of the table, can be updated through manager.admin.updateQueue', async (t) => {
  const atMin: Tree = {}
  const atMax: Tree = {}
  for (const field of QUEUE_SETTING_FIELDS) {
    const [head, leaf] = field.path.split('.') as [string, string | undefined]
    const put = (target: Tree, value: unknown) => {
      if (leaf === undefined) target[head] = value
      else target[head] = { ...(target[head] as Tree | undefined), [leaf]: value }
    }
    if (field.kind === 'integer' || field.kind === 'number') {
      put(atMin, field.min)
      put(atMax, field.max ?? (field.kind === 'integer' ? Number.MAX_SAFE_INTEGER : 1e9))
    } else if (field.kind === 'boolean') {
      put(atMin, false)
      put(atMax, true)
    } else if (field.kind === 'enum') {
      put(atMin, field.values[0])
      put(atMax, field.values[field.values.length - 1])
    }
  }
  const config = validateConfig({
    queues: {
      declared: {
        'at-min': atMin,
        'at-max': atMax,
        big: { partitions: 2000 },
        'strict-big': { partitions: MAX_QUEUE_PARTITIONS, ordering: 'strict' },
      },
    },
  })
  const manager = await openManager(config)
  t.after(() => manager.close())
  for (const name of Object.keys(config.queues.declared)) {
    // A SUBSCRIBE creates the queue with its declared settings.
    await manager.subscribe(new FakeConsumer(`c-${name}`), name, 'g')
    const updated = await manager.admin.updateQueue(name, { maxDepth: 10 })
    assert.equal(updated.settings.maxDepth, 10, name)
    const again = await manager.admin.updateQueue(name, { retry: { maxDeliveries: 2 } })
    assert.equal(again.settings.retry.maxDeliveries, 2, name)
  }
  assert.equal(manager.admin.queueStats('at-max').settings.partitions, MAX_QUEUE_PARTITIONS)
  assert.equal(manager.admin.queueStats('big').settings.partitions, 2000)
})

void test('admin errors name the field under settings, as config names it under queues', async (t) => {
  const manager = await openManager(validateConfig({}))
  t.after(() => manager.close())
  const admin = new AdminService(manager.admin, 'n')
  const cases: Array<[unknown, string]> = [
    [{ partitionz: 2 }, 'settings.partitionz is not a known setting, got 2'],
    [{ retry: 3 }, 'settings.retry must be an object, got 3'],
    [{ retry: { factr: 2 } }, 'settings.retry.factr is not a known setting, got 2'],
    [{ retry: { factor: 0.5 } }, 'settings.retry.factor must be a number >= 1, got 0.5'],
    [{ ordering: 'random' }, 'settings.ordering must be one of partition, strict, none, got "random"'],
    [{ durability: { sync: 'yes' } }, 'settings.durability.sync must be true or false, got "yes"'],
  ]
  for (const [settings, message] of cases) {
    await assert.rejects(
      admin.createQueue({ name: 'x', settings }),
      (err: unknown) =>
        err instanceof AdminError && err.code === 'INVALID_SETTINGS' && err.message === message,
      message,
    )
  }
  // Only the fields given are kept: the rest keep following config.
  const view = await admin.createQueue({ name: 'y', settings: { retry: { maxDeliveries: '3' } } })
  assert.equal(view.settings.retry.maxDeliveries, 3)
  assert.equal(view.settings.retry.initialDelayMs, DEFAULT_QUEUE_SETTINGS.retry.initialDelayMs)
})
