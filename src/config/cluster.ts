import type { ClusterConfig } from './types.js'
import { ConfigError, integer, nonEmptyString, objectAt, oneOf } from './fields.js'
import { RoutingModes } from './types.js'

/** `cluster.*`: etcd endpoints, advertised host, routing, lease TTL and key prefix. */
export function validateCluster(raw: unknown, d: ClusterConfig): ClusterConfig {
  const cluster = objectAt(raw, 'cluster', ['etcd', 'advertise', 'routing', 'leaseTtlSeconds', 'prefix'])
  // A list in a file; a comma-separated string from a flag or env var.
  const etcdRaw = cluster.etcd ?? []
  const etcdList = typeof etcdRaw === 'string' ? etcdRaw.split(',') : etcdRaw
  if (!Array.isArray(etcdList)) throw new ConfigError('cluster.etcd', 'must be a list of URLs', etcdRaw)
  const etcd = etcdList.map((item: unknown) => {
    const url = typeof item === 'string' ? item.trim() : item
    if (typeof url !== 'string' || !/^https?:\/\/[^/\s]+$/.test(url)) {
      throw new ConfigError('cluster.etcd', 'must list URLs like http://127.0.0.1:2379', item)
    }
    return url
  })
  const prefix = nonEmptyString(cluster.prefix, 'cluster.prefix', d.prefix)
  if (!/^\/[A-Za-z0-9._/-]*[^/]$/.test(prefix)) {
    throw new ConfigError('cluster.prefix', 'must start with / and not end with / (e.g. /spool)', prefix)
  }
  return {
    etcd,
    advertise: nonEmptyString(cluster.advertise, 'cluster.advertise', d.advertise),
    routing: oneOf(cluster.routing, 'cluster.routing', Object.values(RoutingModes), d.routing),
    leaseTtlSeconds: integer(cluster.leaseTtlSeconds, 'cluster.leaseTtlSeconds', 2, 300, d.leaseTtlSeconds),
    prefix,
  }
}
