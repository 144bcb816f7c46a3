/** Backoff bounds (equal jitter under a cap), the abortable sleep, and retry's stopping rules. */
import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { backoffDelay } from "../../src/app/backoff.ts";
import { retry } from "../../src/app/retry.ts";
import { sleep } from "../../src/app/sleep.ts";

describe("backoffDelay", () => {
  test("property: between half the ceiling and the ceiling, where the ceiling is min(cap, base·2^attempt)", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 100 }),
        fc.integer({ min: 1, max: 1_000 }),
        fc.integer({ min: 1, max: 60_000 }),
        (attempt, baseMs, capMs) => {
          const ceiling = Math.min(capMs, baseMs * 2 ** Math.min(attempt, 16));
          const delay = backoffDelay(attempt, baseMs, capMs);
          expect(Number.isInteger(delay)).toBe(true);
          expect(delay).toBeGreaterThanOrEqual(Math.floor(ceiling / 2));
          expect(delay).toBeLessThanOrEqual(ceiling);
        },
      ),
      { numRuns: 2_000 },
    );
  });

  test("doubles per attempt up to the cap, and never waits less than half of it (equal jitter)", () => {
    const draws = (attempt: number) => Array.from({ length: 200 }, () => backoffDelay(attempt, 100, 5_000));
    expect(Math.max(...draws(0))).toBeLessThanOrEqual(100);
    expect(Math.min(...draws(3))).toBeGreaterThanOrEqual(400);
    expect(Math.max(...draws(3))).toBeLessThanOrEqual(800);
    expect(Math.min(...draws(40))).toBeGreaterThanOrEqual(2_500);
    expect(Math.max(...draws(40))).toBeLessThanOrEqual(5_000);
  });
});

describe("sleep", () => {
  test("waits the time given", async () => {
    const started = performance.now();
    await sleep(30);
    expect(performance.now() - started).toBeGreaterThanOrEqual(25);
  });

  test("ends at once when its signal aborts, or was aborted before", async () => {
    const controller = new AbortController();
    const started = performance.now();
    setTimeout(() => controller.abort(), 10);
    await sleep(10_000, controller.signal);
    await sleep(10_000, controller.signal);
    expect(performance.now() - started).toBeLessThan(1_000);
  });
});

describe("retry", () => {
  test("retries until the step succeeds, telling of each retried failure", async () => {
    let calls = 0;
    const told: number[] = [];
    const value = await retry(
      async () => {
        calls++;
        if (calls < 3) throw new Error(`failure ${calls}`);
        return "done";
      },
      { attempts: 5, baseMs: 1, capMs: 2, onRetry: (_error, attempt) => told.push(attempt) },
    );
    expect(value).toBe("done");
    expect(calls).toBe(3);
    expect(told).toEqual([1, 2]);
  });

  test("throws the last error after the attempts are used up", async () => {
    let calls = 0;
    const run = retry(
      async () => {
        calls++;
        throw new Error(`failure ${calls}`);
      },
      { attempts: 3, baseMs: 1, capMs: 2 },
    );
    await expect(run).rejects.toThrow("failure 3");
    expect(calls).toBe(3);
  });

  test("throws at once an error it may not retry", async () => {
    let calls = 0;
    const run = retry(
      async () => {
        calls++;
        throw new TypeError("refused");
      },
      { attempts: 10, baseMs: 1, capMs: 2, retryable: (error) => !(error instanceof TypeError) },
    );
    await expect(run).rejects.toThrow("refused");
    expect(calls).toBe(1);
  });

  test("stops when its signal aborts, also in the middle of a wait", async () => {
    const controller = new AbortController();
    let calls = 0;
    const started = performance.now();
    const run = retry(
      async () => {
        calls++;
        if (calls === 1) setTimeout(() => controller.abort(), 10);
        throw new Error(`failure ${calls}`);
      },
      { attempts: 10, baseMs: 10_000, capMs: 10_000, signal: controller.signal },
    );
    await expect(run).rejects.toThrow("failure 1");
    expect(calls).toBe(1);
    expect(performance.now() - started).toBeLessThan(1_000);
  });
});
