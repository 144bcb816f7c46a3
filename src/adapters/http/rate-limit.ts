/**
 * Token buckets by key (a user id, a client IP), in this process's memory: each key may spend `burst` at once
 * and gets `rate.count` back per `rate.perMs`, continuously. Memory is bounded: at most `maxKeys` buckets; a
 * bucket that has refilled completely is dropped (it is the same as no bucket), checked on every use on the
 * least recently used ones; past the cap the least recently used bucket is dropped even if not full.
 * Pure apart from the clock, which is given.
 */
/** `count` tokens per `perMs` milliseconds (RATE_LIMIT, AUTH_FAILURE_LIMIT: parsed in config.ts). */
export type Rate = { count: number; perMs: number };

type Bucket = { tokens: number; at: number };

export type Admission = { ok: true } | { ok: false; retryAfterSeconds: number };

export class TokenBuckets {
  private readonly buckets = new Map<string, Bucket>();
  private readonly burst: number;

  constructor(
    private readonly rate: Rate,
    private readonly options: { maxKeys?: number; now?: () => number; burst?: number } = {},
  ) {
    this.burst = options.burst ?? rate.count;
  }

  /**
   * Tokens earned in `ms`. Multiplied before dividing: `ms * (count / perMs)` leaves a full period a hair short
   * of `count` (1 / 31483 × 31483 < 1), which refused a client that had waited exactly long enough.
   */
  private refill(ms: number): number {
    return (ms * this.rate.count) / this.rate.perMs;
  }

  get size(): number {
    return this.buckets.size;
  }

  private now(): number {
    return this.options.now ? this.options.now() : performance.now();
  }

  /** Spends one token of `key`, or says how long until one is back (whole seconds, at least 1). */
  take(key: string): Admission {
    const now = this.now();
    const bucket = this.current(key, now);
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1;
      return { ok: true };
    }
    return { ok: false, retryAfterSeconds: this.secondsUntilToken(bucket) };
  }

  /** Whether `key` has a token left, without spending it (a blocked client IP is refused before anything else). */
  check(key: string): Admission {
    const bucket = this.buckets.get(key);
    if (!bucket) return { ok: true };
    const now = this.now();
    const tokens = Math.min(this.burst, bucket.tokens + this.refill(now - bucket.at));
    if (tokens >= 1) return { ok: true };
    return { ok: false, retryAfterSeconds: this.secondsUntilToken({ tokens, at: now }) };
  }

  private secondsUntilToken(bucket: Bucket): number {
    // (less a hair, so that floating-point dust does not round 1.0000001 s up to 2)
    return Math.max(1, Math.ceil(((1 - bucket.tokens) * this.rate.perMs) / this.rate.count / 1000 - 1e-6));
  }

  /** The key's bucket refilled up to now, moved to the most recently used end; sweeps idle ones. */
  private current(key: string, now: number): Bucket {
    let bucket = this.buckets.get(key);
    if (bucket) {
      bucket.tokens = Math.min(this.burst, bucket.tokens + this.refill(now - bucket.at));
      bucket.at = now;
      this.buckets.delete(key);
    } else {
      bucket = { tokens: this.burst, at: now };
    }
    this.buckets.set(key, bucket);
    this.sweep(now);
    return bucket;
  }

  /** Drops up to two least recently used buckets that are full again, and anything over the cap. */
  private sweep(now: number): void {
    const fullAfterMs = (this.burst * this.rate.perMs) / this.rate.count;
    let looked = 0;
    for (const [key, bucket] of this.buckets) {
      if (looked++ >= 2) break;
      if (now - bucket.at >= fullAfterMs) this.buckets.delete(key);
      else break; // the rest were used more recently
    }
    const maxKeys = this.options.maxKeys ?? 100_000;
    while (this.buckets.size > maxKeys) {
      const oldest = this.buckets.keys().next().value;
      if (oldest === undefined) break;
      this.buckets.delete(oldest);
    }
  }
}
