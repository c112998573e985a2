/**
 * The scripts send traffic only to this machine: every URL they are given or handed by
 * the server (a Location, a fileUrl) passes through here before a request is made.
 */

/** Host names that are this machine's loopback interface, as the URL parser spells them. */
const LOOPBACK = new Set(['127.0.0.1', '[::1]', 'localhost'])

/**
 * Whether `url` is plain HTTP to the loopback interface. Plain HTTP only: the server
 * speaks nothing else, so any other scheme is a mistake to stop on, not to follow.
 */
export function isLocalUrl (url: URL): boolean {
  return url.protocol === 'http:' && LOOPBACK.has(url.hostname)
}

/** `url` parsed, or an error when it is not plain HTTP to 127.0.0.1, ::1 or localhost. */
export function assertLocal (url: string | URL): URL {
  const u = new URL(url)
  if (!isLocalUrl(u)) throw new Error(`refusing a non-local URL: ${u.origin}`)
  return u
}
