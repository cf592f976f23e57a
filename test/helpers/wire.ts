/**
 * Exact-packet MQTT connections for the conformance tests (test/conformance/): `mqtt-packet` over a
 * raw socket, nothing automatic (no PUBACK, no keepalive, no topic aliases). The test sends the CONNECT
 * it wants and sees every packet the broker writes, plus the moment the broker closes the socket.
 */
import type { TestContext } from 'node:test'
import { EventEmitter, once } from 'node:events'
import { connect, type Socket } from 'node:net'
import mqttPacket from 'mqtt-packet'
import { TIMEOUT_MS, uniqueId } from './server.js'
import { within } from './wait.js'

export type Packet = mqttPacket.Packet
export type Connect = Partial<mqttPacket.IConnectPacket>

export interface WireClient {
  readonly socket: Socket
  /** Every packet received so far, in order. */
  readonly packets: Packet[]
  /** Resolves when the broker (or the test) closed the connection. */
  readonly closed: Promise<void>
  isClosed(): boolean
  send(packet: Packet): void
  /** Sends bytes as they are (for packets mqtt-packet would refuse to build). */
  sendRaw(bytes: Buffer): void
  /** The next packet of type `cmd` not yet taken by an earlier `next` call (waits if needed). */
  next<T extends Packet = Packet>(cmd: T['cmd'], what?: string): Promise<T>
  /** Resolves once `predicate` holds for the packets received so far. */
  waitFor(predicate: (packets: Packet[]) => boolean, what: string): Promise<void>
  /** Every PUBLISH received so far. */
  publishes(): mqttPacket.IPublishPacket[]
  end(): void
}

/** Opens a socket to the broker; nothing is sent yet. Destroyed on `t.after`. */
export async function openWire(
  t: TestContext,
  port: number,
  protocolVersion: 4 | 5 = 5,
): Promise<WireClient> {
  const socket = connect(port, '127.0.0.1')
  t.after(() => {
    socket.destroy()
  })
  await within(once(socket, 'connect'), TIMEOUT_MS, 'raw TCP connect')
  socket.setNoDelay(true)
  const parser = mqttPacket.parser({ protocolVersion })
  const packets: Packet[] = []
  const taken = new Map<string, number>()
  const events = new EventEmitter()
  let isClosed = false
  parser.on('packet', (packet: Packet) => {
    packets.push(packet)
    events.emit('change')
  })
  socket.on('data', (data: Buffer) => parser.parse(data))
  socket.on('error', () => {
    // a reset by the broker shows as 'close'; the tests assert on that
  })
  const closed = new Promise<void>((resolve) =>
    socket.once('close', () => {
      isClosed = true
      events.emit('change')
      resolve()
    }),
  )
  const waitFor = async (predicate: (packets: Packet[]) => boolean, what: string): Promise<void> => {
    if (predicate(packets)) return
    await within(
      new Promise<void>((resolve) => {
        const check = () => {
          if (!predicate(packets)) return
          events.off('change', check)
          resolve()
        }
        events.on('change', check)
      }),
      TIMEOUT_MS,
      what,
    )
  }
  return {
    socket,
    packets,
    closed,
    isClosed: () => isClosed,
    send: (packet) => socket.write(mqttPacket.generate(packet, { protocolVersion })),
    sendRaw: (bytes) => socket.write(bytes),
    async next<T extends Packet = Packet>(cmd: T['cmd'], what?: string): Promise<T> {
      const skip = taken.get(cmd) ?? 0
      const find = () => packets.filter((p) => p.cmd === cmd)[skip]
      await waitFor(() => find() !== undefined || isClosed, what ?? `${cmd} #${skip + 1}`)
      const found = find()
      if (found === undefined) throw new Error(`connection closed before ${what ?? cmd}`)
      taken.set(cmd, skip + 1)
      return found as T
    },
    waitFor,
    publishes: () => packets.filter((p): p is mqttPacket.IPublishPacket => p.cmd === 'publish'),
    end: () => {
      socket.end()
    },
  }
}

/** Opens a socket, sends CONNECT (Clean Start 1, keepalive 0 unless `connect` says otherwise) and waits for CONNACK. */
export async function wireConnect(
  t: TestContext,
  port: number,
  connect: Connect = {},
): Promise<{ client: WireClient; connack: mqttPacket.IConnackPacket }> {
  const protocolVersion = connect.protocolVersion === 4 ? 4 : 5
  const client = await openWire(t, port, protocolVersion)
  client.send({
    cmd: 'connect',
    protocolId: 'MQTT',
    protocolVersion,
    clean: true,
    keepalive: 0,
    clientId: uniqueId('wire'),
    ...connect,
  })
  const connack = await client.next<mqttPacket.IConnackPacket>('connack')
  return { client, connack }
}

/** The DISCONNECT the broker sent before closing, or undefined when it just closed. */
export async function disconnectOf(client: WireClient): Promise<mqttPacket.IDisconnectPacket | undefined> {
  await within(client.closed, TIMEOUT_MS, 'the broker to close the connection')
  return client.packets.find((p): p is mqttPacket.IDisconnectPacket => p.cmd === 'disconnect')
}
