import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import type { CreateOrder, Intake, Sequenced } from "../../src/domain/events.ts";
import { EMPTY_HEAD, type Position, sequenceBatch } from "../../src/domain/sequencing.ts";
import { isoArb } from "../support/arbitraries.ts";

const MAX_INT64 = (1n << 63n) - 1n;

/** A small pool of references so batches repeat them and overlap the stored set. */
const refArb = fc.bigInt({ min: 1n, max: 40n });

const eventArb = (ref: fc.Arbitrary<bigint> = refArb): fc.Arbitrary<Intake<CreateOrder>> =>
  fc.record({
    referenceId: ref,
    type: fc.constant("CREATE_ORDER" as const),
    createdAt: isoArb,
    userId: fc.bigInt({ min: 1n, max: MAX_INT64 }),
    orderId: fc.bigInt({ min: 1n, max: MAX_INT64 }),
    direction: fc.constantFrom("BUY" as const, "SELL" as const),
    price: fc.constantFrom("1", "0.5", "101.25", "999999999999.99999999"),
    quantity: fc.constantFrom("1", "2", "0.00000001"),
  });

const batchArb = fc.array(eventArb(), { maxLength: 60 });
const storedArb = fc.uniqueArray(refArb, { maxLength: 20 }).map((refs) => new Set(refs));
const headArb: fc.Arbitrary<Position> = fc.oneof(
  fc.constant(EMPTY_HEAD),
  fc.record({
    sequenceId: fc.oneof(fc.bigInt({ min: 0n, max: 1000n }), fc.bigInt({ min: 0n, max: MAX_INT64 - 100n })),
    sequencedAt: fc.option(isoArb, { nil: null }),
  }),
);

function event(referenceId: bigint, extra: Partial<Intake<CreateOrder>> = {}): Intake<CreateOrder> {
  return {
    referenceId,
    type: "CREATE_ORDER",
    createdAt: "2026-01-15T12:00:00.000Z",
    userId: 1n,
    orderId: referenceId,
    direction: "BUY",
    price: "1",
    quantity: "1",
    ...extra,
  };
}

const NOW = "2026-01-15T12:00:05.000Z";
const none = (): boolean => false;

/** The rule restated independently: first occurrences of references not already stored, in batch order. */
function expectedAccepted(batch: readonly Intake<CreateOrder>[], stored: ReadonlySet<bigint>): number[] {
  const seen = new Set<bigint>();
  const indexes: number[] = [];
  batch.forEach((e, i) => {
    if (!seen.has(e.referenceId) && !stored.has(e.referenceId)) indexes.push(i);
    seen.add(e.referenceId);
  });
  return indexes;
}

describe("sequenceBatch examples", () => {
  test("empty head, three new events: 1..3 with previousIds 0..2", () => {
    const result = sequenceBatch(EMPTY_HEAD, [event(10n), event(20n), event(30n)], none, NOW);
    expect(result.sequenced.map((e) => [e.sequenceId, e.previousId, e.referenceId])).toEqual([
      [1n, 0n, 10n],
      [2n, 1n, 20n],
      [3n, 2n, 30n],
    ]);
    expect(result.duplicates).toEqual([]);
    expect(result.head).toEqual({ sequenceId: 3n, sequencedAt: NOW });
    for (const e of result.sequenced) expect(e.sequencedAt).toBe(NOW);
  });

  test("continues after an existing head", () => {
    const head: Position = { sequenceId: 41n, sequencedAt: "2026-01-15T12:00:00.000Z" };
    const result = sequenceBatch(head, [event(1n), event(2n)], none, NOW);
    expect(result.sequenced.map((e) => e.sequenceId)).toEqual([42n, 43n]);
    expect(result.sequenced.map((e) => e.previousId)).toEqual([41n, 42n]);
    expect(result.head).toEqual({ sequenceId: 43n, sequencedAt: NOW });
  });

  test("repeats inside the batch: first one wins, later ones are duplicates", () => {
    const batch = [
      event(5n, { price: "1" }),
      event(6n),
      event(5n, { price: "2" }),
      event(7n),
      event(6n),
      event(5n, { price: "3" }),
    ];
    const result = sequenceBatch(EMPTY_HEAD, batch, none, NOW);
    expect(result.sequenced.map((e) => e.referenceId)).toEqual([5n, 6n, 7n]);
    expect(result.sequenced[0]?.price).toBe("1");
    expect(result.duplicates).toEqual([2, 4, 5]);
    expect(result.head.sequenceId).toBe(3n);
  });

  test("stored references are dropped and do not consume sequence numbers", () => {
    const stored = new Set([2n, 4n]);
    const result = sequenceBatch(
      { sequenceId: 100n, sequencedAt: null },
      [event(1n), event(2n), event(3n), event(4n), event(5n)],
      (id) => stored.has(id),
      NOW,
    );
    expect(result.sequenced.map((e) => [e.sequenceId, e.referenceId])).toEqual([
      [101n, 1n],
      [102n, 3n],
      [103n, 5n],
    ]);
    expect(result.duplicates).toEqual([1, 3]);
  });

  test("all-duplicate batch is a no-op: same head, no events, every index reported", () => {
    const head: Position = { sequenceId: 9n, sequencedAt: "2026-01-15T11:00:00.000Z" };
    const stored = new Set([1n, 2n]);
    const result = sequenceBatch(head, [event(1n), event(2n), event(1n)], (id) => stored.has(id), NOW);
    expect(result.sequenced).toEqual([]);
    expect(result.duplicates).toEqual([0, 1, 2]);
    expect(result.head).toEqual(head);
    // The head's sequencedAt is not advanced to "now" by a no-op.
    expect(result.head.sequencedAt).toBe("2026-01-15T11:00:00.000Z");
  });

  test("empty batch is a no-op", () => {
    const result = sequenceBatch(EMPTY_HEAD, [], none, NOW);
    expect(result).toEqual({ sequenced: [], duplicates: [], head: EMPTY_HEAD });
  });

  test("sequencedAt does not go backwards when now is earlier than the head", () => {
    const head: Position = { sequenceId: 5n, sequencedAt: "2026-01-15T12:00:10.000Z" };
    const result = sequenceBatch(head, [event(1n), event(2n)], none, "2026-01-15T11:59:00.000Z");
    for (const e of result.sequenced) expect(e.sequencedAt).toBe("2026-01-15T12:00:10.000Z");
    expect(result.head).toEqual({ sequenceId: 7n, sequencedAt: "2026-01-15T12:00:10.000Z" });
  });

  test("sequencedAt moves forward with now when now is later than the head", () => {
    const head: Position = { sequenceId: 5n, sequencedAt: "2026-01-15T12:00:00.000Z" };
    const result = sequenceBatch(head, [event(1n)], none, NOW);
    expect(result.sequenced[0]?.sequencedAt).toBe(NOW);
    expect(result.head.sequencedAt).toBe(NOW);
  });

  test("carries every intake field through unchanged and does not mutate the input", () => {
    const input = event(77n, {
      userId: 3n,
      orderId: 4n,
      direction: "SELL",
      price: "12.5",
      quantity: "0.25",
      createdAt: "2026-01-15T11:59:59.999Z",
    });
    const copy = { ...input };
    const result = sequenceBatch(EMPTY_HEAD, [input], none, NOW);
    const expected: Sequenced<CreateOrder> = { ...copy, sequenceId: 1n, previousId: 0n, sequencedAt: NOW };
    expect(result.sequenced).toEqual([expected]);
    expect(input).toEqual(copy);
    expect(input).not.toHaveProperty("sequenceId");
  });

  test("does not consult the store again for a repeat already seen in the batch", () => {
    const asked: bigint[] = [];
    sequenceBatch(
      EMPTY_HEAD,
      [event(1n), event(1n), event(2n)],
      (id) => {
        asked.push(id);
        return false;
      },
      NOW,
    );
    expect(asked).toEqual([1n, 2n]);
  });
});

describe("sequenceBatch properties", () => {
  test("contiguous ids after the head, previousId = sequenceId - 1, and the new head is the last id", () => {
    fc.assert(
      fc.property(headArb, batchArb, storedArb, isoArb, (head, batch, stored, now) => {
        const { sequenced, head: newHead } = sequenceBatch(head, batch, (id) => stored.has(id), now);
        sequenced.forEach((e, i) => {
          expect(e.sequenceId).toBe(head.sequenceId + BigInt(i) + 1n);
          expect(e.previousId).toBe(e.sequenceId - 1n);
        });
        expect(newHead.sequenceId).toBe(head.sequenceId + BigInt(sequenced.length));
      }),
      { numRuns: 500 },
    );
  });

  test("each referenceId at most once, none from the stored set, in order of first occurrence", () => {
    fc.assert(
      fc.property(headArb, batchArb, storedArb, isoArb, (head, batch, stored, now) => {
        const { sequenced } = sequenceBatch(head, batch, (id) => stored.has(id), now);
        const refs = sequenced.map((e) => e.referenceId);
        expect(new Set(refs).size).toBe(refs.length);
        for (const ref of refs) expect(stored.has(ref)).toBe(false);
        const expectedIdx = expectedAccepted(batch, stored);
        expect(refs).toEqual(expectedIdx.map((i) => (batch[i] as Intake<CreateOrder>).referenceId));
        // The payload is the first occurrence's, not a later repeat's.
        sequenced.forEach((e, k) => {
          const source = batch[expectedIdx[k] as number] as Intake<CreateOrder>;
          expect({ ...e }).toEqual({
            ...source,
            sequenceId: e.sequenceId,
            previousId: e.previousId,
            sequencedAt: e.sequencedAt,
          });
        });
      }),
      { numRuns: 500 },
    );
  });

  test("every distinct, unstored referenceId in the batch is sequenced", () => {
    fc.assert(
      fc.property(headArb, batchArb, storedArb, isoArb, (head, batch, stored, now) => {
        const { sequenced } = sequenceBatch(head, batch, (id) => stored.has(id), now);
        const wanted = new Set(batch.map((e) => e.referenceId).filter((r) => !stored.has(r)));
        expect(new Set(sequenced.map((e) => e.referenceId))).toEqual(wanted);
      }),
    );
  });

  test("duplicate indexes + sequenced count = batch length; duplicates are exactly the other indexes, ascending", () => {
    fc.assert(
      fc.property(headArb, batchArb, storedArb, isoArb, (head, batch, stored, now) => {
        const { sequenced, duplicates } = sequenceBatch(head, batch, (id) => stored.has(id), now);
        expect(duplicates.length + sequenced.length).toBe(batch.length);
        const accepted = new Set(expectedAccepted(batch, stored));
        const expectedDup = batch.map((_, i) => i).filter((i) => !accepted.has(i));
        expect(duplicates).toEqual(expectedDup);
        for (const i of duplicates) {
          const ref = (batch[i] as Intake<CreateOrder>).referenceId;
          const earlier = batch.slice(0, i).some((e) => e.referenceId === ref);
          expect(stored.has(ref) || earlier).toBe(true);
        }
      }),
      { numRuns: 500 },
    );
  });

  test("an all-duplicate batch returns the same head and no events", () => {
    fc.assert(
      fc.property(headArb, fc.array(refArb, { minLength: 1, maxLength: 30 }), isoArb, (head, refs, now) => {
        const stored = new Set(refs);
        const batch = refs.map((r) => event(r));
        const result = sequenceBatch(head, batch, (id) => stored.has(id), now);
        expect(result.sequenced).toEqual([]);
        expect(result.duplicates).toEqual(batch.map((_, i) => i));
        expect(result.head).toEqual(head);
      }),
    );
  });

  test("sequencedAt is max(head.sequencedAt, now), the same for the whole batch, and never goes backwards", () => {
    fc.assert(
      fc.property(headArb, batchArb, storedArb, isoArb, (head, batch, stored, now) => {
        const result = sequenceBatch(head, batch, (id) => stored.has(id), now);
        const expected = head.sequencedAt !== null && head.sequencedAt > now ? head.sequencedAt : now;
        for (const e of result.sequenced) expect(e.sequencedAt).toBe(expected);
        if (result.sequenced.length > 0) {
          expect(result.head.sequencedAt).toBe(expected);
          expect(Date.parse(expected)).toBeGreaterThanOrEqual(Date.parse(now));
          if (head.sequencedAt !== null) {
            expect(Date.parse(expected)).toBeGreaterThanOrEqual(Date.parse(head.sequencedAt));
          }
        } else {
          expect(result.head).toEqual(head);
        }
      }),
      { numRuns: 500 },
    );
  });

  test("folding batches gives a gap-free 1..N over all distinct references, with monotonic sequencedAt", () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(batchArb, isoArb), { maxLength: 12 }), (steps) => {
        let head: Position = EMPTY_HEAD;
        const stored = new Set<bigint>();
        const all: Sequenced<CreateOrder>[] = [];
        for (const [batch, now] of steps) {
          const result = sequenceBatch(head, batch, (id) => stored.has(id), now);
          for (const e of result.sequenced) stored.add(e.referenceId);
          all.push(...result.sequenced);
          head = result.head;
        }
        const distinct = new Set(steps.flatMap(([batch]) => batch.map((e) => e.referenceId)));
        expect(all.length).toBe(distinct.size);
        all.forEach((e, i) => {
          expect(e.sequenceId).toBe(BigInt(i + 1));
          expect(e.previousId).toBe(BigInt(i));
        });
        expect(new Set(all.map((e) => e.referenceId))).toEqual(distinct);
        expect(head.sequenceId).toBe(BigInt(all.length));
        for (let i = 1; i < all.length; i++) {
          expect(
            (all[i] as Sequenced<CreateOrder>).sequencedAt >=
              (all[i - 1] as Sequenced<CreateOrder>).sequencedAt,
          ).toBe(true);
        }
      }),
      { numRuns: 300 },
    );
  });

  test("redelivering any already-applied batch is a no-op", () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(batchArb, isoArb), { minLength: 1, maxLength: 8 }),
        fc.nat(),
        isoArb,
        (steps, pick, now) => {
          let head: Position = EMPTY_HEAD;
          const stored = new Set<bigint>();
          for (const [batch, at] of steps) {
            const result = sequenceBatch(head, batch, (id) => stored.has(id), at);
            for (const e of result.sequenced) stored.add(e.referenceId);
            head = result.head;
          }
          const [again] = steps[pick % steps.length] as [Intake<CreateOrder>[], string];
          const replay = sequenceBatch(head, again, (id) => stored.has(id), now);
          expect(replay.sequenced).toEqual([]);
          expect(replay.duplicates.length).toBe(again.length);
          expect(replay.head).toEqual(head);
        },
      ),
    );
  });

  test("splitting a batch in two gives the same sequence as applying it whole", () => {
    fc.assert(
      fc.property(headArb, batchArb, storedArb, fc.nat(), isoArb, (head0, batch, stored0, cut, now) => {
        const head: Position = { sequenceId: head0.sequenceId, sequencedAt: null };
        const whole = sequenceBatch(head, batch, (id) => stored0.has(id), now);
        const at = batch.length === 0 ? 0 : cut % (batch.length + 1);
        const stored = new Set(stored0);
        const first = sequenceBatch(head, batch.slice(0, at), (id) => stored.has(id), now);
        for (const e of first.sequenced) stored.add(e.referenceId);
        const second = sequenceBatch(first.head, batch.slice(at), (id) => stored.has(id), now);
        expect([...first.sequenced, ...second.sequenced]).toEqual(whole.sequenced);
        expect(second.head).toEqual(whole.head);
      }),
    );
  });
});
