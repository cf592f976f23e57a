/**
 * An in-memory {@link QueueStore} for unit tests of the queue core. It keeps the same contract as the
 * level store (test/contract runs one suite against both): batches are all-or-nothing and applied in
 * order, and nothing a caller holds aliases stored data. Data survives `close()` + `open()` of the same
 * instance, so a test can simulate a broker restart.
 */
import type {
  GroupPartitionState,
  GroupRecord,
  QueueLayout,
  Membership,
  PartitionMeta,
  QueueStore,
  StoreOp,
  StoredQueueSettings,
  StoredState,
} from '../queue/store.js'
import type { MessageProperties, QueueMessage } from '../queue/types.js'
import { checkName, checkOp, checkPartition, notOpen, readBounds } from './validate.js'

interface PartitionData {
  /** Stored seqs, ascending (binary-searched; appends are the common case). */
  readonly seqs: number[]
  readonly messages: Map<number, QueueMessage>
}

interface QueueData {
  readonly partitions: Map<number, PartitionData>
  readonly metas: Map<number, PartitionMeta>
  /** Keyed by `${group}\u0000${partition}`; U+0000 cannot occur in a group name. */
  readonly groups: Map<string, GroupPartitionState>
  readonly groupRecords: Map<string, GroupRecord>
  settings?: StoredQueueSettings
  layout?: QueueLayout
}

/** In-memory {@link QueueStore}: no durability, `sync` is ignored. */
export class MemoryQueueStore implements QueueStore {
  readonly #queues = new Map<string, QueueData>()
  /** Keyed by {@link membershipKey}; memberships are not part of a queue (deleteQueue keeps them). */
  readonly #memberships = new Map<string, Membership>()
  #open = false

  open(): Promise<void> {
    this.#open = true
    return Promise.resolve()
  }

  close(): Promise<void> {
    this.#open = false
    return Promise.resolve()
  }

  write(ops: readonly StoreOp[], _options: { readonly sync: boolean }): Promise<void> {
    return settle(() => {
      this.#requireOpen()
      // Check and copy everything first, then apply: applying cannot throw, so a batch is all-or-nothing.
      const copies = ops.map((op) => {
        checkOp(op)
        return copyOp(op)
      })
      for (const op of copies) this.#apply(op)
    })
  }

  readMessages(queue: string, partition: number, fromSeq: number, limit: number): Promise<QueueMessage[]> {
    return settle(() => {
      this.#requireOpen()
      checkName('queue', queue)
      checkPartition(partition)
      const bounds = readBounds(fromSeq, limit)
      const data = this.#queues.get(queue)?.partitions.get(partition)
      if (bounds === undefined || data === undefined) return []
      const first = lowerBound(data.seqs, bounds.start)
      const seqs = data.seqs.slice(first, first + Math.min(bounds.limit, data.seqs.length))
      return seqs.map((seq) => copyMessage(data.messages.get(seq) as QueueMessage))
    })
  }

  getMessage(queue: string, partition: number, seq: number): Promise<QueueMessage | undefined> {
    return settle(() => {
      this.#requireOpen()
      checkName('queue', queue)
      checkPartition(partition)
      const message = this.#queues.get(queue)?.partitions.get(partition)?.messages.get(seq)
      return message === undefined ? undefined : copyMessage(message)
    })
  }

  loadState(): Promise<StoredState> {
    return settle(() => {
      this.#requireOpen()
      const partitions: PartitionMeta[] = []
      const groups: GroupPartitionState[] = []
      const groupRecords: GroupRecord[] = []
      const layouts: QueueLayout[] = []
      const queueSettings: StoredQueueSettings[] = []
      for (const data of this.#queues.values()) {
        partitions.push(...data.metas.values())
        groups.push(...data.groups.values())
        groupRecords.push(...data.groupRecords.values())
        if (data.layout !== undefined) layouts.push(data.layout)
        if (data.settings !== undefined) queueSettings.push(data.settings)
      }
      // Stored metas and states are frozen deep copies, safe to hand out as they are.
      const memberships = [...this.#memberships.values()]
      return { partitions, groups, groupRecords, layouts, memberships, queueSettings }
    })
  }

  #requireOpen(): void {
    if (!this.#open) throw notOpen()
  }

  #queue(name: string): QueueData {
    let data = this.#queues.get(name)
    if (data === undefined) {
      data = { partitions: new Map(), metas: new Map(), groups: new Map(), groupRecords: new Map() }
      this.#queues.set(name, data)
    }
    return data
  }

  #apply(op: StoreOp): void {
    switch (op.type) {
      case 'putMessage': {
        const { queue, partition, seq } = op.message
        const partitions = this.#queue(queue).partitions
        let data = partitions.get(partition)
        if (data === undefined) {
          data = { seqs: [], messages: new Map() }
          partitions.set(partition, data)
        }
        if (!data.messages.has(seq)) {
          const last = data.seqs.at(-1)
          if (last === undefined || seq > last) data.seqs.push(seq)
          else data.seqs.splice(lowerBound(data.seqs, seq), 0, seq)
        }
        data.messages.set(seq, op.message)
        return
      }
      case 'deleteMessage': {
        const data = this.#queues.get(op.queue)?.partitions.get(op.partition)
        if (data?.messages.delete(op.seq) === true) data.seqs.splice(lowerBound(data.seqs, op.seq), 1)
        return
      }
      case 'putPartitionMeta':
        this.#queue(op.meta.queue).metas.set(op.meta.partition, op.meta)
        return
      case 'putGroupState':
        this.#queue(op.state.queue).groups.set(groupKey(op.state.group, op.state.partition), op.state)
        return
      case 'deleteGroupState':
        this.#queues.get(op.queue)?.groups.delete(groupKey(op.group, op.partition))
        return
      case 'putQueueSettings':
        this.#queue(op.record.queue).settings = op.record
        return
      case 'putGroupRecord':
        this.#queue(op.record.queue).groupRecords.set(op.record.group, op.record)
        return
      case 'putQueueLayout':
        this.#queue(op.layout.queue).layout = op.layout
        return
      case 'deleteGroupRecord':
        this.#queues.get(op.queue)?.groupRecords.delete(op.group)
        return
      case 'putMembership':
        this.#memberships.set(membershipKey(op.membership), op.membership)
        return
      case 'deleteMembership':
        this.#memberships.delete(membershipKey(op.membership))
        return
      case 'deleteQueue':
        this.#queues.delete(op.queue)
        return
    }
  }
}

/** Runs `fn` now; its result or throw becomes the promise's outcome (sync work, async contract). */
function settle<T>(fn: () => T): Promise<T> {
  return new Promise<T>((resolve) => resolve(fn()))
}

function groupKey(group: string, partition: number): string {
  return `${group}\u0000${partition}`
}

function membershipKey({ clientId, queue, group }: Membership): string {
  return `${clientId}\u0000${queue}\u0000${group}`
}

/** Index of the first element >= value in an ascending array. */
function lowerBound(sorted: readonly number[], value: number): number {
  let lo = 0
  let hi = sorted.length
  while (lo < hi) {
    const mid = (lo + hi) >>> 1
    if ((sorted[mid] as number) < value) lo = mid + 1
    else hi = mid
  }
  return lo
}

/** A frozen deep copy of a (checked) op, so later changes by the caller cannot reach the store. */
function copyOp(op: StoreOp): StoreOp {
  switch (op.type) {
    case 'putMessage':
      return { type: op.type, message: copyMessage(op.message) }
    case 'putPartitionMeta': {
      const { queue, partition, lastSeq, count } = op.meta
      return { type: op.type, meta: Object.freeze({ queue, partition, lastSeq, count }) }
    }
    case 'putGroupState': {
      const { queue, group, partition, ackFloor, settledAbove, attempts } = op.state
      return {
        type: op.type,
        state: Object.freeze({
          queue,
          group,
          partition,
          ackFloor,
          settledAbove: Object.freeze([...settledAbove]),
          attempts: Object.freeze(attempts.map(([seq, count]) => Object.freeze([seq, count] as const))),
        }),
      }
    }
    case 'putQueueSettings':
      return {
        type: op.type,
        record: Object.freeze({
          queue: op.record.queue,
          settings: JSON.parse(JSON.stringify(op.record.settings)) as StoredQueueSettings['settings'],
        }),
      }
    case 'putGroupRecord': {
      const { queue, group, implicit, idleSinceMs } = op.record
      const record: GroupRecord =
        idleSinceMs === undefined ? { queue, group, implicit } : { queue, group, implicit, idleSinceMs }
      return { type: op.type, record: Object.freeze(record) }
    }
    case 'putQueueLayout':
      return {
        type: op.type,
        layout: Object.freeze({ queue: op.layout.queue, partitions: op.layout.partitions }),
      }
    case 'putMembership':
    case 'deleteMembership': {
      const { clientId, queue, group } = op.membership
      return { type: op.type, membership: Object.freeze({ clientId, queue, group }) }
    }
    default:
      return op
  }
}

/**
 * A deep copy of a message: frozen objects, fresh byte arrays (typed arrays cannot be frozen, so they
 * are copied on the way in and on the way out).
 */
function copyMessage(message: QueueMessage): QueueMessage {
  const copy: { -readonly [K in keyof QueueMessage]: QueueMessage[K] } = {
    id: message.id,
    queue: message.queue,
    partition: message.partition,
    seq: message.seq,
    payload: new Uint8Array(message.payload),
    properties: copyProperties(message.properties),
    enqueuedAtMs: message.enqueuedAtMs,
  }
  if (message.expiresAtMs !== undefined) copy.expiresAtMs = message.expiresAtMs
  return Object.freeze(copy)
}

function copyProperties(properties: MessageProperties): MessageProperties {
  const copy: MessageProperties = {}
  if (properties.contentType !== undefined) copy.contentType = properties.contentType
  if (properties.responseTopic !== undefined) copy.responseTopic = properties.responseTopic
  if (properties.correlationData !== undefined)
    copy.correlationData = new Uint8Array(properties.correlationData)
  if (properties.payloadFormatIndicator !== undefined) {
    copy.payloadFormatIndicator = properties.payloadFormatIndicator
  }
  if (properties.userProperties !== undefined) {
    copy.userProperties = Object.freeze(
      properties.userProperties.map(([key, value]) => Object.freeze([key, value])),
    ) as Array<[string, string]>
  }
  return Object.freeze(copy)
}
