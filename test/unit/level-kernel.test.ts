// The LevelDB kernel (src/storage/level/): open + format check, the group committer, the codec.
import assert from 'node:assert/strict'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test, type TestContext } from 'node:test'
import { writeBatch, type LevelOp } from '../../src/storage/level/batch.js'
import { LevelErrorCodes } from '../../src/storage/level/errors.js'
import { AfterFailure, GroupCommitter } from '../../src/storage/level/group-committer.js'
import { isU32, prefixRange, readU64, writeName, writeU64 } from '../../src/storage/level/keys.js'
import { openLevel, type LevelFormat } from '../../src/storage/level/open.js'

async function tempDir(t: TestContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'spool-kernel-'))
  t.after(() => rm(dir, { recursive: true, force: true }))
  return dir
}

const FORMAT: LevelFormat = { name: 'test store', key: Buffer.from([0x76]), version: 1 }

/** A committer whose writes are recorded and settle when the test says so. */
function recorder(afterFailure: AfterFailure) {
  const batches: Array<{ ops: string[]; sync: boolean }> = []
  const pending: Array<{ resolve: () => void; reject: (e: unknown) => void }> = []
  let inFlight = 0
  let maxInFlight = 0
  const commits = new GroupCommitter<string>({
    afterFailure,
    write: (ops, sync) => {
      batches.push({ ops: [...ops], sync })
      inFlight++
      maxInFlight = Math.max(maxInFlight, inFlight)
      return new Promise<void>((resolve, reject) => pending.push({ resolve, reject })).finally(() => {
        inFlight--
      })
    },
  })
  /** Waits until the committer has handed `n` batches to `write`. */
  const batchesWritten = async (n: number) => {
    for (let turn = 0; batches.length < n; turn++) {
      assert.ok(turn < 100, `only ${batches.length} of ${n} batches written`)
      await new Promise((resolve) => setImmediate(resolve))
    }
  }
  return { commits, batches, pending, batchesWritten, maxInFlight: () => maxInFlight }
}

/** Records the order in which promises settle. */
function track(log: string[], name: string, promise: Promise<void>): Promise<void> {
  return promise.then(
    () => void log.push(`${name} ok`),
    (error: unknown) => void log.push(`${name} ${(error as Error).message}`),
  )
}

void test('openLevel creates the directory, writes the format record, and reopens', async (t) => {
  const path = join(await tempDir(t), 'a', 'b')
  const db = await openLevel(path, FORMAT)
  assert.deepEqual(await db.get(FORMAT.key), Buffer.from([1]))
  await db.close()
  const again = await openLevel(path, FORMAT)
  await again.close()
})

void test('openLevel refuses another format version and releases the directory', async (t) => {
  const path = join(await tempDir(t), 'db')
  await (await openLevel(path, FORMAT)).close()
  await assert.rejects(openLevel(path, { ...FORMAT, version: 2 }), {
    code: LevelErrorCodes.formatMismatch,
    message: `unsupported test store format 01 in ${path} (expected 2)`,
  })
  // Closed on failure: the LevelDB lock is free again.
  await (await openLevel(path, FORMAT)).close()
})

void test('openLevel closes the handle when load fails and passes its error on', async (t) => {
  const path = join(await tempDir(t), 'db')
  const boom = new Error('boom')
  await assert.rejects(
    openLevel(path, FORMAT, () => Promise.reject(boom)),
    (error: unknown) => error === boom,
  )
  await (await openLevel(path, FORMAT)).close()
})

void test('openLevel fails with LEVEL_OPEN_FAILED on a locked or impossible directory', async (t) => {
  const dir = await tempDir(t)
  const db = await openLevel(join(dir, 'db'), FORMAT)
  t.after(() => db.close())
  await assert.rejects(openLevel(join(dir, 'db'), FORMAT), (error: unknown) => {
    assert.equal((error as { code?: unknown }).code, LevelErrorCodes.openFailed)
    assert.ok((error as Error).cause instanceof Error)
    return true
  })
  await writeFile(join(dir, 'file'), 'x')
  await assert.rejects(openLevel(join(dir, 'file', 'db'), FORMAT), { code: LevelErrorCodes.openFailed })
})

void test('the adds of one turn are one batch, in call order; the next turn waits for it', async () => {
  const { commits, batches, pending, batchesWritten, maxInFlight } = recorder(AfterFailure.continue)
  const log: string[] = []
  const first = [
    track(log, 'a', commits.add(['a1', 'a2'], false)),
    track(log, 'b', commits.add(['b1'], false)),
  ]
  await batchesWritten(1)
  const second = track(log, 'c', commits.add(['c1'], false))
  await new Promise((resolve) => setImmediate(resolve))
  assert.equal(batches.length, 1, 'a second batch waits while the first is written')
  pending[0]?.resolve()
  await Promise.all(first)
  assert.deepEqual(log, ['a ok', 'b ok'])
  await batchesWritten(2)
  pending[1]?.resolve()
  await second
  assert.deepEqual(
    batches.map((b) => b.ops),
    [['a1', 'a2', 'b1'], ['c1']],
  )
  assert.equal(maxInFlight(), 1)
})

void test('a batch is synced when any of its callers asked for sync', async () => {
  const { commits, batches, pending, batchesWritten } = recorder(AfterFailure.continue)
  const one = Promise.all([commits.add(['x'], false), commits.add(['y'], true), commits.add(['z'], false)])
  await batchesWritten(1)
  pending[0]?.resolve()
  await one
  const two = commits.add(['w'], false)
  await batchesWritten(2)
  pending[1]?.resolve()
  await two
  assert.deepEqual(
    batches.map((b) => b.sync),
    [true, false],
  )
})

void test('onWritten runs for every caller of a batch before any of them resumes', async () => {
  const { commits, pending, batchesWritten } = recorder(AfterFailure.continue)
  const log: string[] = []
  const a = commits.add(['a'], false, () => log.push('written a')).then(() => log.push('resumed a'))
  const b = commits.add(['b'], false, () => log.push('written b')).then(() => log.push('resumed b'))
  await batchesWritten(1)
  pending[0]?.resolve()
  await Promise.all([a, b])
  assert.deepEqual(log, ['written a', 'written b', 'resumed a', 'resumed b'])
})

void test('continue: a failed batch rejects its callers only; the next batch is written', async () => {
  const { commits, batches, pending, batchesWritten } = recorder(AfterFailure.continue)
  const log: string[] = []
  const failed = track(log, 'a', commits.add(['a'], false))
  await batchesWritten(1)
  const next = track(log, 'b', commits.add(['b'], false))
  pending[0]?.reject(new Error('disk full'))
  await failed
  await batchesWritten(2)
  pending[1]?.resolve()
  await next
  assert.deepEqual(log, ['a disk full', 'b ok'])
  assert.equal(commits.failure, undefined)
  assert.equal(batches.length, 2)
})

void test('refuse: a failed batch rejects the batch collected meanwhile and every later add', async () => {
  const { commits, batches, pending, batchesWritten } = recorder(AfterFailure.refuse)
  const log: string[] = []
  const failed = track(log, 'a', commits.add(['a'], false))
  await batchesWritten(1)
  const meanwhile = track(log, 'b', commits.add(['b'], false))
  pending[0]?.reject(new Error('disk full'))
  await Promise.all([failed, meanwhile])
  await track(log, 'c', commits.add(['c'], false))
  assert.deepEqual(log, ['a disk full', 'b disk full', 'c disk full'])
  assert.equal(commits.failure?.message, 'disk full')
  assert.equal(batches.length, 1, 'nothing is written after the failure')
})

void test('close waits for the collected and the running batch, then refuses adds', async () => {
  const { commits, pending, batchesWritten } = recorder(AfterFailure.continue)
  const log: string[] = []
  const running = track(log, 'a', commits.add(['a'], false))
  await batchesWritten(1)
  const collected = track(log, 'b', commits.add(['b'], false))
  const closed = commits.close().then(() => log.push('closed'))
  pending[0]?.resolve()
  await batchesWritten(2)
  assert.ok(!log.includes('closed'))
  pending[1]?.resolve()
  await Promise.all([running, collected, closed])
  assert.deepEqual(log, ['a ok', 'b ok', 'closed'])
  await assert.rejects(commits.add(['c'], false), { code: LevelErrorCodes.closed })
})

void test('the committer and writeBatch on a real LevelDB: one atomic batch; a failure is LEVEL_WRITE_FAILED', async (t) => {
  const db = await openLevel(join(await tempDir(t), 'db'), FORMAT)
  const commits = new GroupCommitter<LevelOp>({
    write: (ops, sync) => writeBatch(db, ops, sync),
    afterFailure: AfterFailure.continue,
  })
  const key = (k: string) => Buffer.from(k)
  await Promise.all([
    commits.add([{ type: 'put', key: key('k1'), value: key('1') }], true),
    commits.add(
      [
        { type: 'put', key: key('k2'), value: key('2') },
        { type: 'del', key: key('k1') },
      ],
      false,
    ),
  ])
  assert.deepEqual(
    (await db.iterator({ gte: key('k'), lt: key('l') }).all()).map(([k, v]) => [k.toString(), v.toString()]),
    [['k2', '2']],
  )
  await commits.close()
  await db.close()
  await assert.rejects(writeBatch(db, [{ type: 'put', key: key('k3'), value: key('3') }], false), {
    code: LevelErrorCodes.writeFailed,
  })
})

void test('u64s sort like numbers; names end with the terminator; isU32', () => {
  const values = [0, 1, 255, 2 ** 32 - 1, 2 ** 32, 2 ** 40 + 7, Number.MAX_SAFE_INTEGER]
  const encoded = values.map((v) => {
    const buf = Buffer.alloc(8)
    assert.equal(writeU64(buf, v, 0), 8)
    assert.equal(readU64(buf, 0), v)
    return buf
  })
  for (let i = 1; i < encoded.length; i++) {
    assert.equal(Buffer.compare(encoded[i - 1] as Buffer, encoded[i] as Buffer), -1)
  }
  assert.deepEqual(
    Buffer.from([0, 0, 0, 1, 0, 0, 0, 2]),
    (() => {
      const b = Buffer.alloc(8)
      writeU64(b, 2 ** 32 + 2, 0)
      return b
    })(),
  )
  const name = Buffer.alloc(4)
  assert.equal(writeName(name, 'ab', 1), 4)
  assert.deepEqual(name, Buffer.from([0, 0x61, 0x62, 0]))
  assert.deepEqual(prefixRange(Buffer.from([0x6d, 0x61, 0])), {
    gte: Buffer.from([0x6d, 0x61, 0]),
    lt: Buffer.from([0x6d, 0x61, 1]),
  })
  assert.ok(isU32(0) && isU32(0xffff_ffff))
  assert.ok(!isU32(-1) && !isU32(2 ** 32) && !isU32(1.5) && !isU32(Number.NaN))
})
