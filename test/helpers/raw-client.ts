/**
 * A bare MQTT connection (mqtt-packet over a socket) that does only what the test tells it: no
 * automatic PUBACK, no keepalive. For behaviour mqtt.js will not produce, e.g. a consumer that holds
 * back its PUBACK.
 */
import type { TestContext } from 'node:test'
import { EventEmitter, once } from 'node:events'
import { connect } from 'node:net'
import mqttPacket from 'mqtt-packet'
import { TIMEOUT_MS } from './server.js'
import { within } from './wait.js'

export interface RawClient {
  readonly packets: mqttPacket.Packet[]
  send(packet: mqttPacket.Packet): void
  /** The next packet of type `cmd` that arrives from now on. */
  next(cmd: string): Promise<mqttPacket.Packet>
  /** Resolves once `predicate` holds for every packet received so far. */
  waitFor(predicate: (packets: mqttPacket.Packet[]) => boolean, what: string): Promise<void>
}

/** Connects (Clean Session / Clean Start 1, keepalive 0) and waits for CONNACK; closed on `t.after`. */
export async function rawClient(
  t: TestContext,
  port: number,
  clientId: string,
  protocolVersion: 4 | 5 = 4,
): Promise<RawClient> {
  const socket = connect(port, '127.0.0.1')
  t.after(() => {
    socket.destroy()
  })
  await within(once(socket, 'connect'), TIMEOUT_MS, 'raw TCP connect')
  const parser = mqttPacket.parser({ protocolVersion })
  const packets: mqttPacket.Packet[] = []
  const events = new EventEmitter()
  parser.on('packet', (packet: mqttPacket.Packet) => {
    packets.push(packet)
    events.emit('packet', packet)
  })
  socket.on('data', (data: Buffer) => parser.parse(data))
  const waitFor = async (predicate: (packets: mqttPacket.Packet[]) => boolean, what: string) => {
    if (predicate(packets)) return
    await within(
      new Promise<void>((resolve) => {
        const check = () => {
          if (!predicate(packets)) return
          events.off('packet', check)
          resolve()
        }
        events.on('packet', check)
      }),
      TIMEOUT_MS,
      what,
    )
  }
  const client: RawClient = {
    packets,
    send: (packet) => socket.write(mqttPacket.generate(packet, { protocolVersion })),
    next: (cmd) =>
      within(
        new Promise<mqttPacket.Packet>((resolve) => {
          const onPacket = (packet: mqttPacket.Packet) => {
            if (packet.cmd !== cmd) return
            events.off('packet', onPacket)
            resolve(packet)
          }
          events.on('packet', onPacket)
        }),
        TIMEOUT_MS,
        cmd,
      ),
    waitFor,
  }
  const connack = client.next('connack')
  client.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion, clean: true, keepalive: 0, clientId })
  await connack
  return client
}
