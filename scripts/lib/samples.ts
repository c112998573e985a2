/** Latency samples and their percentiles, for the benchmark and soak scripts. */

/** The p-quantile (0..1) of an ascending array, nearest-rank; NaN when empty. */
function percentile (sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return Number.NaN
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))]
}

/** A growable array of doubles (latency samples can run into the millions). */
export class Samples {
  private data = new Float64Array(1 << 14)
  length = 0
  push (v: number): void {
    if (this.length === this.data.length) {
      const bigger = new Float64Array(this.data.length * 2)
      bigger.set(this.data)
      this.data = bigger
    }
    this.data[this.length++] = v
  }

  at (i: number): number { return this.data[i] }

  /** A sorted copy of the samples. */
  sorted (): Float64Array { return this.data.slice(0, this.length).sort() }
}

/** Count, median, 99th percentile and maximum of ascending samples (NaN where empty). */
export function summarize (sorted: Float64Array): { count: number, p50: number, p99: number, max: number } {
  return {
    count: sorted.length,
    p50: percentile(sorted, 0.5),
    p99: percentile(sorted, 0.99),
    max: sorted.length ? sorted[sorted.length - 1] : Number.NaN,
  }
}
