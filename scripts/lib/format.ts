/** Number formats of the benchmark, soak and black-box reports. */

/** 2^20 bytes. */
export const MiB = 2 ** 20
/** 2^30 bytes. */
export const GiB = 2 ** 30

/**
 * A number in en-US style with exactly `digits` decimals. A measurement that could not be
 * taken (NaN, or a rate over zero time) prints as '–' rather than as a misleading number.
 */
export function fmt (n: number, digits = 0): string {
  return Number.isFinite(n)
    ? n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits })
    : '–'
}

/** Bytes as megabytes of 10^6 bytes, the unit throughput is quoted in. */
export function mb (bytes: number): number {
  return bytes / 1e6
}

/** A latency in milliseconds, with the precision that matters at its size. */
export function ms (v: number): string {
  return Number.isFinite(v) ? v.toFixed(v < 10 ? 2 : v < 100 ? 1 : 0) : '–'
}
