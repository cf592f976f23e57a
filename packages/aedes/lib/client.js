import mqtt from 'mqtt-packet'
import EventEmitter from 'node:events'
import util from 'util'
import Packet from 'aedes-packet'
import write from './write.js'
import QoSPacket from './qos-packet.js'
import OutboundWindow, { sendQoS } from './outbound-window.js'
import handleSubscribe from './handlers/subscribe.js'
import handleUnsubscribe from './handlers/unsubscribe.js'
import handle from './handlers/index.js'
import { pipeline, finished } from 'stream'
import { through, packetWireSize, publishTooLarge } from './utils.js'
import { ReasonCodes } from './constants.js'

class Client {
  constructor (broker, conn, req) {
    const that = this

    // metadata
    this.closed = false
    this.connecting = false
    this.connected = false
    this.connackSent = false
    this.errored = false

    // mqtt params
    this.id = null
    this.clean = true
    this.version = null
    // Wire version used by write() for outbound serialization; cached at CONNECT.
    this._wireVersion = null
    // MQTT 5.0 Session Expiry Interval (seconds); set from CONNECT on connect.
    this.sessionExpiryInterval = 0

    this.subscriptions = {}
    this.duplicates = {}

    // MQTT 5.0 inbound Topic Alias map (alias number -> topic name), scoped
    // to this connection. Populated as the client registers aliases.
    this._topicAliases = new Map()
    // MQTT 5.0 outbound Topic Alias map (topic name -> alias), scoped to this
    // connection, up to the Topic Alias Maximum the client sent in CONNECT
    // (0 = the client takes none). [MQTT-3.3.2-11]
    this._outboundTopicAliases = new Map()
    this._outboundTopicAliasMaximum = 0
    // MQTT 5.0 Receive Maximum (broker's): packet ids of inbound QoS 1/2
    // PUBLISH not yet acknowledged (QoS 1: until PUBACK is written; QoS 2:
    // until PUBREL, or a failed PUBREC). [MQTT-3.3.4-8]
    this._inboundInflight = new Set()

    this.broker = broker
    this.conn = conn
    conn.client = this

    this._disconnected = false
    this._authorized = false
    // MQTT 5.0: set to the reason code of a server-initiated DISCONNECT
    // (takeover, shutdown, packet-too-large); null for a normal/client drop.
    this.disconnectReasonCode = null
    // MQTT 5.0: latch so an oversized frame is rejected (and reported) once.
    this._rejectingPacketTooLarge = false
    this._parsingBatch = 1
    this._nextId = Math.ceil(Math.random() * 65535)
    // MQTT 5.0 Receive Maximum (client's): outbound QoS 1/2 flow control,
    // sized at CONNECT. [MQTT-3.3.4-9]
    this.outbound = new OutboundWindow(65535)
    // Session resume: from the restore of the subscriptions until the stored
    // queue has been sent, live deliveries are held here, as [deliver, packet]
    // in arrival order, then delivered (see emptyQueue in handlers/connect.js).
    // null when not holding.
    this._heldDeliveries = null
    // brokerId:brokerCounter of the stored packets the resume sent (or
    // dropped): a live delivery of one of them is not sent a second time.
    this._resumedPackets = null

    // Drain timeout tracking - coalesced timer approach
    this._drainTimer = null
    this._pendingDrains = []

    this.req = req
    this.connDetails = req ? req.connDetails : null

    // we use two variables for the will
    // because we store in _will while
    // we are authenticating
    this.will = null
    this._will = null

    this._parser = mqtt.parser()
    this._parser.client = this
    this._parser._queue = [] // queue packets received before client fires 'connect' event. Prevents memory leaks on 'connect' event
    this._parser.on('packet', enqueue)
    this.once('connected', dequeue)

    function nextBatch (err) {
      if (err) {
        that.emit('error', err)
        return
      }

      const client = that

      if (client._paused) {
        return
      }

      // An oversized frame is being rejected; the DISCONNECT/close that detaches
      // this listener is async, so stop reading/parsing now to bound how much of
      // a slow-drip oversized body is buffered during the close RTT. [MQTT-3.2.2-15]
      if (client._rejectingPacketTooLarge) {
        return
      }

      that._parsingBatch--
      if (that._parsingBatch <= 0) {
        that._parsingBatch = 0
        const buf = client.conn.read(null)
        if (buf) {
          client._parser.parse(buf)
          // MQTT 5.0 Maximum Packet Size: once the fixed header is parsed the
          // declared length is known. Reject an oversized frame here, before
          // the rest of its (possibly chunked) payload is buffered, rather than
          // only after the whole packet is parsed. [MQTT-3.2.2-15]
          const max = client.broker.maximumPacketSize
          const pending = client._parser.packet
          if (max > 0 && pending && pending.length > 0) {
            const wireSize = packetWireSize(pending.length)
            if (wireSize > max) client.rejectPacketTooLarge(wireSize)
          }
        }
      }
    }
    this._nextBatch = nextBatch

    conn.on('readable', nextBatch)

    this.on('error', this._onError)
    conn.on('error', this.emit.bind(this, 'error'))
    this._parser.on('error', this.emit.bind(this, 'error'))

    conn.on('end', this.close.bind(this))
    this._eos = finished(this.conn, this.close.bind(this))

    const getToForwardPacket = (_packet) => {
      // Mqttv5 3.8.3.1: https://docs.oasis-open.org/mqtt/mqtt/v5.0/mqtt-v5.0.html#_Toc3901169
      // prevent to forward messages sent by the same client when no-local flag is set
      if (_packet.clientId === that.id && _packet.nl) return

      const toForward = dedupe(that, _packet) &&
        that.broker.authorizeForward(that, _packet)

      return toForward
    }

    this.deliver0 = function deliverQoS0 (_packet, cb) {
      if (that._heldDeliveries !== null) {
        holdDelivery(that, that.deliver0, _packet, cb)
        return
      }
      const toForward = getToForwardPacket(_packet)

      if (toForward) {
        // Give nodejs some time to clear stacks, or we will see
        // "Maximum call stack size exceeded" in a very high load
        setImmediate(() => {
          const packet = new Packet(toForward, broker)
          packet.qos = 0
          // [MQTT-3.1.2-25] too large for the client: discarded as if sent.
          if (publishTooLarge(that, packet)) return cb()
          write(that, packet, function (err) {
            that._onError(err)
            cb() // don't pass the error here or it will be thrown by mqemitter
          })
        })
      } else {
        setImmediate(cb)
      }
    }

    this.deliverQoS = function deliverQoS (_packet, cb) {
      // downgrade to qos0 if requested by publish
      if (_packet.qos === 0) {
        that.deliver0(_packet, cb)
        return
      }
      if (that._heldDeliveries !== null) {
        holdDelivery(that, that.deliverQoS, _packet, cb)
        return
      }
      if (that._resumedPackets !== null && _packet.brokerId &&
          that._resumedPackets.delete(_packet.brokerId + ':' + _packet.brokerCounter)) {
        // Already sent from the stored queue on resume (it was queued before
        // the resume read the queue, and its live delivery came after).
        setImmediate(cb)
        return
      }
      const toForward = getToForwardPacket(_packet)

      if (toForward) {
        setImmediate(() => {
          // The QoS was already capped to the granted QoS of the matching
          // subscriptions (handlePacketSubscription, and the retained path of
          // completeSubscribe) [MQTT-3.3.5-1]; looking the topic up as a filter
          // here missed wildcard subscriptions and broke overlapping ones.
          const packet = new QoSPacket(toForward, that)
          packet.writeCallback = cb
          const doWriteQoS = (err = null) => writeQoS(err, that, packet)
          if (that.clean || packet.retain) {
            doWriteQoS()
          } else {
            broker.persistence.outgoingUpdate(that, packet)
              .then(doWriteQoS, doWriteQoS)
          }
        })
      } else if (that.clean === false) {
        that.broker.persistence.outgoingClearMessageId(that, _packet)
          .then(noop, noop)
        // we consider this to be an error, since the packet is undefined
        // so there's nothing to send
        setImmediate(cb)
      } else {
        setImmediate(cb)
      }
    }

    this._keepaliveTimer = null
    this._keepaliveInterval = -1

    this._connectTimer = setTimeout(function () {
      that.emit('error', new Error('connect did not arrive in time'))
    }, broker.connectTimeout)
  }

  _onError (err) {
    if (!err) return

    this.errored = true
    this.conn.removeAllListeners('error')
    this.conn.on('error', noop)
    // hack to clean up the write callbacks in case of error
    if (!this.conn.destroyed) {
      this.conn.destroy(err)
    }
    this.broker.emit(this.id ? 'clientError' : 'connectionError', this, err)
    this.close()
  }

  publish (message, done) {
    const packet = new Packet(message, this.broker)
    const that = this
    if (packet.qos === 0) {
      // skip offline and send it as it is
      this.deliver0(packet, done)
      return
    }

    if (!this.clean && this.id) {
      this.broker.persistence.outgoingEnqueue({ clientId: this.id }, packet)
        .then(() => that.deliverQoS(packet, done), done)
    } else {
      that.deliverQoS(packet, done)
    }
  }

  // MQTT 5.0 outbound Topic Alias for a PUBLISH to `topic` that is written to
  // the connection now: { topic: '', alias } when the client already knows the
  // alias, { topic, alias } to establish a new one, { topic } when the client
  // takes no aliases or all of its aliases are in use (the first topics keep
  // theirs for the life of the connection). [MQTT-3.3.2-11] [MQTT-3.3.2-12]
  outboundTopicAlias (topic) {
    const max = this._outboundTopicAliasMaximum
    if (!max) return { topic }
    const aliases = this._outboundTopicAliases
    let alias = aliases.get(topic)
    if (alias !== undefined) return { topic: '', alias }
    if (aliases.size >= max) return { topic }
    alias = aliases.size + 1
    aliases.set(topic, alias)
    return { topic, alias }
  }

  subscribe (packet, done) {
    if (!packet.subscriptions) {
      if (!Array.isArray(packet)) {
        packet = [packet]
      }
      packet = {
        subscriptions: packet
      }
    }
    handleSubscribe(this, packet, false, done)
  }

  unsubscribe (packet, done) {
    if (!packet.unsubscriptions) {
      if (!Array.isArray(packet)) {
        packet = [packet]
      }
      packet = {
        unsubscriptions: packet
      }
    }
    handleUnsubscribe(this, packet, done)
  }

  /**
   * Handle successful drain - socket is writable again
   * Clears timer and completes all pending drain callbacks
   */
  _handleDrain () {
    // Clear the single per-client timer
    if (this._drainTimer) {
      clearTimeout(this._drainTimer)
      this._drainTimer = null
    }

    // Complete all pending drain callbacks
    const pending = this._pendingDrains
    this._pendingDrains = []
    for (let i = 0; i < pending.length; i++) {
      setImmediate(pending[i], null, this)
    }
  }

  /**
   * Handle drain timeout - client failed to drain within timeout
   * Disconnects the client and fails all pending callbacks
   */
  _handleDrainTimeout () {
    this._drainTimer = null

    // Remove drain listener to prevent it firing after disconnect
    if (this._onDrainBound) {
      this.conn.removeListener('drain', this._onDrainBound)
    }

    // Fail all pending callbacks
    const error = new Error('drain timeout')
    const pending = this._pendingDrains
    this._pendingDrains = []
    for (let i = 0; i < pending.length; i++) {
      setImmediate(pending[i], error, this)
    }

    // Disconnect the slow client
    this.conn.destroy(error)
  }

  /**
   * Register a callback to be called when socket drains
   * Uses per-client coalesced timer to reduce timer overhead
   * @param {Function} callback - called with (err, client)
   */
  waitForDrain (callback) {
    const drainTimeout = this.broker?.opts?.drainTimeout

    if (drainTimeout > 0) {
      // Per-client coalesced timer approach:
      // Only create ONE timer per client, regardless of pending writes

      // Add this callback to pending queue
      this._pendingDrains.push(callback)

      // If no timer exists, create one and set up drain listener
      if (!this._drainTimer) {
        // Create bound drain handler (if not already created)
        if (!this._onDrainBound) {
          this._onDrainBound = this._handleDrain.bind(this)
        }

        // Set up single drain listener
        this.conn.once('drain', this._onDrainBound)

        // Create single timer for this client
        this._drainTimer = setTimeout(
          this._handleDrainTimeout.bind(this),
          drainTimeout
        )
        this._drainTimer.unref() // Don't keep process alive
      }
      // else: timer already running, just queued the callback
    } else {
      // Without drain timeout: wait indefinitely (original behavior)
      this.conn.once('drain', callback)
    }
  }

  // MQTT 5.0: gracefully disconnect a client by sending a DISCONNECT packet
  // with a reason code (and optional properties) before closing the
  // connection. For v3/v4 clients, which have no server-side DISCONNECT, this
  // just closes the connection. [MQTT-3.14.0-1]
  disconnect (opts, done) {
    if (typeof opts === 'function') {
      done = opts
      opts = {}
    }
    opts = opts || {}

    const reasonCode = opts.reasonCode ?? 0
    // Record the server-sent reason code so it is observable on the subsequent
    // 'clientDisconnect' broker event: ops can distinguish a kick (0x8E
    // takeover, 0x8B shutdown, 0x95 packet-too-large) from a normal drop. v5
    // only — a numeric v5 reason code is meaningless to a v3/v4 client.
    if (this.version === 5) {
      this.disconnectReasonCode = reasonCode
    }

    if (this.version === 5 && this.connected && !this.closed && !this.errored) {
      const packet = { cmd: 'disconnect', reasonCode }
      if (opts.properties) {
        packet.properties = opts.properties
      }
      const that = this
      write(this, packet, function (err) {
        // Surface a failed graceful close instead of dropping it silently.
        if (err) that.emit('error', err)
        that.close(done)
      })
    } else {
      this.close(done)
    }
  }

  // MQTT 5.0 Maximum Packet Size: reject an oversized inbound frame. A
  // connected v5 client is told why with a 0x95 (Packet too large) DISCONNECT;
  // otherwise (pre-auth, or a v3/v4 client with no server-side DISCONNECT) the
  // connection is dropped. Either way the rejection is observable, carrying the
  // offending size and the configured limit. [MQTT-3.2.2-15]
  rejectPacketTooLarge (size, done) {
    // Reject once per offending frame. Two callers can re-enter this:
    //  - nextBatch (read loop, partial frames): the flag below makes nextBatch
    //    bail before the *next* readable event, stopping further buffering; and
    //  - handle() (lib/handlers/index.js): when two complete oversized packets
    //    arrive in one TCP segment, _parser.parse() emits 'packet' twice
    //    *synchronously* within a single call → handle → here, twice. disconnect()
    //    defers close() via setImmediate, so connected/closed/errored are
    //    unchanged between the two calls — only this early-return latch collapses
    //    them to a single clientError + 0x95 DISCONNECT.
    if (this._rejectingPacketTooLarge) {
      if (typeof done === 'function') done()
      return
    }
    this._rejectingPacketTooLarge = true
    const err = new Error('packet too large')
    err.size = size
    err.maximumPacketSize = this.broker.maximumPacketSize
    if (this.version === 5 && this.connected && !this.closed && !this.errored) {
      // Surface telemetry (the 0x95 DISCONNECT below does not pass through the
      // 'error' path), then tell the client why before closing.
      this.broker.emit('clientError', this, err)
      this.disconnect({ reasonCode: ReasonCodes.PACKET_TOO_LARGE }, done)
    } else {
      if (typeof done === 'function') done()
      this.emit('error', err)
    }
  }

  close (done) {
    if (this.closed) {
      if (typeof done === 'function') {
        done()
      }
      return
    }

    const that = this
    const conn = this.conn

    this.closed = true

    this._parser.removeAllListeners('packet')
    conn.removeAllListeners('readable')

    this._parser._queue = null

    if (this._keepaliveTimer) {
      clearTimeout(this._keepaliveTimer)
      this._keepaliveInterval = -1
      this._keepaliveTimer = null
    }

    if (this._connectTimer) {
      clearTimeout(this._connectTimer)
      this._connectTimer = null
    }

    // Clean up drain timeout timer, listener, and flush pending callbacks
    if (this._drainTimer) {
      clearTimeout(this._drainTimer)
      this._drainTimer = null
    }
    if (this._onDrainBound) {
      this.conn.removeListener('drain', this._onDrainBound)
    }
    // Flush pending drain callbacks with connection closed error
    const error = new Error('connection closed')
    const pending = this._pendingDrains
    this._pendingDrains = []
    for (let i = 0; i < pending.length; i++) {
      setImmediate(pending[i], error, this)
    }

    this._eos()
    this._eos = noop

    handleUnsubscribe(
      this,
      {
        unsubscriptions: Object.keys(this.subscriptions)
      },
      finish)

    function finish () {
      const will = that.will
      // _disconnected is set only if client is disconnected with a valid disconnect packet
      if (!that._disconnected && will) {
        // MQTT 5.0 Will Delay Interval: publish after the delay (capped by the
        // session expiry, since the will is sent no later than session end)
        // instead of immediately. A reconnect within the delay cancels it.
        const willDelay = (that.version === 5 && will.properties?.willDelayInterval) || 0
        const delay = Math.min(willDelay, that.sessionExpiryInterval)
        if (delay > 0) {
          that.broker.scheduleWill(that, will, delay)
        } else {
          that.broker.publishWill(that, will)
        }
      } else if (will) {
        // delete the persisted will even on clean disconnect https://docs.oasis-open.org/mqtt/mqtt/v3.1.1/os/mqtt-v3.1.1-os.html#_Toc385349232
        that.broker.persistence.delWill({
          id: that.id,
          brokerId: that.broker.id
        }).then(noop, noop)
      }

      that.will = null // this function might be called twice
      that._will = null

      that.connected = false
      that.connecting = false

      conn.removeAllListeners('error')
      conn.on('error', noop)

      if (that.broker.clients[that.id] && that._authorized) {
        that.broker.unregisterClient(that)
        // MQTT 5.0: keep / expire / wipe the session per its expiry interval.
        that.broker.scheduleSessionExpiry(that)
      }

      // clear up the drain event listeners
      that.conn.emit('drain')
      that.conn.removeAllListeners('drain')

      conn.destroy()

      if (typeof done === 'function') {
        done()
      }
    }
  }

  pause () {
    this._paused = true
  }

  resume () {
    this._paused = false
    this._nextBatch()
  }

  emptyOutgoingQueue (done) {
    const client = this
    const persistence = client.broker.persistence

    function filter (packet, enc, next) {
      persistence.outgoingClearMessageId(client, packet)
        .then(pkt => next(null, pkt), next)
    }

    pipeline(
      persistence.outgoingStream(client),
      through(filter),
      done
    )
  }
}

// Holds a live delivery during session resume. The publisher is not held up:
// a QoS 1/2 message is in the session's stored queue already (persistent
// session) or here (session ending with the connection), as when a PUBLISH
// waits for the outbound window.
function holdDelivery (client, deliver, packet, cb) {
  client._heldDeliveries.push([deliver, packet])
  setImmediate(cb)
}

function dedupe (client, packet) {
  const id = packet.brokerId
  if (!id) {
    return true
  }
  const duplicates = client.duplicates
  const counter = packet.brokerCounter
  const result = (duplicates[id] || 0) < counter
  if (result) {
    duplicates[id] = counter
  }
  return result
}

function writeQoS (err, client, packet) {
  if (err) {
    // is this right, or we should ignore thins?
    client.emit('error', err)
    // don't pass the error here or it will be thrown by mqemitter
    packet.writeCallback()
  } else if (publishTooLarge(client, packet)) {
    // [MQTT-3.1.2-25] too large for the client: discarded as if it had been
    // delivered and acknowledged, so it is not kept for a later resend either.
    if (client.clean) return packet.writeCallback()
    client.broker.persistence.outgoingClearMessageId(client, packet)
      .then(() => packet.writeCallback(), () => packet.writeCallback())
  } else {
    sendQoS(client, packet, packet.writeCallback)
  }
}

util.inherits(Client, EventEmitter)

function enqueue (packet) {
  const client = this.client
  client._parsingBatch++
  // already connected or it's the first packet
  if (client.connackSent || client._parsingBatch === 1) {
    handle(client, packet, client._nextBatch)
  } else {
    if (this._queue.length < client.broker.queueLimit) {
      this._queue.push(packet)
    } else {
      this.emit('error', new Error('Client queue limit reached'))
    }
  }
}

function dequeue () {
  const q = this._parser._queue
  if (q) {
    for (let i = 0, len = q.length; i < len; i++) {
      handle(this, q[i], this._nextBatch)
    }

    this._parser._queue = null
  }
}

function noop () {}

export default Client
