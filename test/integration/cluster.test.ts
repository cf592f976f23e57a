/**
 * The cluster (docs/cluster.md) with real parts: an etcd process on free loopback ports, Spool nodes
 * as child processes (`spool start --etcd ...`), mqtt.js publishers and consumers. Every test checks
 * the same promise under a different fault: every accepted message is delivered (at least once, and
 * exactly once without faults), in publish order per partition key.
 */
import assert from 'node:assert/strict'
import test, { type TestContext } from 'node:test'
import type { RawConfig } from '../../src/config/index.js'
import { startClusterNode, untilSettled, QueueLoad, type ClusterNode } from '../helpers/cluster.js'
import { skipWithoutEtcd, startEtcd } from '../helpers/etcd.js'
import { uniqueQueue } from '../helpers/queues.js'
import { connectClient } from '../helpers/server.js'
import { until } from '../helpers/wait.js'

const skip = skipWithoutEtcd()
const CLUSTER_TEST_TIMEOUT_MS = 180_000

async function cluster(
  t: TestContext,
  ids: string[],
  options: { routing?: 'proxy' | 'direct'; config?: RawConfig } = {},
) {
  const etcd = await startEtcd()
  t.after(() => etcd.cleanup())
  const nodes = await Promise.all(
    ids.map((nodeId) => startClusterNode(t, { nodeId, etcdUrl: etcd.url, ...options })),
  )
  return { etcd, nodes }
}

function assertDeliveredOnce(load: QueueLoad, count: number): void {
  assert.deepEqual(load.missing(count).slice(0, 10), [], 'messages lost')
  assert.equal(load.duplicates(), 0, 'messages delivered twice')
  assert.equal(load.ackFailures, 0, 'acks refused')
  assert.deepEqual(load.orderViolations(), [], 'per-key order')
}

test(
  'proxy routing: publish on node 1, consumers on nodes 2 and 3: every message acked once, per-key order kept',
  { skip, timeout: CLUSTER_TEST_TIMEOUT_MS },
  async (t) => {
    const { nodes } = await cluster(t, ['n1', 'n2', 'n3'])
    const [n1, n2, n3] = nodes as [ClusterNode, ClusterNode, ClusterNode]
    const queue = uniqueQueue('proxy')
    const load = new QueueLoad(queue)
    await load.addConsumer(t, n2.mqttPort, 'w-2')
    await load.addConsumer(t, n3.mqttPort, 'w-3')
    const view = await untilSettled(n1, queue, ['n1', 'n2', 'n3'])
    for (const id of ['n1', 'n2', 'n3'])
      assert.ok(view.nodes.find((n) => n.id === id)!.partitions > 0, `${id} owns partitions`)

    const publisher = await connectClient(t, n1.mqttPort)
    const COUNT = 3000
    await load.publish(publisher, 0, COUNT)
    await load.untilAllDelivered(COUNT, 60_000)
    await until(() => load.acked >= COUNT, 20_000, 'every ack answered')
    assertDeliveredOnce(load, COUNT)
    assert.equal(load.publishRetries, 0)
    assert.ok((load.perConsumer.get('w-2') ?? 0) > 0 && (load.perConsumer.get('w-3') ?? 0) > 0)
    // The cluster's gauges on /metrics, as an operator's Prometheus sees them.
    const metrics = await (await fetch(`http://127.0.0.1:${n1.httpPort}/metrics`)).text()
    const value = (line: string) => Number(new RegExp(`^${line} (\\S+)$`, 'm').exec(metrics)?.[1])
    assert.equal(value('spool_cluster_etcd_healthy'), 1)
    assert.equal(value('spool_cluster_forward_buffer_messages'), 0)
    assert.equal(value('spool_cluster_nodes\\{state="alive"\\}'), 3)
    assert.equal(value('spool_cluster_partitions_owned'), view.nodes.find((n) => n.id === 'n1')!.partitions)
    t.diagnostic(`w-2 got ${load.perConsumer.get('w-2')}, w-3 got ${load.perConsumer.get('w-3')}`)
  },
)

test(
  'direct routing: consumers on the owners get every message once, in order; a node owning none refuses',
  { skip, timeout: CLUSTER_TEST_TIMEOUT_MS },
  async (t) => {
    const small = uniqueQueue('direct-small')
    const { nodes } = await cluster(t, ['n1', 'n2', 'n3'], {
      routing: 'direct',
      config: { queues: { declared: { [small]: { partitions: 2 } } } },
    })
    const [n1] = nodes as [ClusterNode, ClusterNode, ClusterNode]
    const queue = uniqueQueue('direct')
    // Every node owns some of the 10 partitions of `queue`: a consumer on each covers them all.
    const publisher = await connectClient(t, n1.mqttPort)
    await publisher.publishAsync(`$queue/${queue}`, 'k0:-1', { qos: 1 }) // registers the queue
    const view = await untilSettled(n1, queue, ['n1', 'n2', 'n3'])
    const load = new QueueLoad(queue)
    for (const node of nodes) await load.addConsumer(t, node.mqttPort, `w-${node.nodeId}`)
    // The ownership map is also on $SYS, retained, for clients that pick the node themselves.
    const watcher = await connectClient(t, n1.mqttPort)
    const announced = new Promise<string>((resolve) =>
      watcher.on('message', (_topic, payload) => resolve(payload.toString())),
    )
    await watcher.subscribeAsync(`$SYS/spool/cluster/partitions/${queue}`)
    const map = JSON.parse(await announced) as { routing: string; partitions: Array<{ owner: string }> }
    assert.equal(map.routing, 'direct')
    assert.deepEqual(
      map.partitions.map((p) => p.owner),
      view.queues.find((q) => q.name === queue)!.owners.map((o) => o.owner),
    )

    const COUNT = 2000
    await load.publish(publisher, 0, COUNT)
    await load.untilAllDelivered(COUNT + 1, 60_000)
    await until(() => load.acked >= COUNT + 1, 20_000, 'every ack answered')
    assert.equal(load.duplicates(), 0)
    assert.equal(load.ackFailures, 0)
    assert.deepEqual(load.orderViolations(), [])

    // `small` has 2 partitions over 3 nodes: one node owns none and refuses its consumers.
    await publisher.publishAsync(`$queue/${small}`, 'x', { qos: 1 })
    const smallView = await untilSettled(n1, small, ['n1', 'n2', 'n3'])
    const owners = new Set(smallView.queues.find((q) => q.name === small)!.owners.map((o) => o.owner))
    const idle = nodes.find((node) => !owners.has(node.nodeId))!
    const consumer = await connectClient(t, idle.mqttPort)
    const suback = await consumer.subscribeAsync(`$queue/${small}`, { qos: 1 }).then(
      () => assert.fail(`SUBACK on ${idle.nodeId} should refuse`),
      (err: { packet?: { granted: number[]; properties?: { reasonString?: string } } }) => err.packet,
    )
    assert.equal(suback?.granted[0], 0x83, 'Implementation specific error')
    const reason = suback?.properties?.reasonString ?? ''
    assert.match(reason, new RegExp(`node ${idle.nodeId} owns no partition of queue ${small}`))
    for (const owner of owners)
      assert.ok(reason.includes(`${owner} (127.0.0.1:`), `names ${owner}: ${reason}`)
  },
)

test(
  'a fourth node joins and a node leaves gracefully during 20,000 messages: nothing lost',
  { skip, timeout: CLUSTER_TEST_TIMEOUT_MS },
  async (t) => {
    const { etcd, nodes } = await cluster(t, ['n1', 'n2', 'n3'])
    const [n1, n2, n3] = nodes as [ClusterNode, ClusterNode, ClusterNode]
    const queue = uniqueQueue('rebalance')
    const load = new QueueLoad(queue)
    await load.addConsumer(t, n1.mqttPort, 'w-1')
    await load.addConsumer(t, n3.mqttPort, 'w-3')
    await untilSettled(n1, queue, ['n1', 'n2', 'n3'])
    const publisher = await connectClient(t, n1.mqttPort)
    const COUNT = 20_000

    await load.publish(publisher, 0, 5_000)
    const joining = startClusterNode(t, { nodeId: 'n4', etcdUrl: etcd.url })
    await load.publish(publisher, 5_000, 12_000)
    await joining
    const leaving = n2.stop()
    await load.publish(publisher, 12_000, COUNT)
    await leaving
    assert.equal(n2.child.exitCode, 0, `n2 exited cleanly: ${n2.stderr()}`)
    assert.ok(
      n2.lines.some((line) => line.includes('"left the cluster"') && line.includes('"partitionsKept":0')),
      'n2 handed over every partition before it exited',
    )

    await load.untilAllDelivered(COUNT, 90_000)
    assert.deepEqual(load.missing(COUNT).slice(0, 10), [])
    await untilSettled(n1, queue, ['n1', 'n3', 'n4'])
    t.diagnostic(
      `delivered ${load.distinct()} distinct, ${load.duplicates()} redeliveries (unsettled during moves), ` +
        `${load.ackFailures} acks refused, ${load.publishRetries} publishes retried`,
    )
  },
)

test(
  'a node killed with kill -9 and restarted on its data: nothing lost',
  { skip, timeout: CLUSTER_TEST_TIMEOUT_MS },
  async (t) => {
    const { etcd, nodes } = await cluster(t, ['n1', 'n2', 'n3'])
    const [n1, n2, n3] = nodes as [ClusterNode, ClusterNode, ClusterNode]
    const queue = uniqueQueue('crash')
    const load = new QueueLoad(queue)
    await load.addConsumer(t, n1.mqttPort, 'w-1')
    await load.addConsumer(t, n2.mqttPort, 'w-2')
    await untilSettled(n1, queue, ['n1', 'n2', 'n3'])
    const publisher = await connectClient(t, n1.mqttPort)

    await load.publish(publisher, 0, 3_000)
    await n3.kill9()
    // n3's partitions have no live owner now: n1 keeps their messages in its forward buffer.
    await load.publish(publisher, 3_000, 6_000)
    const restarted = await startClusterNode(t, { nodeId: 'n3', etcdUrl: etcd.url, dataDir: n3.dataDir })
    await load.publish(publisher, 6_000, 8_000)
    await load.untilAllDelivered(8_000, 90_000)
    assert.deepEqual(load.missing(8_000).slice(0, 10), [])
    await untilSettled(restarted, queue, ['n1', 'n2', 'n3'])
    const buffered = (await n1.get<{ forwardBuffer: number }>('/api/v1/cluster')).body.forwardBuffer
    assert.equal(buffered, 0, 'the forward buffer drained')
    t.diagnostic(`${load.duplicates()} redeliveries after the crash`)
  },
)

test(
  'etcd stopped for longer than the lease, then restarted: nodes stop serving, recover, nothing lost',
  { skip, timeout: CLUSTER_TEST_TIMEOUT_MS },
  async (t) => {
    const { etcd, nodes } = await cluster(t, ['n1', 'n2', 'n3'])
    const [n1, n2, n3] = nodes as [ClusterNode, ClusterNode, ClusterNode]
    const queue = uniqueQueue('etcd-down')
    const load = new QueueLoad(queue)
    await load.addConsumer(t, n2.mqttPort, 'w-2')
    await load.addConsumer(t, n3.mqttPort, 'w-3')
    await untilSettled(n1, queue, ['n1', 'n2', 'n3'])
    const publisher = await connectClient(t, n1.mqttPort)
    await load.publish(publisher, 0, 1_000)
    await load.untilAllDelivered(1_000, 30_000)

    await etcd.stop()
    const stoppedAt = Date.now()
    const notReady = async (node: ClusterNode) => (await node.get('/readyz')).status === 503
    for (const node of nodes) {
      const deadline = Date.now() + 15_000
      while (!(await notReady(node)) && Date.now() < deadline)
        await new Promise((resolve) => setTimeout(resolve, 200))
      assert.ok(await notReady(node), `${node.nodeId} says not ready without etcd`)
    }
    assert.ok(n1.lines.some((line) => line.includes('etcd unreachable for longer than the lease TTL')))
    // Publishes are still accepted: stored in the forward buffer until owners serve again.
    await load.publish(publisher, 1_000, 2_000)
    const during = load.distinct()
    // Longer than twice the 3 s lease: the etcd client then declares the lease lost, and the node
    // has to get a new one (one re-grant loop, however many grants fail meanwhile).
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, stoppedAt + 9_000 - Date.now())))

    await etcd.restart()
    for (const node of nodes) {
      const deadline = Date.now() + 30_000
      while ((await node.get('/readyz')).status !== 200 && Date.now() < deadline)
        await new Promise((resolve) => setTimeout(resolve, 200))
      assert.equal((await node.get('/readyz')).status, 200, `${node.nodeId} ready again`)
    }
    await load.untilAllDelivered(2_000, 60_000)
    assert.deepEqual(load.missing(2_000).slice(0, 10), [])
    for (const node of nodes) {
      const lost = node.lines.filter((line) => line.includes('etcd lease lost')).length
      assert.ok(lost <= 1, `${node.nodeId} logged the lost lease ${lost} times`)
    }
    t.diagnostic(`${during - 1_000} of the 1,000 published during the outage were delivered during it`)
  },
)
