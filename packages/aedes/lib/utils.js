import { Transform } from 'stream'
import mqtt from 'mqtt-packet'

export function noop () { }

// MQTT 5.0 Request Problem Information [MQTT-3.1.2-29]: build the `properties`
// block carrying a Reason String for an outgoing ACK. Currently the PUBACK /
// PUBREC error path uses it; it's the single gate to route any other ACK's
// Reason String through as they adopt one. Returns undefined — so no properties
// block is emitted — for non-v5 clients, when there is no reason string, or when
// the client set Request Problem Information to false (it then must not receive a
// Reason String or User Properties on packets other than PUBLISH/CONNACK/DISCONNECT).
export function ackProperties (client, reasonString) {
  if (client.version !== 5 || !reasonString || client._requestProblemInformation === false) {
    return undefined
  }
  return { reasonString }
}

// Node clamps setTimeout delays above 2^31-1 ms (~24.8 days) to 1 ms, firing
// almost immediately. MQTT 5.0 session-expiry / will-delay intervals are uint32
// seconds (up to ~136 years), so a raw setTimeout would wipe long-lived sessions
// and fire delayed wills early.
export const MAX_TIMEOUT_MS = 2147483647

// Arms a timer that survives delays beyond setTimeout's cap by re-arming in
// chunks. Returns a handle whose clear() cancels whichever chunk is pending.
export function armLongTimer (delayMs, onFire) {
  // Guard against a stray non-finite/negative delay: setTimeout(NaN) coerces to
  // 0 and the re-arm math (NaN - NaN) would fire onFire immediately — a timer
  // that silently fires "now" instead of in the future is a bad failure mode.
  if (!Number.isFinite(delayMs)) {
    throw new TypeError('armLongTimer: delayMs must be a finite number')
  }
  delayMs = Math.max(0, delayMs)
  let timer
  const schedule = (remaining) => {
    const chunk = Math.min(remaining, MAX_TIMEOUT_MS)
    timer = setTimeout(() => {
      const left = remaining - chunk
      if (left > 0) {
        schedule(left)
      } else {
        onFire()
      }
    }, chunk)
    if (typeof timer.unref === 'function') timer.unref()
  }
  schedule(delayMs)
  return { clear () { clearTimeout(timer) } }
}

// MQTT 5.0 Maximum Packet Size, server to client [MQTT-3.1.2-24]: would this
// PUBLISH be larger than the client accepts? Only encodes the packet when the
// client set a maximum, so the common path costs nothing. The caller then
// discards it as if it had been delivered [MQTT-3.1.2-25] and emits
// 'publishTooLarge' (client, packet, size) so the drop is observable.
export function publishTooLarge (client, packet) {
  const max = client.maximumPacketSize
  if (!max) return false
  let size
  try {
    size = mqtt.generate(packet, { protocolVersion: client._wireVersion ?? 4 }).length
  } catch {
    return false // not encodable: write() reports it as before
  }
  if (size <= max) return false
  client.broker.emit('publishTooLarge', client, packet, size)
  return true
}

// MQTT remaining-length is a Variable Byte Integer encoded in 1-4 bytes; each
// added byte covers a 7-bit larger range. These are the value breakpoints at
// which the field grows by one byte. [MQTT-2.2.3]
const REMAINING_LENGTH_2_BYTES = 128 // 2^7
const REMAINING_LENGTH_3_BYTES = 16384 // 2^14
const REMAINING_LENGTH_4_BYTES = 2097152 // 2^21

// Total wire size of a packet from its parsed remaining-length: fixed header
// byte (1) + the remaining-length field bytes + the remaining length itself.
export function packetWireSize (remaining) {
  remaining = remaining || 0
  let lengthBytes = 1
  if (remaining >= REMAINING_LENGTH_2_BYTES) lengthBytes = 2
  if (remaining >= REMAINING_LENGTH_3_BYTES) lengthBytes = 3
  if (remaining >= REMAINING_LENGTH_4_BYTES) lengthBytes = 4
  return 1 + lengthBytes + remaining
}

// The routing libraries (mqemitter and the persistence trie) are backed by
// qlobber, which splits a topic on '/' and throws `too many words` once the
// number of levels exceeds its `max_words` limit (default 100). That throw is
// synchronous and uncaught, so a single deeply nested topic would crash the
// broker. We mirror qlobber's level count here (levels === split('/').length)
// to reject such topics before they reach qlobber. The '/' separator is the
// mqemitter/aedes-persistence default and is not configurable through aedes.
// Non-string topics have no level count; return 0 so the caller's own empty/
// invalid-topic checks handle them instead of this throwing a TypeError.
export function topicLevelCount (topic) {
  if (typeof topic !== 'string') return 0
  let levels = 1
  for (let i = 0; i < topic.length; i++) {
    if (topic.charCodeAt(i) === 47) levels++ // '/'
  }
  return levels
}

export function validateTopic (topic, message, maxTopicLevels) {
  if (!topic || topic.length === 0) { // [MQTT-3.8.3-3]
    return new Error('impossible to ' + message + ' to an empty topic')
  }

  // Reject deeply nested topics at the protocol boundary, before any
  // persistence side-effect or qlobber call. See topicLevelCount above.
  if (maxTopicLevels && topicLevelCount(topic) > maxTopicLevels) {
    return new Error('topic has too many levels')
  }

  const end = topic.length - 1
  const endMinus = end - 1
  const slashInPreEnd = endMinus > 0 && topic.charCodeAt(endMinus) !== 47

  for (let i = 0; i < topic.length; i++) {
    switch (topic.charCodeAt(i)) {
      case 35: { // #
        const notAtTheEnd = i !== end
        if (notAtTheEnd || slashInPreEnd) {
          return new Error('# is only allowed in ' + message + ' in the last position')
        }
        break
      }
      case 43: { // +
        const pastChar = i < end - 1 && topic.charCodeAt(i + 1) !== 47
        const preChar = i > 1 && topic.charCodeAt(i - 1) !== 47
        if (pastChar || preChar) {
          return new Error('+ is only allowed in ' + message + ' between /')
        }
        break
      }
    }
  }
}

export function through (transform) {
  return new Transform({
    objectMode: true,
    transform
  })
}

export function runFall (fns) {
  // run functions in fastfall style, only need the single argument function
  return function (arg, cb) {
    let i = 0
    const ctx = this
    function next (err, nextarg) {
      if (err || i === fns.length) {
        if (typeof cb === 'function') {
          cb.call(ctx, err, nextarg)
        }
        return
      }
      const fn = fns[i++]
      fn.call(ctx, nextarg, next)
    }
    next(null, arg)
  }
}

export function runSeries (state, actions, packet, done) {
  // runSeries runs functions in fastseries style
  done = (done || noop).bind(state)
  let i = 0
  function next (err) {
    if (err || i === actions.length) return done(err)
    actions[i++].call(state, packet, next)
  }
  next()
}

export function runParallel (state, fn, items, done) {
  // runParallel runs fn over every item in fastparallel style: fan them all
  // out concurrently and invoke done once — on the first error, or after all
  // have completed. Used instead of Promise.all(items.map(...)) so we don't
  // allocate a promise per item on the (control-path) subscribe/unsubscribe.
  done = (done || noop).bind(state)
  let remaining = items.length
  if (remaining === 0) return done()
  let finished = false
  function cb (err) {
    if (finished) return
    if (err) {
      finished = true
      return done(err)
    }
    if (--remaining === 0) {
      finished = true
      done()
    }
  }
  for (let i = 0; i < items.length; i++) {
    fn.call(state, items[i], cb)
  }
}

export function once (fn) {
  let called = false
  return function (err) {
    /* c8 ignore next -- guard against double-callback in async error paths */
    if (called) return
    called = true
    fn(err)
  }
}

/**
 * Async generator that groups items from a readable into batches.
 * Note: `fn(chunk)` is invoked eagerly for each item in the batch and
 * the generator yields an array of the results (often promises). Callers
 * must `await Promise.all(batch)` to apply backpressure before proceeding
 * to the next yielded batch.
 */
export async function * batch (readable, fn, batchSize) {
  let chunks = []
  for await (const chunk of readable) {
    chunks.push(fn(chunk))
    if (chunks.length === batchSize) {
      yield chunks
      chunks = []
    }
  }
  // if chunks is half full when the iterator ends
  if (chunks.length > 0) {
    yield chunks
  }
}

export const $SYS_PREFIX = '$SYS/'

// [MQTT-4.7] Does topic filter `filter` match topic name `topic`? Wildcards at
// the first level do not match topics starting with '$' [MQTT-4.7.2-1].
export function topicMatches (filter, topic) {
  if (filter === topic) return true
  const f = filter.split('/')
  const t = topic.split('/')
  if (topic.charCodeAt(0) === 36 && (f[0] === '+' || f[0] === '#')) return false
  for (let i = 0; i < f.length; i++) {
    if (f[i] === '#') return true
    if (i >= t.length) return false
    if (f[i] !== '+' && f[i] !== t[i]) return false
  }
  return f.length === t.length
}

// [MQTT-3.3.4-2] .. [MQTT-3.3.4-5] The client's non-shared subscriptions that
// match `topic`, folded into what the one copy sent to it must carry: the
// highest granted QoS and every Subscription Identifier. Cached per client
// until its subscriptions change (client._overlaps is reset by subscribe and
// unsubscribe); the cache is bounded so a stream of distinct topics cannot
// grow it without limit.
const OVERLAP_CACHE_MAX = 1024

export function overlappingSubscriptions (client, topic) {
  let cache = client._overlaps
  if (!cache) {
    cache = client._overlaps = new Map()
  }
  let found = cache.get(topic)
  if (found !== undefined) return found
  let qos = -1
  let sis = null
  for (const filter in client.subscriptions) {
    if (filter.startsWith('$share/') || !topicMatches(filter, topic)) continue
    const sub = client.subscriptions[filter]
    if (sub.qos > qos) qos = sub.qos
    if (sub.si !== undefined) {
      if (sis === null) sis = []
      sis.push(sub.si)
    }
  }
  found = qos < 0 ? null : { qos, si: sis === null ? undefined : (sis.length === 1 ? sis[0] : sis) }
  if (cache.size >= OVERLAP_CACHE_MAX) cache.clear()
  cache.set(topic, found)
  return found
}
