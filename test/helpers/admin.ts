/**
 * Helpers for the admin API tests: one JSON request against `/api/v1` with or without a bearer token,
 * answered as status + parsed body, plus the error body's code.
 */
export interface ApiResponse<T = unknown> {
  status: number
  headers: Headers
  /** Parsed JSON, or undefined for an empty body (204). */
  body: T
}

export interface ApiErrorBody {
  error: { code: string; message: string }
}

/** A 32-character token, valid for `admin.token`. */
export const TEST_ADMIN_TOKEN = 'test-admin-token-0123456789abcdef'

export interface CallOptions {
  token?: string
  /** Sent as JSON. */
  body?: unknown
  /** Sent as is (malformed JSON, oversized bodies). */
  rawBody?: string
}

/** `method path` against `http://host:port/api/v1` + `path`. */
export async function callApi<T = unknown>(
  base: string,
  method: string,
  path: string,
  options: CallOptions = {},
): Promise<ApiResponse<T>> {
  const headers: Record<string, string> = {}
  if (options.token !== undefined) headers.authorization = `Bearer ${options.token}`
  let body: string | undefined = options.rawBody
  if (options.body !== undefined) {
    body = JSON.stringify(options.body)
    headers['content-type'] = 'application/json'
  }
  const res = await fetch(`${base}/api/v1${path}`, {
    method,
    headers,
    ...(body === undefined ? {} : { body }),
  })
  const text = await res.text()
  return { status: res.status, headers: res.headers, body: (text === '' ? undefined : JSON.parse(text)) as T }
}

/** The `error.code` of an error response (fails the test if there is none). */
export function errorCode(response: ApiResponse): string {
  const body = response.body as Partial<ApiErrorBody> | undefined
  if (body?.error?.code === undefined) {
    throw new Error(`expected an error body, got ${response.status} ${JSON.stringify(response.body)}`)
  }
  return body.error.code
}

/** A queue name as one URL path segment: `tasks/images` -> `tasks%2Fimages`. */
export function seg(name: string): string {
  return encodeURIComponent(name)
}
