function handlePuback (client, packet, done) {
  const persistence = client.broker.persistence
  // PUBACK (QoS 1) or PUBCOMP (QoS 2) ends the flow: free its Receive Maximum
  // slot, which may send a PUBLISH that was waiting. [MQTT-3.3.4-9]
  client.outbound.release(packet.messageId)
  const emitAck = (err, origPacket) => {
    // The acknowledgement itself is the third argument: for a message that was
    // not in persistence (a clean session, or one the embedder wrote itself)
    // origPacket is undefined and the ack's messageId (and, in MQTT 5.0, its
    // reason code) is the only way to correlate it.
    client.broker.emit('ack', origPacket, client, packet)
    done(err)
  }
  persistence.outgoingClearMessageId(client, packet)
    .then((packet) => emitAck(null, packet), emitAck)
}

export default handlePuback
