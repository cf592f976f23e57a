/**
 * Errors the queue core raises. Each has a stable `code`; the MQTT adapter maps codes to MQTT 5
 * reason codes in one place (src/protocol), so the core never speaks MQTT.
 */
export const QueueErrorCodes = {
  invalidQueueName: 'INVALID_QUEUE_NAME',
  messageTooLarge: 'MESSAGE_TOO_LARGE',
  queueFull: 'QUEUE_FULL',
  unknownMessage: 'UNKNOWN_MESSAGE',
  ambiguousGroup: 'AMBIGUOUS_GROUP',
  invalidGroupName: 'INVALID_GROUP_NAME',
  /** A SUBSCRIBE without `consumer-group` while implicit groups are off (`queues.implicitGroups`). */
  groupRequired: 'GROUP_REQUIRED',
  queueNotFound: 'QUEUE_NOT_FOUND',
  groupNotFound: 'GROUP_NOT_FOUND',
  queueExists: 'QUEUE_EXISTS',
  queueInUse: 'QUEUE_IN_USE',
  /** A change that would break a promise about stored messages (partitions of a queue that holds some). */
  queueNotEmpty: 'QUEUE_NOT_EMPTY',
  invalidSettings: 'INVALID_SETTINGS',
  /** Not a partition number, or a message that does not belong to the partition it is handed in. */
  invalidPartition: 'INVALID_PARTITION',
  storageFailure: 'STORAGE_FAILURE',
  closed: 'CLOSED',
  /** Cluster: this node does not serve the partition (another node owns it, or it is moving). */
  partitionNotServed: 'PARTITION_NOT_SERVED',
  /** Cluster, direct routing: the node owns no partition of the queue, so a consumer here gets nothing. */
  noLocalPartitions: 'NO_LOCAL_PARTITIONS',
} as const
export type QueueErrorCode = (typeof QueueErrorCodes)[keyof typeof QueueErrorCodes]

export class QueueError extends Error {
  override readonly name = 'QueueError'
  constructor(
    readonly code: QueueErrorCode,
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options)
  }
}
