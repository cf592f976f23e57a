import assert from 'node:assert/strict'
import { existsSync } from 'node:fs'
import { test } from 'node:test'
import { Etcd3 } from 'etcd3'
import { skipWithoutEtcd, startEtcd } from '../helpers/etcd.js'
import { within } from '../helpers/wait.js'

/** Runs `use` with a fresh client, closed afterwards (the client keeps gRPC channels open). */
async function withClient<T>(url: string, use: (client: Etcd3) => Promise<T>): Promise<T> {
  const client = new Etcd3({ hosts: url })
  try {
    return await within(use(client), 10_000, `etcd request to ${url}`)
  } finally {
    client.close()
  }
}

test(
  'the etcd helper starts a real etcd that keeps its data across stop, kill and restart',
  { skip: skipWithoutEtcd() },
  async (t) => {
    const etcd = await startEtcd()
    t.after(() => etcd.cleanup())
    assert.match(etcd.url, /^http:\/\/127\.0\.0\.1:\d+$/)
    const key = `spool-test/${process.pid}/key`

    await withClient(etcd.url, async (client) => {
      await client.put(key).value('first')
      assert.equal(await client.get(key).string(), 'first')
    })

    await etcd.stop()
    await assert.rejects(
      fetch(`${etcd.url}/health`, { signal: AbortSignal.timeout(2000) }),
      'nothing answers while it is stopped',
    )
    await etcd.restart()
    await withClient(etcd.url, async (client) => {
      assert.equal(await client.get(key).string(), 'first', 'the value survived a stop and restart')
      await client.put(key).value('second')
    })

    await etcd.kill()
    await etcd.restart()
    await withClient(etcd.url, async (client) => {
      assert.equal(await client.get(key).string(), 'second', 'the value survived SIGKILL')
    })

    await etcd.restart() // while running: stops first, then starts again
    const health = await fetch(`${etcd.url}/health`, { signal: AbortSignal.timeout(2000) })
    assert.equal(((await health.json()) as { health?: string }).health, 'true')

    const dataDir = etcd.dataDir
    assert.ok(existsSync(dataDir))
    await etcd.cleanup()
    await etcd.cleanup() // idempotent
    assert.equal(existsSync(dataDir), false, 'cleanup removes the data dir')
    await assert.rejects(etcd.restart(), /cleaned up/)
  },
)
