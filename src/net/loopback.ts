import { isIP } from 'node:net'

/**
 * True for 127.0.0.0/8, ::1 and their IPv4-mapped IPv6 forms: the peers that anonymous MQTT access
 * and the token-less admin API trust by default.
 */
export function isLoopbackAddress(address: string | undefined): boolean {
  if (address === undefined) return false
  const v4 = address.startsWith('::ffff:') ? address.slice('::ffff:'.length) : address
  if (isIP(v4) === 4) return v4.startsWith('127.')
  return address === '::1'
}
