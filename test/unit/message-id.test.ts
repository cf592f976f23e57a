// parseMessageId is parsed by hand (it runs on every settle); it must accept exactly what the
// `<partition>-<seq>` grammar, 1-6 and 1-15 ASCII digits, accepts.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { parseMessageId } from '../../src/queue/message-id.js'

const grammar = /^(\d{1,6})-(\d{1,15})$/

function expected(id: string): { partition: number; seq: number } | undefined {
  const match = grammar.exec(id)
  return match === null ? undefined : { partition: Number(match[1]), seq: Number(match[2]) }
}

void test('message ids: the same answer as the grammar for edge cases and random strings', () => {
  const cases = [
    '0-1',
    '3-42',
    '000007-000000000000001',
    '999999-999999999999999',
    '1000000-1',
    '1-1000000000000000',
    '',
    '-',
    '-1',
    '1-',
    '1--1',
    '1-1-1',
    ' 1-1',
    '1-1 ',
    '1-1\n',
    '+1-1',
    '1-1e3',
    '1.0-1',
    '١-1',
    'a-1',
    '1-a',
  ]
  for (const id of cases) assert.deepEqual(parseMessageId(id), expected(id), JSON.stringify(id))
  const alphabet = '0123456789-/: a'
  let seed = 7
  const next = () => (seed = (seed * 1103515245 + 12345) % 2147483648)
  for (let n = 0; n < 20000; n++) {
    let id = ''
    const length = next() % 24
    for (let i = 0; i < length; i++) id += alphabet[next() % (next() % 4 === 0 ? alphabet.length : 11)]
    assert.deepEqual(parseMessageId(id), expected(id), JSON.stringify(id))
  }
})
