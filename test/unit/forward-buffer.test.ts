import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { test, type TestContext } from 'node:test'
import { ForwardBuffer, type BufferedPublish } from '../../src/storage/forward/forward-buffer.js'
import { within } from '../helpers/wait.js'

/** A fresh temp dir, removed after the test (after the buffers in it are closed: t.after runs LIFO). */
async function tempDir(t: TestContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'spool-forward-buffer-'))
  t.after(() => rm(dir, { recursive: true, force: true }))
  return dir
}

async function openBuffer(t: TestContext, dir: string): Promise<ForwardBuffer> {
  const buffer = new ForwardBuffer(join(dir, 'forward'))
  t.after(() => buffer.close())
  await buffer.open()
  return buffer
}

/** A plain Uint8Array (not a Buffer), as a decoded entry has, so deepEqual compares bytes only. */
const bytes = (text: string): Uint8Array => new Uint8Array(Buffer.from(text))

function publish(
  queue: string,
  partition: number,
  text: string,
  acceptedAtMs = 1_700_000_000_000,
): BufferedPublish {
  return { queue, partition, payload: bytes(text), properties: {}, acceptedAtMs }
}

const textOf = (payload: Uint8Array) => Buffer.from(payload).toString()

async function texts(buffer: ForwardBuffer, queue: string, partition: number): Promise<string[]> {
  return (await buffer.oldest(queue, partition, 10_000)).map((entry) => textOf(entry.publish.payload))
}

async function seqs(buffer: ForwardBuffer, queue: string, partition: number): Promise<number[]> {
  return (await buffer.oldest(queue, partition, 10_000)).map((entry) => entry.seq)
}

test('FIFO per (queue, partition) with interleaved partitions and queues a, a/b, ab', async (t) => {
  const buffer = await openBuffer(t, await tempDir(t))
  const targets: Array<[string, number]> = [
    ['a', 0],
    ['a/b', 0],
    ['ab', 0],
    ['a', 1],
    ['ab', 7],
  ]
  const expected = new Map<string, string[]>()
  const appends: Array<Promise<void>> = []
  // Several turns, each interleaving every target: order must hold within and across batches.
  for (let round = 0; round < 4; round++) {
    for (let i = 0; i < 25; i++) {
      for (const [queue, partition] of targets) {
        const text = `${queue}|${partition}|${round}-${i}`
        expected.set(`${queue}|${partition}`, [...(expected.get(`${queue}|${partition}`) ?? []), text])
        appends.push(buffer.append(publish(queue, partition, text), { sync: round % 2 === 0 }))
      }
    }
    await new Promise((resolve) => setImmediate(resolve))
  }
  await Promise.all(appends)
  for (const [queue, partition] of targets) {
    assert.deepEqual(await texts(buffer, queue, partition), expected.get(`${queue}|${partition}`))
    assert.deepEqual(
      await seqs(buffer, queue, partition),
      Array.from({ length: 100 }, (_, i) => i + 1),
      `seqs of ${queue}/${partition}`,
    )
    assert.equal(buffer.isEmpty(queue, partition), false)
  }
  // Neighbours in key space that were never written.
  assert.equal(buffer.isEmpty('a', 2), true)
  assert.equal(buffer.isEmpty('a/', 0), true)
  assert.deepEqual(await buffer.oldest('a/', 0, 10), [])
  assert.deepEqual(buffer.pending(), [
    { queue: 'a', partition: 0, count: 100 },
    { queue: 'a', partition: 1, count: 100 },
    { queue: 'a/b', partition: 0, count: 100 },
    { queue: 'ab', partition: 0, count: 100 },
    { queue: 'ab', partition: 7, count: 100 },
  ])
  assert.equal(buffer.size(), 500)
  const firstThree = await buffer.oldest('a/b', 0, 3)
  assert.deepEqual(
    firstThree.map((entry) => entry.seq),
    [1, 2, 3],
  )
})

test('every property round-trips, also after a reopen', async (t) => {
  const dir = await tempDir(t)
  const buffer = await openBuffer(t, dir)
  const big = new Uint8Array(64 * 1024)
  for (let i = 0; i < big.length; i++) big[i] = (i * 31 + 7) % 256
  const publishes: BufferedPublish[] = [
    {
      queue: 'orders/eu',
      partition: 3,
      payload: bytes('{"id":1}'),
      properties: {
        contentType: 'application/json',
        responseTopic: 'replies/ü/日本',
        correlationData: new Uint8Array([0, 1, 2, 255, 0]),
        payloadFormatIndicator: true,
        userProperties: [
          ['k', 'v1'],
          ['other', ''],
          ['k', 'v2'],
          ['', 'empty key'],
          ['k', 'v1'],
        ],
      },
      acceptedAtMs: 1_700_000_000_123,
      messageExpirySeconds: 3600,
    },
    { queue: 'orders/eu', partition: 3, payload: new Uint8Array(0), properties: {}, acceptedAtMs: 0 },
    {
      queue: 'orders/eu',
      partition: 3,
      payload: big,
      properties: { payloadFormatIndicator: false, userProperties: [], correlationData: new Uint8Array(0) },
      acceptedAtMs: Number.MAX_SAFE_INTEGER,
      messageExpirySeconds: 0,
    },
    {
      queue: 'ünïcode/キュー',
      partition: 0xffff_ffff,
      payload: bytes('x'),
      properties: { contentType: '' },
      acceptedAtMs: 42,
      messageExpirySeconds: 4_294_967_295,
    },
  ]
  await Promise.all(publishes.map((p) => buffer.append(p, { sync: true })))
  const check = async (from: ForwardBuffer) => {
    const first = await from.oldest('orders/eu', 3, 10)
    assert.deepEqual(
      first.map((entry) => entry.publish),
      publishes.slice(0, 3),
    )
    assert.deepEqual(
      first.map((entry) => entry.seq),
      [1, 2, 3],
    )
    const unicode = await from.oldest('ünïcode/キュー', 0xffff_ffff, 10)
    assert.deepEqual(unicode, [{ seq: 1, publish: publishes[3] }])
  }
  await check(buffer)
  await buffer.close()
  const again = await openBuffer(t, dir)
  await check(again)
})

test('counters survive close and reopen; seqs keep growing and are never reused', async (t) => {
  const dir = await tempDir(t)
  const first = await openBuffer(t, dir)
  const appends: Array<Promise<void>> = []
  for (let i = 1; i <= 5; i++) appends.push(first.append(publish('q', 0, `q0-${i}`), { sync: false }))
  for (let i = 1; i <= 3; i++) appends.push(first.append(publish('q', 1, `q1-${i}`), { sync: false }))
  for (let i = 1; i <= 2; i++) appends.push(first.append(publish('r/s', 4, `r-${i}`), { sync: true }))
  await Promise.all(appends)
  await first.remove('q', 1, 3) // drained to empty: its last seq must still be remembered
  await first.remove('q', 0, 2)
  const pendingBefore = first.pending()
  assert.deepEqual(pendingBefore, [
    { queue: 'q', partition: 0, count: 3 },
    { queue: 'r/s', partition: 4, count: 2 },
  ])
  assert.equal(first.size(), 5)
  await first.close()
  await first.close() // idempotent

  const second = await openBuffer(t, dir)
  assert.deepEqual(second.pending(), pendingBefore)
  assert.equal(second.size(), 5)
  assert.equal(second.isEmpty('q', 0), false)
  assert.equal(second.isEmpty('q', 1), true)
  assert.equal(second.isEmpty('r/s', 4), false)
  assert.deepEqual(await seqs(second, 'q', 0), [3, 4, 5])
  await second.append(publish('q', 0, 'q0-6'), { sync: true })
  await second.append(publish('q', 1, 'q1-4'), { sync: true })
  assert.deepEqual(await seqs(second, 'q', 0), [3, 4, 5, 6])
  assert.deepEqual(await seqs(second, 'q', 1), [4], 'seq 1..3 of the drained partition are not reused')
  assert.deepEqual(await texts(second, 'q', 1), ['q1-4'])
  // Drain everything, twice over a restart: a partition with no entries still continues its seqs.
  await second.remove('q', 0, 6)
  await second.remove('q', 1, 4)
  await second.remove('r/s', 4, 2)
  assert.equal(second.size(), 0)
  assert.deepEqual(second.pending(), [])
  await second.close()

  const third = await openBuffer(t, dir)
  assert.equal(third.size(), 0)
  assert.deepEqual(third.pending(), [])
  await third.append(publish('q', 0, 'q0-7'), { sync: true })
  await third.append(publish('r/s', 4, 'r-3'), { sync: true })
  assert.deepEqual(await seqs(third, 'q', 0), [7])
  assert.deepEqual(await seqs(third, 'r/s', 4), [3])
  assert.equal(third.size(), 2)
})

test('remove deletes through a seq; the rest is there after a reopen', async (t) => {
  const dir = await tempDir(t)
  const first = await openBuffer(t, dir)
  await Promise.all(
    Array.from({ length: 10 }, (_, i) => first.append(publish('jobs', 2, `m${i + 1}`), { sync: false })),
  )
  await first.append(publish('jobs', 3, 'other'), { sync: false })
  await first.remove('jobs', 2, 4)
  assert.deepEqual(await texts(first, 'jobs', 2), ['m5', 'm6', 'm7', 'm8', 'm9', 'm10'])
  await first.remove('jobs', 2, 2) // already gone: nothing changes
  await first.remove('jobs', 9, 100) // unknown partition: nothing to do
  await first.remove('nothing', 0, 1)
  assert.equal(first.size(), 7)
  const oldestTwo = await first.oldest('jobs', 2, 2)
  assert.deepEqual(
    oldestTwo.map((entry) => entry.seq),
    [5, 6],
  )
  await first.close()

  const second = await openBuffer(t, dir)
  assert.deepEqual(await texts(second, 'jobs', 2), ['m5', 'm6', 'm7', 'm8', 'm9', 'm10'])
  assert.deepEqual(await texts(second, 'jobs', 3), ['other'])
  assert.equal(second.size(), 7)
  await second.remove('jobs', 2, Number.MAX_SAFE_INTEGER) // beyond the last: removes all
  assert.equal(second.isEmpty('jobs', 2), true)
  assert.equal(second.size(), 1)
  await second.close()

  const third = await openBuffer(t, dir)
  assert.equal(third.isEmpty('jobs', 2), true)
  assert.deepEqual(third.pending(), [{ queue: 'jobs', partition: 3, count: 1 }])
})

test('appends of one turn share one batch: present at once, read only once written, resolved together', async (t) => {
  const buffer = await openBuffer(t, await tempDir(t))
  let resolved = 0
  let resolvedWhenFirstBatchDone: number | undefined
  const appends: Array<Promise<void>> = []
  for (let i = 0; i < 1000; i++) {
    const append = buffer.append(publish('burst', i % 2, `m${i}`), { sync: i === 999 })
    appends.push(
      append.then(() => {
        // After the first resolution, let the event loop turn: a second batch could not have been
        // written and acknowledged before that, so everything resolved by then came from one batch.
        if (resolved++ === 0) setImmediate(() => (resolvedWhenFirstBatchDone = resolved))
      }),
    )
  }
  // Counted as present before they are written...
  assert.equal(buffer.size(), 1000)
  assert.equal(buffer.isEmpty('burst', 0), false)
  assert.deepEqual(buffer.pending(), [
    { queue: 'burst', partition: 0, count: 500 },
    { queue: 'burst', partition: 1, count: 500 },
  ])
  // ...but not read back before their batch has landed.
  assert.deepEqual(await buffer.oldest('burst', 0, 10), [])
  await within(Promise.all(appends), 10_000, '1000 appends')
  await within(new Promise<void>((resolve) => setImmediate(resolve)), 1000, 'one more turn of the event loop')
  assert.equal(resolvedWhenFirstBatchDone, 1000, 'all 1000 appends resolved by the first batch write')
  assert.equal((await buffer.oldest('burst', 1, 1000)).length, 500)
  assert.deepEqual(
    await texts(buffer, 'burst', 0),
    Array.from({ length: 500 }, (_, i) => `m${i * 2}`),
  )
})

test('close waits for pending appends and removes, then refuses new ones', async (t) => {
  const dir = await tempDir(t)
  const first = await openBuffer(t, dir)
  await first.append(publish('c', 0, 'old'), { sync: false })
  let written = 0
  const appends = Array.from({ length: 50 }, (_, i) =>
    first.append(publish('c', 0, `m${i}`), { sync: false }).then(() => written++),
  )
  const removed = first.remove('c', 0, 1)
  await first.close()
  assert.equal(written, 50, 'every append resolved before close did')
  await removed
  await Promise.all(appends)
  await assert.rejects(first.append(publish('c', 0, 'late'), { sync: false }), { code: 'NOT_OPEN' })
  await assert.rejects(first.remove('c', 0, 10), { code: 'NOT_OPEN' })
  await assert.rejects(first.oldest('c', 0, 10), { code: 'NOT_OPEN' })

  const second = await openBuffer(t, dir)
  assert.deepEqual(
    await texts(second, 'c', 0),
    Array.from({ length: 50 }, (_, i) => `m${i}`),
  )
  assert.deepEqual((await seqs(second, 'c', 0))[0], 2)
})

test('bad input is refused without touching the buffer', async (t) => {
  const buffer = await openBuffer(t, await tempDir(t))
  await assert.rejects(buffer.append(publish('', 0, 'x'), { sync: false }), { code: 'INVALID_INPUT' })
  await assert.rejects(buffer.append(publish('a\u0000b', 0, 'x'), { sync: false }), { code: 'INVALID_INPUT' })
  await assert.rejects(buffer.append(publish('a', -1, 'x'), { sync: false }), { code: 'INVALID_INPUT' })
  await assert.rejects(buffer.append(publish('a', 1.5, 'x'), { sync: false }), { code: 'INVALID_INPUT' })
  await assert.rejects(buffer.append(publish('a', 2 ** 32, 'x'), { sync: false }), { code: 'INVALID_INPUT' })
  await assert.rejects(buffer.remove('a', 0, Number.NaN), { code: 'INVALID_INPUT' })
  assert.equal(buffer.size(), 0)
  assert.deepEqual(buffer.pending(), [])
})

test('a killed process loses nothing whose append had resolved (sync: true)', async (t) => {
  const dir = await tempDir(t)
  const location = join(dir, 'forward')
  const moduleUrl = new URL('../../src/storage/forward/forward-buffer.js', import.meta.url).href
  // The child appends in bursts and prints the last seq of each burst once its appends resolved.
  const script = `
    import { ForwardBuffer } from ${JSON.stringify(moduleUrl)}
    const buffer = new ForwardBuffer(${JSON.stringify(location)})
    await buffer.open()
    for (let burst = 0; burst < 100000; burst++) {
      const appends = []
      for (let i = 0; i < 20; i++) {
        const n = burst * 20 + i + 1
        appends.push(buffer.append({ queue: 'crash/q', partition: 1, payload: Buffer.from('m' + n),
          properties: { userProperties: [['n', String(n)]] }, acceptedAtMs: n }, { sync: true }))
      }
      await Promise.all(appends)
      process.stdout.write((burst + 1) * 20 + '\\n')
    }
  `
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  const exited = once(child, 'exit')
  t.after(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
    await exited
  })
  let stderr = ''
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()))
  let acknowledged = 0
  const lines = createInterface({ input: child.stdout })
  await within(
    new Promise<void>((resolve, reject) => {
      lines.on('line', (line) => {
        acknowledged = Number(line)
        if (acknowledged >= 400) resolve()
      })
      child.once('exit', (code) => reject(new Error(`child exited early (${code}): ${stderr}`)))
    }),
    20_000,
    '400 acknowledged appends in the child',
  )
  child.kill('SIGKILL')
  await within(exited, 5000, 'child exit after SIGKILL')
  lines.close()
  assert.ok(acknowledged >= 400)

  const buffer = await openBuffer(t, dir)
  const entries = await buffer.oldest('crash/q', 1, 1_000_000)
  assert.ok(entries.length >= acknowledged, `${entries.length} entries, ${acknowledged} acknowledged`)
  entries.forEach((entry, i) => {
    assert.equal(entry.seq, i + 1)
    assert.equal(textOf(entry.publish.payload), `m${i + 1}`)
    assert.deepEqual(entry.publish.properties.userProperties, [['n', String(i + 1)]])
  })
  assert.equal(buffer.size(), entries.length)
  await buffer.append(publish('crash/q', 1, 'after'), { sync: true })
  assert.equal((await buffer.oldest('crash/q', 1, 1_000_000)).at(-1)?.seq, entries.length + 1)
})
