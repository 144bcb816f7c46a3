/**
 * Runs `step` until it succeeds, waiting a capped exponential backoff (backoff.ts) between failures. Gives up and
 * throws the last error after `attempts` tries, at once on an error `retryable` refuses (one that waiting does not
 * fix: a refused permission, a missing resource, bad configuration), and when `signal` aborts (also mid-wait).
 */
import { backoffDelay } from "./backoff.ts";
import { sleep } from "./sleep.ts";

export type RetryOptions = {
  /** Tries in all, the first included. */
  attempts: number;
  baseMs?: number;
  capMs?: number;
  retryable?: (error: unknown) => boolean;
  signal?: AbortSignal;
  /** Told of each failure that will be retried (after `attempt` failures so far, 1-based) and the wait before it. */
  onRetry?: (error: unknown, attempt: number, delayMs: number) => void;
};

export async function retry<T>(step: () => Promise<T>, options: RetryOptions): Promise<T> {
  const { attempts, baseMs, capMs, retryable = () => true, signal, onRetry } = options;
  for (let attempt = 1; ; attempt++) {
    try {
      return await step();
    } catch (error) {
      if (attempt >= attempts || !retryable(error) || signal?.aborted) throw error;
      const delayMs = backoffDelay(attempt - 1, baseMs, capMs);
      onRetry?.(error, attempt, delayMs);
      await sleep(delayMs, signal);
      if (signal?.aborted) throw error;
    }
  }
}
