/**
 * A small client of the admin HTTP API (docs/admin-api.md) for the CLI: one method per endpoint the
 * CLI uses, JSON in and out, errors as {@link AdminApiError} carrying the API's code and message.
 */
import type { ClusterView, DeadLetterView, MessageView, QueueView } from '../admin/service.js'
import type { GroupStats } from '../queue/admin.js'

/** A request that failed: an error answer of the API (`status` > 0), or no answer at all (`status` 0). */
export class AdminApiError extends Error {
  override readonly name = 'AdminApiError'
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message)
  }
}

export interface AdminClientOptions {
  /** e.g. `http://127.0.0.1:8080`; `/api/v1` is appended. */
  url: string
  token?: string
  /** Per request; a paced redrive may take minutes. */
  timeoutMs?: number
}

const DEFAULT_TIMEOUT_MS = 30_000
/** The API refuses redrives that would take longer than 240 s; leave room for the answer. */
const REDRIVE_TIMEOUT_MS = 300_000

export class AdminClient {
  private readonly base: string

  constructor(private readonly options: AdminClientOptions) {
    this.base = `${options.url.replace(/\/+$/, '')}/api/v1`
  }

  listQueues(): Promise<{ queues: QueueView[] }> {
    return this.call('GET', '/queues')
  }

  queue(name: string): Promise<QueueView> {
    return this.call('GET', `/queues/${encodeURIComponent(name)}`)
  }

  purge(name: string): Promise<{ purged: number }> {
    return this.call('POST', `/queues/${encodeURIComponent(name)}/purge`)
  }

  groups(name: string): Promise<{ groups: GroupStats[] }> {
    return this.call('GET', `/queues/${encodeURIComponent(name)}/groups`)
  }

  peek(name: string, limit?: number): Promise<{ messages: MessageView[] }> {
    const query = limit === undefined ? '' : `?limit=${limit}`
    return this.call('GET', `/queues/${encodeURIComponent(name)}/messages${query}`)
  }

  deadLetters(name: string, limit?: number): Promise<{ messages: DeadLetterView[] }> {
    const query = limit === undefined ? '' : `?limit=${limit}`
    return this.call('GET', `/queues/${encodeURIComponent(name)}/dead-letters${query}`)
  }

  redrive(
    name: string,
    body: { messageId?: string; limit?: number; ratePerSecond?: number },
  ): Promise<{ redriven: number }> {
    return this.call(
      'POST',
      `/queues/${encodeURIComponent(name)}/dead-letters/redrive`,
      body,
      REDRIVE_TIMEOUT_MS,
    )
  }

  cluster(): Promise<ClusterView> {
    return this.call('GET', '/cluster')
  }

  private async call<T>(method: string, path: string, body?: unknown, timeoutMs?: number): Promise<T> {
    const headers: Record<string, string> = { accept: 'application/json' }
    if (this.options.token !== undefined) headers.authorization = `Bearer ${this.options.token}`
    if (body !== undefined) headers['content-type'] = 'application/json'
    let res: Response
    try {
      res = await fetch(this.base + path, {
        method,
        headers,
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        signal: AbortSignal.timeout(timeoutMs ?? this.options.timeoutMs ?? DEFAULT_TIMEOUT_MS),
      })
    } catch (err) {
      // fetch says "fetch failed"; the reason (ECONNREFUSED, timeout, bad host) is in its cause.
      const cause = err instanceof Error && err.cause instanceof Error ? err.cause : err
      const reason = cause instanceof Error ? cause.message : String(cause)
      throw new AdminApiError(0, 'UNREACHABLE', `cannot reach ${this.options.url}: ${reason}`)
    }
    const text = await res.text()
    let parsed: unknown
    try {
      parsed = text === '' ? undefined : JSON.parse(text)
    } catch {
      parsed = undefined
    }
    if (!res.ok) {
      const error = (parsed as { error?: { code?: unknown; message?: unknown } } | undefined)?.error
      throw new AdminApiError(
        res.status,
        typeof error?.code === 'string' ? error.code : `HTTP_${res.status}`,
        typeof error?.message === 'string' ? error.message : `${method} ${path}: HTTP ${res.status}`,
      )
    }
    if (parsed === undefined && text !== '') {
      throw new AdminApiError(res.status, 'BAD_RESPONSE', `${method} ${path}: the answer is not JSON`)
    }
    return parsed as T
  }
}
