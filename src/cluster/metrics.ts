/**
 * The cluster's Prometheus gauges, read at scrape time from the node's view (docs/operations.md):
 * whether the node may serve (etcd lease healthy), how many partitions it owns, how many messages
 * wait in its forward buffer, and how many nodes it sees.
 */
import { Gauge, type Registry } from 'prom-client'

export interface ClusterFigures {
  etcdHealthy(): boolean
  partitionsOwned(): number
  forwardBufferMessages(): number
  nodes(): { members: number; alive: number }
}

export function registerClusterMetrics(registry: Registry, figures: ClusterFigures): void {
  const registers = [registry]
  new Gauge({
    name: 'spool_cluster_etcd_healthy',
    help: '1 while this node reaches etcd within its lease TTL (it serves partitions only then), else 0.',
    registers,
    collect() {
      this.set(figures.etcdHealthy() ? 1 : 0)
    },
  })
  new Gauge({
    name: 'spool_cluster_partitions_owned',
    help: 'Partitions (all queues) that etcd records this node as owning.',
    registers,
    collect() {
      this.set(figures.partitionsOwned())
    },
  })
  new Gauge({
    name: 'spool_cluster_forward_buffer_messages',
    help: 'Messages this node accepted for partitions whose owner has not taken them yet.',
    registers,
    collect() {
      this.set(figures.forwardBufferMessages())
    },
  })
  new Gauge({
    name: 'spool_cluster_nodes',
    help: 'Nodes this node sees: members of the cluster (state="member") and those up (state="alive").',
    labelNames: ['state'],
    registers,
    collect() {
      const { members, alive } = figures.nodes()
      this.set({ state: 'member' }, members)
      this.set({ state: 'alive' }, alive)
    },
  })
}
