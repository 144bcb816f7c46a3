/**
 * The token buckets behind RATE_LIMIT and AUTH_FAILURE_LIMIT (src/adapters/http/rate-limit.ts), on a fake clock;
 * the aggregated audit of refusals (src/adapters/http/audit.ts); and how the two variables are read.
 */
import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { SecurityAudit } from "../../src/adapters/http/audit.ts";
import { TokenBuckets } from "../../src/adapters/http/rate-limit.ts";
import { ConfigError, loadConfig } from "../../src/config.ts";
import type { Logger } from "../../src/logger.ts";

function clock() {
  let now = 0;
  return { now: () => now, advance: (ms: number) => (now += ms) };
}

describe("TokenBuckets", () => {
  test("a burst of `count` passes, the next is refused with Retry-After ≥ 1 s; one token back per count/period", () => {
    const c = clock();
    const buckets = new TokenBuckets({ count: 50, perMs: 1_000 }, { now: c.now });
    for (let i = 0; i < 50; i++) expect(buckets.take("u")).toEqual({ ok: true });
    expect(buckets.take("u")).toEqual({ ok: false, retryAfterSeconds: 1 });
    c.advance(20); // 50/s → one token per 20 ms
    expect(buckets.take("u")).toEqual({ ok: true });
    expect(buckets.take("u").ok).toBe(false);
    // Others are not affected.
    expect(buckets.take("v")).toEqual({ ok: true });
  });

  test("Retry-After is the whole seconds until a token is back (20/1m: 3 s)", () => {
    const c = clock();
    const buckets = new TokenBuckets({ count: 20, perMs: 60_000 }, { now: c.now });
    for (let i = 0; i < 20; i++) buckets.take("ip");
    expect(buckets.take("ip")).toEqual({ ok: false, retryAfterSeconds: 3 });
    expect(buckets.check("ip")).toEqual({ ok: false, retryAfterSeconds: 3 });
    c.advance(2_000);
    expect(buckets.check("ip")).toEqual({ ok: false, retryAfterSeconds: 1 });
    c.advance(1_000);
    expect(buckets.check("ip")).toEqual({ ok: true });
    expect(buckets.check("never-seen")).toEqual({ ok: true });
  });

  test("a client that waits exactly one period gets its token back (no floating-point shortfall)", () => {
    // Found by the property below (seed -388666787): 1 token per 31 483 ms; 31 483 × (1 / 31 483) < 1.
    const c = clock();
    const buckets = new TokenBuckets({ count: 1, perMs: 31_483 }, { now: c.now });
    expect(buckets.take("k")).toEqual({ ok: true });
    c.advance(31_483);
    expect(buckets.take("k")).toEqual({ ok: true });
  });

  test("property: over any window, admitted ≤ burst + rate × window, and a patient client is never refused", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 100 }),
        fc.integer({ min: 10, max: 60_000 }),
        fc.array(fc.integer({ min: 0, max: 200 }), { minLength: 1, maxLength: 300 }),
        (count, perMs, gaps) => {
          const c = clock();
          const buckets = new TokenBuckets({ count, perMs }, { now: c.now });
          let admitted = 0;
          for (const gap of gaps) {
            c.advance(gap);
            const answer = buckets.take("k");
            if (answer.ok) admitted++;
            else
              expect(Number.isInteger(answer.retryAfterSeconds) && answer.retryAfterSeconds >= 1).toBe(true);
          }
          expect(admitted).toBeLessThanOrEqual(count + Math.floor((c.now() * count) / perMs) + 1);
          // After a full period of silence the whole burst is available again.
          c.advance(perMs);
          for (let i = 0; i < count; i++) expect(buckets.take("k").ok).toBe(true);
        },
      ),
      { numRuns: 300 },
    );
  });

  test("memory is bounded: at most maxKeys buckets, idle (refilled) ones dropped as others are used", () => {
    const c = clock();
    const buckets = new TokenBuckets({ count: 5, perMs: 1_000 }, { now: c.now, maxKeys: 100 });
    for (let i = 0; i < 10_000; i++) buckets.take(`k${i}`);
    expect(buckets.size).toBe(100);
    // After they have all refilled, each use sweeps up to two idle ones.
    c.advance(1_000);
    for (let i = 0; i < 60; i++) buckets.take(`fresh${i}`);
    expect(buckets.size).toBeLessThanOrEqual(100 - 60 + 60);
    c.advance(1_000);
    for (let i = 0; i < 100; i++) buckets.take("one");
    expect(buckets.size).toBeLessThan(10);
  });
});

describe("SecurityAudit", () => {
  function logger() {
    const lines: { msg: string; fields: Record<string, unknown> }[] = [];
    const log: Logger = {
      info: () => {},
      warn: (msg, fields) => lines.push({ msg, fields: fields ?? {} }),
      error: () => {},
      child: () => log,
    };
    return { log, lines };
  }

  test("a flood becomes one line: counts by kind, the top 5 offenders, counters told of each", () => {
    const { log, lines } = logger();
    const told: string[] = [];
    const audit = new SecurityAudit(log, 60_000, (kind) => told.push(kind));
    for (let i = 0; i < 10_000; i++) audit.record("unauthenticated", `ip:10.0.0.${i % 7}`);
    for (let i = 0; i < 500; i++) audit.record("rate_limited", "user:42");
    audit.record("forbidden", "user:7");
    expect(lines).toHaveLength(0);
    audit.flush();
    expect(lines).toHaveLength(1);
    const fields = lines[0]?.fields as {
      counts: Record<string, number>;
      top: { offender: string; count: number }[];
    };
    expect(fields.counts).toEqual({ unauthenticated: 10_000, forbidden: 1, rate_limited: 500 });
    expect(fields.top).toHaveLength(5);
    expect(fields.top.map((t) => t.count)).toEqual([...fields.top.map((t) => t.count)].sort((a, b) => b - a));
    expect(fields.top[0]?.count).toBe(1_429);
    expect(told).toHaveLength(10_501);
    // Nothing new: no line.
    audit.flush();
    expect(lines).toHaveLength(1);
    audit.stop();
  });

  test("the timer writes one line per interval, and stops when there is nothing to say", async () => {
    const { log, lines } = logger();
    const audit = new SecurityAudit(log, 50);
    for (let i = 0; i < 1_000; i++) audit.record("unauthenticated", "ip:1.2.3.4");
    await Bun.sleep(180);
    expect(lines).toHaveLength(1);
    expect(lines[0]?.fields.top).toEqual([{ offender: "ip:1.2.3.4", count: 1_000 }]);
    audit.stop();
  });

  test("many distinct offenders: memory capped, the rest summed", () => {
    const { log, lines } = logger();
    const audit = new SecurityAudit(log, 60_000);
    for (let i = 0; i < 20_000; i++) audit.record("unauthenticated", `ip:${i}`);
    audit.flush();
    const fields = lines[0]?.fields as { total: number; othersCount: number };
    expect(fields.total).toBe(20_000);
    expect(fields.othersCount).toBe(10_000);
    audit.stop();
  });
});

describe("RATE_LIMIT, AUTH_FAILURE_LIMIT", () => {
  test("defaults 50/1s and 20/1m; 'off'; any duration unit", () => {
    expect(loadConfig({}).rateLimit).toEqual({ count: 50, perMs: 1_000 });
    expect(loadConfig({}).authFailureLimit).toEqual({ count: 20, perMs: 60_000 });
    expect(loadConfig({ RATE_LIMIT: "off" }).rateLimit).toBeNull();
    expect(loadConfig({ AUTH_FAILURE_LIMIT: "off" }).authFailureLimit).toBeNull();
    expect(loadConfig({ RATE_LIMIT: "100/500ms" }).rateLimit).toEqual({ count: 100, perMs: 500 });
    expect(loadConfig({ RATE_LIMIT: "1000/1h" }).rateLimit).toEqual({ count: 1_000, perMs: 3_600_000 });
  });

  for (const bad of [
    "50",
    "50/s",
    "0/1s",
    "-1/1s",
    "50/0s",
    "1.5/1s",
    "50/1d",
    "fifty/1s",
    "50 / 1s",
    "on",
  ]) {
    test(`RATE_LIMIT=${JSON.stringify(bad)} is refused naming the variable`, () => {
      expect(() => loadConfig({ RATE_LIMIT: bad })).toThrow(ConfigError);
      expect(() => loadConfig({ RATE_LIMIT: bad })).toThrow(/^RATE_LIMIT must be/);
    });
  }
});
