/** Small numeric helpers shared by the load generators and the report. */

/** The p-th percentile (0–100) of values sorted ascending, nearest-rank; NaN when empty. */
export function percentile(sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))] as number;
}

export function sortedCopy(values: ArrayLike<number>): Float64Array {
  return Float64Array.from(values).sort();
}

export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  if (sorted.length === 0) return Number.NaN;
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2
    ? (sorted[mid] as number)
    : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}

/** Milliseconds since the epoch with sub-millisecond precision, comparable across processes on one machine. */
export function wallMs(): number {
  return performance.timeOrigin + performance.now();
}

export function round(value: number, digits = 2): number {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}

/** Latency percentiles of the samples that fell in one interval; NaN (null in JSON) when none did. */
export type LatencyInterval = { atS: number; samples: number; p50Ms: number; p99Ms: number; maxMs: number };

/**
 * Samples ([when, latency] in ms) cut into intervals of `intervalMs` from `originMs`, one entry per interval up to
 * the last sample's, empty ones included so that a chart can show the gap. `atS` is the interval's end, in
 * seconds from the origin. Holds one copy of the latencies while they are bucketed, no more than the input.
 */
export function latencyIntervals(
  samples: readonly (readonly [number, number])[],
  originMs: number,
  intervalMs: number,
): LatencyInterval[] {
  const buckets: number[][] = [];
  for (const [at, latency] of samples) {
    const index = Math.max(0, Math.floor((at - originMs) / intervalMs));
    while (buckets.length <= index) buckets.push([]);
    (buckets[index] as number[]).push(latency);
  }
  return buckets.map((values, i) => {
    const sorted = sortedCopy(values);
    return {
      atS: ((i + 1) * intervalMs) / 1000,
      samples: sorted.length,
      p50Ms: percentile(sorted, 50),
      p99Ms: percentile(sorted, 99),
      maxMs: sorted.length ? (sorted[sorted.length - 1] as number) : Number.NaN,
    };
  });
}

/** The end-to-end phase's interval: a second, longer for long windows so a run never has more than ~120 of them. */
export function e2eIntervalMs(durationMs: number): number {
  return Math.max(1_000, Math.ceil(durationMs / 120 / 1_000) * 1_000);
}
