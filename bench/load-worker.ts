/**
 * One load-generator process (forked by bench/load.ts, IPC with the advanced serialization). It runs
 * the mqtt.js MQTT 5 clients of a job that the parent gives it: consumers subscribe and count every
 * message they receive by its index (and its latency), publishers send QoS 1 messages as fast as
 * their window allows or at a fixed rate. Loopback only; every loop is bounded by a count and by the
 * job's time limit.
 *
 * Payload layout: bytes 0-3 the message index (uint32 BE), bytes 4-11 the send time (float64 BE,
 * microseconds of the monotonic clock, which all processes on the machine share), then filler.
 */
import { randomBytes, randomFillSync } from 'node:crypto'
import mqtt, { type IClientOptions, type IClientPublishOptions, type MqttClient } from 'mqtt'
import type { ConsumerSpec, FromWorker, PublisherSpec, ToWorker, WorkerJob, WorkerResult } from './load.js'

const LOOPBACK = '127.0.0.1'
const HEADER_BYTES = 12

function nowUs(): number {
  return Number(process.hrtime.bigint() / 1000n)
}

function send(message: FromWorker): void {
  process.send!(message)
}

let clientCounter = 0

async function connect(port: number, options: IClientOptions = {}): Promise<MqttClient> {
  const client = mqtt.connect(`mqtt://${LOOPBACK}:${port}`, {
    clientId: `bench-${process.pid}-${clientCounter++}`,
    protocolVersion: 5,
    reconnectPeriod: 0,
    connectTimeout: 10_000,
    ...options,
  })
  await new Promise<void>((resolve, reject) => {
    client.once('connect', () => resolve())
    client.once('error', reject)
    client.once('close', () => reject(new Error('connection closed before CONNACK')))
  })
  return client
}

class Run {
  readonly counts: Uint8Array
  readonly latencies: Float64Array
  latencyCount = 0
  /** Deliveries done: received (and, for queue consumers, their `$ack` acknowledged). */
  done = 0
  lastDoneUs = 0
  published = 0
  refused = 0
  lastPublishUs = 0
  firstPublishUs = 0
  errors: string[] = []
  stopped = false
  readonly clients: MqttClient[] = []
  readonly starters: Array<() => Promise<void>> = []

  constructor(readonly job: WorkerJob) {
    this.counts = new Uint8Array(job.totalMessages)
    this.latencies = new Float64Array(job.recordLatency ? Math.min(job.totalMessages, 2_000_000) : 0)
  }

  error(text: string): void {
    if (this.errors.length < 10) this.errors.push(text)
  }

  async addConsumer(spec: ConsumerSpec): Promise<void> {
    const client = await connect(this.job.port, { properties: { receiveMaximum: spec.receiveMaximum } })
    this.clients.push(client)
    client.on('message', (_topic, payload, packet) => {
      if (payload.length < HEADER_BYTES) {
        this.error(`short payload (${payload.length} bytes)`)
        return
      }
      const index = payload.readUInt32BE(0)
      const receivedUs = nowUs()
      if (index < this.counts.length && this.counts[index]! < 255) this.counts[index]!++
      if (this.latencyCount < this.latencies.length) {
        this.latencies[this.latencyCount++] = receivedUs - payload.readDoubleBE(4)
      }
      if (spec.ackTopic === null) {
        this.done++
        this.lastDoneUs = receivedUs
        return
      }
      const id = packet.properties?.userProperties?.['message-id']
      client.publish(
        spec.ackTopic,
        '',
        { qos: 1, properties: { userProperties: { 'message-id': String(id) } } },
        (error) => {
          if (error) {
            this.error(`$ack refused: ${error.message}`)
            return
          }
          this.done++
          this.lastDoneUs = nowUs()
        },
      )
    })
    const granted = await client.subscribeAsync(spec.filter, {
      qos: 1,
      ...(spec.userProperties === undefined ? {} : { properties: { userProperties: spec.userProperties } }),
    })
    for (const grant of granted) {
      if (grant.qos > 2) throw new Error(`subscription to ${spec.filter} refused (${grant.qos})`)
    }
  }

  async addPublisher(spec: PublisherSpec): Promise<void> {
    const client = await connect(this.job.port)
    this.clients.push(client)
    this.starters.push(() => this.publish(client, spec))
  }

  /** Sends spec.count messages, at most spec.window unacknowledged, paced when spec.ratePerSec > 0. */
  private publish(client: MqttClient, spec: PublisherSpec): Promise<void> {
    // Random bytes (fresh per message with randomPayloads): LevelDB compresses its blocks, so repeated
    // payloads would make Spool's disk figures meaningless.
    const template = randomBytes(this.job.payloadBytes)
    return new Promise<void>((resolve) => {
      let sent = 0
      let settled = 0
      const startedUs = nowUs()
      if (this.firstPublishUs === 0 || startedUs < this.firstPublishUs) this.firstPublishUs = startedUs
      let timer: NodeJS.Timeout | null = null
      const finish = () => {
        if (timer !== null) clearTimeout(timer)
        timer = null
        resolve()
      }
      const options: IClientPublishOptions = { qos: 1 }
      const allowed = (): number => {
        if (spec.ratePerSec <= 0) return spec.count
        return Math.min(spec.count, Math.floor(((nowUs() - startedUs) / 1e6) * spec.ratePerSec) + 1)
      }
      const pump = (): void => {
        if (this.stopped || nowUs() > startedUs + this.job.timeLimitMs * 1000) return finish()
        const limit = allowed()
        while (sent < limit && sent - settled < spec.window) {
          const index = spec.first + sent++
          const payload = Buffer.from(template)
          if (this.job.randomPayloads) randomFillSync(payload, HEADER_BYTES)
          payload.writeUInt32BE(index, 0)
          payload.writeDoubleBE(nowUs(), 4)
          const topic = spec.spreadTopics > 0 ? `${spec.topic}/${index % spec.spreadTopics}` : spec.topic
          client.publish(topic, payload, options, (error) => {
            settled++
            if (error) {
              this.refused++
              this.error(`publish refused: ${error.message}`)
            } else this.published++
            this.lastPublishUs = nowUs()
            if (settled === spec.count) finish()
            else if (spec.ratePerSec <= 0) pump()
          })
        }
        if (spec.ratePerSec > 0 && sent < spec.count && timer === null) {
          timer = setTimeout(() => {
            timer = null
            pump()
          }, 1)
        }
      }
      if (spec.count === 0) finish()
      else pump()
    })
  }

  progress(): FromWorker {
    return { type: 'progress', done: this.done, settled: this.published + this.refused }
  }

  async finish(): Promise<WorkerResult> {
    this.stopped = true
    await Promise.all(
      this.clients.map((client) => client.endAsync(true).catch((error: Error) => this.error(error.message))),
    )
    return {
      counts: this.counts,
      latenciesUs: this.latencies.subarray(0, this.latencyCount),
      done: this.done,
      lastDoneUs: this.lastDoneUs,
      published: this.published,
      refused: this.refused,
      firstPublishUs: this.firstPublishUs,
      lastPublishUs: this.lastPublishUs,
      errors: this.errors,
    }
  }
}

let current: Run | null = null
let ticker: NodeJS.Timeout | null = null

async function onJob(job: WorkerJob): Promise<void> {
  const run = new Run(job)
  current = run
  for (const spec of job.consumers) await run.addConsumer(spec)
  for (const spec of job.publishers) await run.addPublisher(spec)
  send({ type: 'ready' })
}

process.on('message', (message: ToWorker) => {
  const fail = (error: unknown) =>
    send({ type: 'error', message: error instanceof Error ? error.message : String(error) })
  switch (message.type) {
    case 'job':
      onJob(message.job).catch(fail)
      break
    case 'go': {
      const run = current
      if (run === null) return fail(new Error('go without a job'))
      ticker = setInterval(() => send(run.progress()), 50)
      for (const start of run.starters) start().catch(fail)
      break
    }
    case 'stop': {
      const run = current
      if (ticker !== null) clearInterval(ticker)
      ticker = null
      current = null
      if (run === null) return send({ type: 'result', result: null })
      run
        .finish()
        .then((result) => send({ type: 'result', result }))
        .catch(fail)
      break
    }
    case 'exit':
      process.exit(0)
  }
})
process.on('disconnect', () => process.exit(0))
send({ type: 'hello' })
