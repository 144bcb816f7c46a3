import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import {
  type Clock,
  decodeSnowflake,
  EPOCH_MS,
  MAX_WORKER_ID,
  parsePositiveId,
  SnowflakeGenerator,
} from "../../src/domain/ids.ts";

const MAX_INT64 = (1n << 63n) - 1n;
const T0 = Date.UTC(2026, 0, 15, 12, 0, 0);

/** A clock the test moves by hand. */
function manualClock(start: number): { clock: Clock; set: (ms: number) => void } {
  let now = start;
  return { clock: () => now, set: (ms) => (now = ms) };
}

function expectStrictlyIncreasing(ids: readonly bigint[]): void {
  for (let i = 1; i < ids.length; i++) {
    const prev = ids[i - 1] as bigint;
    const cur = ids[i] as bigint;
    if (cur <= prev) throw new Error(`id #${i} (${cur}) is not greater than id #${i - 1} (${prev})`);
  }
}

describe("SnowflakeGenerator", () => {
  test("10k calls in the same millisecond are strictly increasing and unique", () => {
    const gen = new SnowflakeGenerator(7, () => T0);
    const ids = Array.from({ length: 10_000 }, () => gen.next());
    expectStrictlyIncreasing(ids);
    expect(new Set(ids).size).toBe(10_000);
  });

  test("first id of a millisecond encodes that millisecond, the worker and counter 0", () => {
    const gen = new SnowflakeGenerator(5, () => T0);
    const first = decodeSnowflake(gen.next());
    expect(first).toEqual({ timeMs: T0, workerId: 5, counter: 0 });
    const second = decodeSnowflake(gen.next());
    expect(second).toEqual({ timeMs: T0, workerId: 5, counter: 1 });
  });

  test("a new millisecond resets the counter", () => {
    const c = manualClock(T0);
    const gen = new SnowflakeGenerator(1, c.clock);
    gen.next();
    gen.next();
    c.set(T0 + 1);
    expect(decodeSnowflake(gen.next())).toEqual({ timeMs: T0 + 1, workerId: 1, counter: 0 });
  });

  test("frozen clock past 4096 ids in one ms borrows the next millisecond", () => {
    const gen = new SnowflakeGenerator(3, () => T0);
    const ids = Array.from({ length: 4096 * 3 + 10 }, () => gen.next());
    expectStrictlyIncreasing(ids);
    expect(new Set(ids).size).toBe(ids.length);
    expect(decodeSnowflake(ids[4095] as bigint)).toEqual({ timeMs: T0, workerId: 3, counter: 4095 });
    expect(decodeSnowflake(ids[4096] as bigint)).toEqual({ timeMs: T0 + 1, workerId: 3, counter: 0 });
    expect(decodeSnowflake(ids[8192] as bigint)).toEqual({ timeMs: T0 + 2, workerId: 3, counter: 0 });
    for (const id of ids) expect(decodeSnowflake(id).workerId).toBe(3);
  });

  test("after borrowing, the real clock catching up does not repeat ids", () => {
    const c = manualClock(T0);
    const gen = new SnowflakeGenerator(2, c.clock);
    const ids: bigint[] = [];
    for (let i = 0; i < 4096 + 5; i++) ids.push(gen.next()); // now logically at T0+1, counter 4
    c.set(T0 + 1); // the wall clock reaches the borrowed millisecond
    for (let i = 0; i < 10; i++) ids.push(gen.next());
    c.set(T0 + 2);
    for (let i = 0; i < 10; i++) ids.push(gen.next());
    expectStrictlyIncreasing(ids);
  });

  test("clock stepping back 1000 ms keeps ids monotonic and unique", () => {
    const c = manualClock(T0);
    const gen = new SnowflakeGenerator(9, c.clock);
    const ids: bigint[] = [];
    for (let i = 0; i < 100; i++) ids.push(gen.next());
    c.set(T0 - 1000);
    for (let i = 0; i < 10_000; i++) ids.push(gen.next()); // also overflows while the clock is behind
    c.set(T0 - 500);
    for (let i = 0; i < 100; i++) ids.push(gen.next());
    c.set(T0 + 1000);
    for (let i = 0; i < 100; i++) ids.push(gen.next());
    expectStrictlyIncreasing(ids);
    expect(new Set(ids).size).toBe(ids.length);
    // While the clock was behind, no id claimed a time earlier than the last one used.
    for (const id of ids) expect(decodeSnowflake(id).timeMs).toBeGreaterThanOrEqual(T0);
    // Once the clock is well ahead again, ids follow it.
    expect(decodeSnowflake(ids[ids.length - 1] as bigint).timeMs).toBe(T0 + 1000);
  });

  test("property: any clock sequence (forward, back, frozen) gives strictly increasing ids", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: MAX_WORKER_ID }),
        fc.array(fc.tuple(fc.integer({ min: -2000, max: 2000 }), fc.integer({ min: 1, max: 5000 })), {
          minLength: 1,
          maxLength: 12,
        }),
        (worker, steps) => {
          const c = manualClock(T0);
          const gen = new SnowflakeGenerator(worker, c.clock);
          let last = -1n;
          let count = 0;
          for (const [delta, calls] of steps) {
            c.set(T0 + delta);
            for (let i = 0; i < calls; i++) {
              const id = gen.next();
              if (id <= last) return false;
              if (id > MAX_INT64 || id <= 0n) return false;
              if (decodeSnowflake(id).workerId !== worker) return false;
              last = id;
              count++;
            }
          }
          return count > 0;
        },
      ),
      { numRuns: 100 },
    );
  });

  test("worker id is embedded and recovered for every worker in range", () => {
    for (const worker of [0, 1, 2, 511, 512, 1022, MAX_WORKER_ID]) {
      const gen = new SnowflakeGenerator(worker, () => T0);
      for (let i = 0; i < 3; i++) {
        const decoded = decodeSnowflake(gen.next());
        expect(decoded.workerId).toBe(worker);
        expect(decoded.timeMs).toBe(T0);
        expect(decoded.counter).toBe(i);
      }
    }
  });

  test("ids from two workers at the same instant differ", () => {
    const a = new SnowflakeGenerator(1, () => T0);
    const b = new SnowflakeGenerator(2, () => T0);
    const idsA = Array.from({ length: 5000 }, () => a.next());
    const idsB = Array.from({ length: 5000 }, () => b.next());
    const all = new Set([...idsA, ...idsB]);
    expect(all.size).toBe(10_000);
    expect(idsA[0]).not.toBe(idsB[0] as bigint);
  });

  test("property: distinct workers never collide for the same clock", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: MAX_WORKER_ID }),
        fc.integer({ min: 0, max: MAX_WORKER_ID }),
        fc.integer({ min: EPOCH_MS, max: Date.UTC(2090, 0, 1) }),
        fc.integer({ min: 1, max: 300 }),
        (w1, w2, now, n) => {
          fc.pre(w1 !== w2);
          const a = new SnowflakeGenerator(w1, () => now);
          const b = new SnowflakeGenerator(w2, () => now);
          const seen = new Set<bigint>();
          for (let i = 0; i < n; i++) {
            seen.add(a.next());
            seen.add(b.next());
          }
          return seen.size === 2 * n;
        },
      ),
    );
  });

  test("ids fit in signed 64-bit, even at the top worker and counter near 2090", () => {
    const late = Date.UTC(2090, 0, 1);
    const gen = new SnowflakeGenerator(MAX_WORKER_ID, () => late);
    let id = 0n;
    for (let i = 0; i < 4096; i++) id = gen.next();
    expect(id).toBeGreaterThan(0n);
    expect(id).toBeLessThanOrEqual(MAX_INT64);
    expect(BigInt.asIntN(64, id)).toBe(id);
    expect(decodeSnowflake(id)).toEqual({ timeMs: late, workerId: MAX_WORKER_ID, counter: 4095 });
    expect(parsePositiveId(id.toString())).toBe(id);
  });

  test("ids from the real clock are positive, int64 and round-trip through parsePositiveId", () => {
    const gen = new SnowflakeGenerator(42);
    const before = Date.now();
    const id = gen.next();
    const after = Date.now();
    expect(id).toBeGreaterThan(0n);
    expect(id).toBeLessThanOrEqual(MAX_INT64);
    const decoded = decodeSnowflake(id);
    expect(decoded.workerId).toBe(42);
    expect(decoded.timeMs).toBeGreaterThanOrEqual(before);
    expect(decoded.timeMs).toBeLessThanOrEqual(after);
    expect(parsePositiveId(id.toString())).toBe(id);
  });

  test("the epoch itself gives id 0 for worker 0, counter 0", () => {
    const gen = new SnowflakeGenerator(0, () => EPOCH_MS);
    expect(gen.next()).toBe(0n);
    expect(gen.next()).toBe(1n);
  });

  test.each([-1, 1024, 1.5, Number.NaN, Number.POSITIVE_INFINITY])(
    "constructor rejects worker id %p",
    (bad) => {
      expect(() => new SnowflakeGenerator(bad, () => T0)).toThrow(RangeError);
    },
  );

  test.each([0, 1, 1023])("constructor accepts worker id %p", (ok) => {
    expect(new SnowflakeGenerator(ok, () => T0).workerId).toBe(ok);
  });
});

describe("decodeSnowflake", () => {
  test("property: decodes what was composed", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 2 ** 41 - 1 }),
        fc.integer({ min: 0, max: MAX_WORKER_ID }),
        fc.integer({ min: 0, max: 4095 }),
        (t, w, c) => {
          const id = (BigInt(t) << 22n) | (BigInt(w) << 12n) | BigInt(c);
          expect(id).toBeLessThanOrEqual(MAX_INT64);
          expect(decodeSnowflake(id)).toEqual({ timeMs: t + EPOCH_MS, workerId: w, counter: c });
        },
      ),
    );
  });
});

describe("parsePositiveId", () => {
  test.each([
    ["1", 1n],
    ["9", 9n],
    ["10", 10n],
    ["9223372036854775807", MAX_INT64],
    ["1000000000000000000", 10n ** 18n],
  ])("accepts %p", (input, expected) => {
    expect(parsePositiveId(input)).toBe(expected);
  });

  test.each([
    "0",
    "-1",
    "01",
    "00",
    "9223372036854775808",
    "18446744073709551615",
    "10000000000000000000",
    " 1",
    "1 ",
    "1e3",
    "+1",
    "1.0",
    "0x10",
    "",
    "１", // full-width digit
    "1\n",
  ])("rejects string %p", (input) => {
    expect(parsePositiveId(input)).toBeNull();
  });

  test.each<[unknown]>([[1], [1n], [null], [undefined], [{}], [[]], [["1"]], [true], [new String("1")]])(
    "rejects non-string %p",
    (input) => {
      expect(parsePositiveId(input)).toBeNull();
    },
  );

  test("property: every bigint in 1..2^63-1 round-trips through its decimal string", () => {
    fc.assert(
      fc.property(fc.bigInt({ min: 1n, max: MAX_INT64 }), (id) => parsePositiveId(id.toString()) === id),
    );
  });

  test("property: every bigint above int64 max is rejected", () => {
    fc.assert(
      fc.property(
        fc.bigInt({ min: MAX_INT64 + 1n, max: 1n << 80n }),
        (id) => parsePositiveId(id.toString()) === null,
      ),
    );
  });

  test("property: never throws, and any accepted value is in range and canonical", () => {
    fc.assert(
      fc.property(fc.oneof(fc.string(), fc.stringMatching(/^-?[0-9]{0,21}$/), fc.anything()), (input) => {
        const id = parsePositiveId(input);
        if (id === null) return true;
        return typeof input === "string" && id >= 1n && id <= MAX_INT64 && id.toString() === input;
      }),
    );
  });
});
