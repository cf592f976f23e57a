/**
 * Broker figures for metrics, taken from aedes as cheaply as it allows: plain per-type totals on the
 * hot path, everything else read at scrape time. Implements observability's `BrokerFigures`.
 *
 * aedes 2.0.0-beta.1 has no event per packet read or written, so each connection is watched where
 * aedes creates its client (`aedes.handle`): received packets from the client's mqtt-packet parser
 * (`packet` event, one per parsed packet), sent packets by framing the bytes aedes writes to the
 * connection (fixed header and Remaining Length only; bodies are skipped, not parsed).
 */
import type { EventEmitter } from 'node:events'
import type { Aedes, Client } from 'aedes'
import type { BrokerFigures, PacketTraffic } from '../observability/metrics.js'

/** MQTT Control Packet types by the high nibble of the fixed header [MQTT-2.1.2]. */
const PACKET_TYPES = [
  'reserved',
  'connect',
  'connack',
  'publish',
  'puback',
  'pubrec',
  'pubrel',
  'pubcomp',
  'subscribe',
  'suback',
  'unsubscribe',
  'unsuback',
  'pingreq',
  'pingresp',
  'disconnect',
  'auth',
] as const
const TYPE_INDEX = new Map<string, number>(PACKET_TYPES.map((type, i) => [type, i]))

/** Bytes of the Remaining Length field for `length` [MQTT-1.5.5]. */
function varIntBytes(length: number): number {
  return length < 128 ? 1 : length < 16_384 ? 2 : length < 2_097_152 ? 3 : 4
}

/** Per-type totals of one direction. */
class Totals {
  readonly packets = new Float64Array(16)
  readonly bytes = new Float64Array(16)

  add(type: number, bytes: number): void {
    this.packets[type]! += 1
    this.bytes[type]! += bytes
  }
}

/**
 * Splits an outgoing byte stream into MQTT packets: reads each fixed header and Remaining Length,
 * skips the body. Chunks may end anywhere (mqtt-packet writes a packet in several pieces).
 */
class OutboundFramer {
  private state: 'header' | 'length' | 'body' = 'header'
  private type = 0
  private length = 0
  private multiplier = 1
  private headerBytes = 0
  private remaining = 0

  constructor(private readonly totals: Totals) {}

  feed(chunk: Uint8Array): void {
    let i = 0
    while (i < chunk.length) {
      if (this.state === 'header') {
        this.type = chunk[i++]! >> 4
        this.length = 0
        this.multiplier = 1
        this.headerBytes = 1
        this.state = 'length'
      } else if (this.state === 'length') {
        const byte = chunk[i++]!
        this.headerBytes++
        this.length += (byte & 0x7f) * this.multiplier
        this.multiplier *= 128
        if ((byte & 0x80) === 0) {
          this.remaining = this.length
          if (this.remaining === 0) this.done()
          else this.state = 'body'
        }
      } else {
        const taken = Math.min(this.remaining, chunk.length - i)
        i += taken
        this.skip(taken)
      }
    }
  }

  /** Body bytes written as a string (mqtt-packet writes topics and client ids so). */
  feedString(text: string, encoding: BufferEncoding | undefined): void {
    if (this.state === 'body') this.skip(Buffer.byteLength(text, encoding))
    else this.feed(Buffer.from(text, encoding))
  }

  private skip(bytes: number): void {
    this.remaining -= bytes
    if (this.remaining <= 0) this.done()
  }

  private done(): void {
    this.totals.add(this.type, this.headerBytes + this.length)
    this.state = 'header'
  }
}

interface ParsedPacket {
  cmd: string
  length: number
}

/** Starts counting on `aedes`; call before the listeners open. */
export function attachBrokerStats(aedes: Aedes, retained: () => number): BrokerFigures {
  const received = new Totals()
  const sent = new Totals()
  let accepted = 0
  const handle = aedes.handle
  aedes.handle = (conn, req) => {
    accepted++
    const client = handle(conn, req)
    watchClient(client, received, sent)
    return client
  }
  // Neither is in aedes' typings: the connected clients by id, each with its subscriptions by topic.
  const clients = () =>
    Object.values((aedes as unknown as { clients: Record<string, { subscriptions: object }> }).clients)
  return {
    clientsConnected: () => aedes.connectedClients,
    connectionsAccepted: () => accepted,
    subscriptions: () => {
      let count = 0
      for (const client of clients()) count += Object.keys(client.subscriptions).length
      return count
    },
    retainedMessages: retained,
    *traffic(): Iterable<PacketTraffic> {
      for (const [direction, totals] of [
        ['received', received],
        ['sent', sent],
      ] as const) {
        for (const [i, type] of PACKET_TYPES.entries()) {
          const packets = totals.packets[i]!
          if (packets > 0) yield { direction, type, packets, bytes: totals.bytes[i]! }
        }
      }
    },
  }
}

function watchClient(client: Client, received: Totals, sent: Totals): void {
  // The parser is private to aedes' Client; it emits one 'packet' per packet read.
  const parser = (client as unknown as { _parser: EventEmitter })._parser
  parser.on('packet', (packet: ParsedPacket) => {
    const type = TYPE_INDEX.get(packet.cmd)
    if (type !== undefined) received.add(type, 1 + varIntBytes(packet.length) + packet.length)
  })
  const framer = new OutboundFramer(sent)
  type Write = (chunk: unknown, encoding?: unknown, callback?: unknown) => boolean
  const conn = client.conn as unknown as { write: Write }
  const write = conn.write
  // Fixed arity (chunk, encoding, callback), so no rest array per write; Writable treats an undefined
  // encoding or callback as one not given.
  conn.write = function countedWrite(this: unknown, chunk: unknown, encoding?: unknown, callback?: unknown) {
    if (typeof chunk === 'string') {
      framer.feedString(chunk, typeof encoding === 'string' ? (encoding as BufferEncoding) : undefined)
    } else if (chunk instanceof Uint8Array) framer.feed(chunk)
    return write.call(this, chunk, encoding, callback)
  }
}
