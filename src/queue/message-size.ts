import type { MessageProperties } from './types.js'

/**
 * What a message costs the queue that stores it, in bytes, as `maxMessageBytes` counts it: the
 * payload, the queue name (its topic) and every property kept with the message (content type,
 * response topic, correlation data and each user property's key and value, in UTF-8). A limit on the
 * payload alone let 8 MB of user properties through with a 4-byte payload.
 */
export function storedMessageBytes(
  queue: string,
  payload: Uint8Array,
  properties: MessageProperties,
): number {
  let bytes = payload.byteLength + Buffer.byteLength(queue)
  if (properties.contentType !== undefined) bytes += Buffer.byteLength(properties.contentType)
  if (properties.responseTopic !== undefined) bytes += Buffer.byteLength(properties.responseTopic)
  if (properties.correlationData !== undefined) bytes += properties.correlationData.byteLength
  if (properties.payloadFormatIndicator !== undefined) bytes += 1
  if (properties.userProperties !== undefined) {
    for (const [key, value] of properties.userProperties) {
      bytes += Buffer.byteLength(key) + Buffer.byteLength(value)
    }
  }
  return bytes
}
