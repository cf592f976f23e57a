// The queue settings' docs follow the one field table (src/queue/settings.ts): the tables in
// docs/configuration.md and docs/queue-protocol.md, the TSDoc of QueueSettings and the admin proto
// (docs/openapi.yaml: test/unit/admin-openapi.test.ts). A setting added, renamed or re-limited in the
// table fails here until the docs say the same.
import assert from 'node:assert/strict'
import { readFile } from 'node:fs/promises'
import { test } from 'node:test'

import { QUEUE_SETTING_FIELDS, type QueueSettingField } from '../../src/queue/settings.js'

const ROOT = new URL('../../../', import.meta.url)

/** The rows of the first markdown table after `heading` whose first cell is a backticked key. */
async function tableRows(file: string, heading: string): Promise<string[][]> {
  const text = await readFile(new URL(file, ROOT), 'utf8')
  const from = text.indexOf(`\n${heading}\n`)
  assert.ok(from >= 0, `${file} has no "${heading}"`)
  const lines = text.slice(from).split('\n')
  const start = lines.findIndex((line) => line.startsWith('| `'))
  const rows: string[][] = []
  for (const line of lines.slice(start)) {
    if (!line.startsWith('|')) break
    rows.push(
      line
        .slice(1, -1)
        .split(' | ')
        .map((cell) => cell.trim()),
    )
  }
  return rows
}

/** What docs/configuration.md's "Valid values" cell starts with for `field`. */
function documentedRange(field: QueueSettingField): string {
  switch (field.kind) {
    case 'integer':
    case 'number':
      return field.max === undefined
        ? `${field.kind} >= ${field.min}`
        : `${field.kind} ${field.min}-${field.max}`
    case 'boolean':
      return '`true` or `false`'
    case 'enum':
      return `one of ${field.values.map((value) => `\`${value}\``).join(', ')}`
  }
}

void test('docs/configuration.md lists every queue setting with the table default and limits', async () => {
  const rows = await tableRows('docs/configuration.md', '## Queue settings')
  assert.deepEqual(
    rows.map(([key]) => key),
    QUEUE_SETTING_FIELDS.map((field) => `\`${field.path}\``),
  )
  for (const [i, field] of QUEUE_SETTING_FIELDS.entries()) {
    const [, defaultCell = '', valid = ''] = rows[i] ?? []
    assert.match(defaultCell, new RegExp(`^\`${String(field.default)}\`( \\(.*\\))?$`), field.path)
    const range = documentedRange(field)
    assert.ok(
      valid === range || valid.startsWith(`${range};`),
      `${field.path}: "${valid}" should start with "${range}"`,
    )
  }
})

void test('docs/queue-protocol.md lists every queue setting with the table default', async () => {
  const rows = await tableRows('docs/queue-protocol.md', '## Settings')
  assert.deepEqual(
    rows.map(([key]) => key),
    QUEUE_SETTING_FIELDS.map((field) => `\`${field.path}\``),
  )
  for (const [i, field] of QUEUE_SETTING_FIELDS.entries()) {
    const defaultCell = rows[i]?.[1] ?? ''
    assert.equal(defaultCell.replaceAll('`', ''), String(field.default), field.path)
  }
})

void test('every QueueSettings field carries the table doc as its TSDoc', async () => {
  const source = await readFile(new URL('src/queue/types.ts', ROOT), 'utf8')
  const body = source.slice(source.indexOf('export interface QueueSettings {'))
  const docs = new Map<string, string>()
  let group: string | undefined
  let pending: string | undefined
  const comment = /\/\*\*([\s\S]*?)\*\/\s*$/
  let buffer = ''
  for (const line of body.split('\n').slice(1)) {
    const trimmed = line.trim()
    if (buffer !== '' || trimmed.startsWith('/**')) {
      buffer += `${trimmed}\n`
      const match = comment.exec(buffer)
      if (match) {
        pending = (match[1] ?? '')
          .replace(/^\s*\*\s?/gm, ' ')
          .replace(/\s+/g, ' ')
          .trim()
        buffer = ''
      }
      continue
    }
    const open = /^(\w+): \{$/.exec(trimmed)
    if (open) {
      group = open[1]
      pending = undefined
      continue
    }
    if (trimmed === '}') {
      if (group === undefined) break
      group = undefined
      continue
    }
    const member = /^(\w+): /.exec(trimmed)
    if (member) {
      const path = group === undefined ? member[1] : `${group}.${member[1]}`
      if (pending !== undefined && path !== undefined) docs.set(path, pending)
      pending = undefined
    }
  }
  for (const field of QUEUE_SETTING_FIELDS) {
    assert.equal(docs.get(field.path), field.doc, `TSDoc of QueueSettings.${field.path}`)
  }
  assert.equal(docs.size, QUEUE_SETTING_FIELDS.length)
})

void test('the admin proto carries settings as JSON (the table, through the same parser), never as fields of its own', async () => {
  const proto = await readFile(new URL('proto/spool/admin/v1/admin.proto', ROOT), 'utf8')
  for (const message of ['CreateQueueRequest', 'UpdateQueueRequest', 'Queue']) {
    const start = proto.indexOf(`\nmessage ${message} {`)
    assert.ok(start >= 0, message)
    const body = proto.slice(start, proto.indexOf('\n}', start))
    assert.match(body, /string settings_json = \d+;/, message)
    for (const field of QUEUE_SETTING_FIELDS) {
      const leaf = field.path.split('.').pop() ?? field.path
      const snake = leaf.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`)
      assert.doesNotMatch(body, new RegExp(`\\b${snake}\\s*=\\s*\\d+;`), `${message}.${snake}`)
    }
  }
})
