/**
 * Snowflake ids: 41 bits of milliseconds since EPOCH_MS, 10 bits of worker id, 12 bits of per-millisecond counter.
 * They fit a signed 64-bit column (the top bit stays 0 until 2093) and travel as decimal strings.
 *
 * Monotonic and unique per worker even when the wall clock steps back: the generator never lets its logical
 * time go below the last time it used. If the clock jumps back, ids keep coming from the last millisecond (and
 * then "borrow" following milliseconds when the counter overflows) until the real clock catches up — no
 * blocking, no duplicates. Uniqueness across processes comes from distinct worker ids.
 */
export const EPOCH_MS = 1_704_067_200_000; // 2024-01-01T00:00:00Z
export const MAX_WORKER_ID = 1023;
const COUNTER_BITS = 12n;
const WORKER_BITS = 10n;
const MAX_COUNTER = (1 << Number(COUNTER_BITS)) - 1;

export type Clock = () => number;

export class SnowflakeGenerator {
  private lastMs = -1;
  private counter = 0;
  private readonly workerBits: bigint;

  constructor(
    readonly workerId: number,
    private readonly clock: Clock = Date.now,
  ) {
    if (!Number.isInteger(workerId) || workerId < 0 || workerId > MAX_WORKER_ID) {
      throw new RangeError(`worker id must be an integer 0-${MAX_WORKER_ID}, got ${workerId}`);
    }
    this.workerBits = BigInt(workerId) << COUNTER_BITS;
  }

  next(): bigint {
    const now = this.clock() - EPOCH_MS;
    if (now > this.lastMs) {
      this.lastMs = now;
      this.counter = 0;
    } else if (this.counter < MAX_COUNTER) {
      // Same millisecond, or the clock went back: stay on the last logical millisecond.
      this.counter++;
    } else {
      // Counter exhausted: move the logical clock forward one millisecond rather than wait or repeat.
      this.lastMs++;
      this.counter = 0;
    }
    return (BigInt(this.lastMs) << (COUNTER_BITS + WORKER_BITS)) | this.workerBits | BigInt(this.counter);
  }
}

/** Splits an id into its parts; used by tests and operators reading ids. */
export function decodeSnowflake(id: bigint): { timeMs: number; workerId: number; counter: number } {
  return {
    timeMs: Number(id >> (COUNTER_BITS + WORKER_BITS)) + EPOCH_MS,
    workerId: Number((id >> COUNTER_BITS) & BigInt(MAX_WORKER_ID)),
    counter: Number(id & BigInt(MAX_COUNTER)),
  };
}

const MAX_INT64 = (1n << 63n) - 1n;
const DIGITS = /^[1-9][0-9]{0,18}$/;

/** Parses a positive signed-64-bit id from its decimal string form; null when it is not one. */
export function parsePositiveId(value: unknown): bigint | null {
  if (typeof value !== "string" || !DIGITS.test(value)) return null;
  const id = BigInt(value);
  return id <= MAX_INT64 ? id : null;
}
