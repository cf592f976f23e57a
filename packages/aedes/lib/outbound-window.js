import write from './write.js'

// MQTT 5.0 Receive Maximum, server to client [MQTT-3.3.4-9]: the server must
// not have more unacknowledged QoS 1/2 PUBLISH packets in flight to a client
// than the Receive Maximum the client sent in CONNECT (65535 when absent). One
// window per connection holds the packet identifiers in flight; a PUBLISH that
// finds the window full waits, in order, until a PUBACK, PUBCOMP or failed
// PUBREC frees a slot [MQTT-3.3.4-10 ordering is kept by the FIFO].
//
// The window is shared by everything that writes QoS 1/2 PUBLISH packets to
// the client, including an embedder that writes its own (`client.outbound`).
// It keeps the packets it holds, so that when the connection ends the embedder
// can see what the client never acknowledged (`unacknowledged()`), e.g. to
// hand a shared subscription's messages to another member (§4.8.2).
export default class OutboundWindow {
  constructor (max) {
    this.max = max
    this.inflight = new Map()
    this.pending = []
  }

  // Sends now (returns true) when a slot is free, else queues `send` behind
  // the packets already waiting (returns false).
  submit (messageId, send, packet) {
    if (this.pending.length === 0 && this.inflight.size < this.max) {
      this.inflight.set(messageId, packet)
      send()
      return true
    }
    this.pending.push({ messageId, send, packet })
    return false
  }

  // True while `messageId` is in flight or waiting: not free for a new PUBLISH.
  has (messageId) {
    if (this.inflight.has(messageId)) return true
    for (let i = 0; i < this.pending.length; i++) {
      if (this.pending[i].messageId === messageId) return true
    }
    return false
  }

  // The PUBLISH packets sent and not acknowledged, then those still waiting,
  // in order (those submitted without a packet are left out).
  unacknowledged () {
    const packets = []
    for (const packet of this.inflight.values()) {
      if (packet !== undefined) packets.push(packet)
    }
    for (let i = 0; i < this.pending.length; i++) {
      if (this.pending[i].packet !== undefined) packets.push(this.pending[i].packet)
    }
    return packets
  }

  // The client acknowledged `messageId`: free its slot and send what waits.
  release (messageId) {
    if (!this.inflight.delete(messageId)) return
    while (this.pending.length > 0 && this.inflight.size < this.max) {
      const next = this.pending.shift()
      this.inflight.set(next.messageId, next.packet)
      next.send()
    }
  }
}

// Writes a QoS 1/2 PUBLISH within the client's Receive Maximum [MQTT-3.3.4-9].
// When the window is full the packet waits in order, and `done` is called at
// once: the message is in the client's session (persistence, for a persistent
// session) and mqemitter must not be held up by one slow client.
export function sendQoS (client, packet, done) {
  let waited = false
  const sentNow = client.outbound.submit(packet.messageId, function send () {
    if (waited && client.closed) return
    write(client, packet, function (err) {
      if (err) {
        client.emit('error', err)
      }
      // don't pass the error here or it will be thrown by mqemitter
      if (!waited) done()
    })
  }, packet)
  if (!sentNow) {
    waited = true
    done()
  }
}
