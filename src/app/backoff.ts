/**
 * Capped exponential backoff with equal jitter: the ceiling doubles per attempt (baseMs, 2·baseMs, … up to capMs)
 * and the delay is drawn from [ceiling/2, ceiling). Equal, not full, jitter on purpose: the random half spreads
 * processes that failed together, and the fixed half keeps every retry at least ceiling/2 away, so none comes
 * back at ~0 ms to hammer a dependency that is down.
 */
export function backoffDelay(attempt: number, baseMs = 100, capMs = 5_000): number {
  const ceiling = Math.min(capMs, baseMs * 2 ** Math.min(attempt, 16));
  return Math.floor(ceiling / 2 + Math.random() * (ceiling / 2));
}

// Kept for the importers that take both from here (src/app/sequencer.ts); new code imports ./sleep.ts.
export { sleep } from "./sleep.ts";
