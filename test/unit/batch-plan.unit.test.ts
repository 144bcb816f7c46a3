/**
 * Batch planning without I/O (src/domain/batch-plan.ts): decoding sorts a batch into events and rejections and
 * names what the duplicate filter looks up; planning numbers the events after the log's position and encodes
 * each as the bytes the log stores and TRADING carries. The rule itself (sequenceBatch) is sequencing.unit.test.ts's.
 */
import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { decodeBatch, planBatch } from "../../src/domain/batch-plan.ts";
import {
  decodeIntakeEvent,
  encodeIntakeEvent,
  encodeSequencedEvent,
  type IntakeEvent,
} from "../../src/domain/events.ts";

const encoder = new TextEncoder();
const bytes = (text: string) => encoder.encode(text);

function deposit(referenceId: bigint, idempotencyKey?: string): IntakeEvent {
  return {
    referenceId,
    type: "DEPOSIT",
    createdAt: "2026-01-01T00:00:00.000Z",
    userId: 3n,
    assetId: 1n,
    amount: "5",
    ...(idempotencyKey === undefined ? {} : { idempotencyKey }),
  };
}

const none = () => false;

describe("decodeBatch", () => {
  test("valid events in stream order, invalid ones by index with the reason, and what to look up", () => {
    const decoded = decodeBatch([
      bytes(encodeIntakeEvent(deposit(10n, "3:a"))),
      bytes("not json"),
      bytes(encodeIntakeEvent(deposit(11n))),
      bytes('{"type":"DEPOSIT"}'),
    ]);
    expect(decoded.events.map((e) => e.referenceId)).toEqual([10n, 11n]);
    expect(decoded.invalid.map((i) => i.index)).toEqual([1, 3]);
    expect(decoded.invalid[0]?.reason).toBe("not valid JSON");
    expect(decoded.referenceIds).toEqual([10n, 11n]);
    expect(decoded.idempotencyKeys).toEqual(["3:a"]);
  });
});

describe("planBatch", () => {
  const position = { sequenceId: 41n, sequencedAt: "2026-01-01T00:00:01.000Z" };

  test("numbers after the position, drops stored and repeated events, encodes what is stored", () => {
    const events = [
      deposit(1n),
      deposit(2n, "3:k"),
      deposit(1n),
      deposit(3n),
      deposit(4n, "3:k"),
      deposit(5n),
    ];
    const plan = planBatch(position, events, (id) => id === 3n, none, "2026-01-01T00:00:02.000Z");
    expect(plan.planned.map((p) => [p.event.referenceId, p.event.sequenceId, p.event.previousId])).toEqual([
      [1n, 42n, 41n],
      [2n, 43n, 42n],
      [5n, 44n, 43n],
    ]);
    expect(plan.duplicates).toBe(3);
    expect(plan.position).toEqual({ sequenceId: 44n, sequencedAt: "2026-01-01T00:00:02.000Z" });
    for (const p of plan.planned) expect(p.payload).toBe(encodeSequencedEvent(p.event));
  });

  test("nothing new: nothing planned and the position unchanged; a clock behind the log does not go back", () => {
    const stored = planBatch(
      position,
      [deposit(1n, "3:x")],
      none,
      (key) => key === "3:x",
      "2026-01-02T00:00:00.000Z",
    );
    expect(stored.planned).toEqual([]);
    expect(stored.position).toBe(position);
    const behind = planBatch(position, [deposit(9n)], none, none, "2025-12-31T00:00:00.000Z");
    expect(behind.planned[0]?.event.sequencedAt).toBe(position.sequencedAt);
  });

  test("decode then plan keeps each request's fields: the payload decodes back to the request plus its numbers", () => {
    fc.assert(
      fc.property(fc.uniqueArray(fc.bigInt({ min: 1n, max: 2n ** 62n }), { maxLength: 20 }), (ids) => {
        const requests = ids.map((id) => deposit(id));
        const decoded = decodeBatch(requests.map((r) => bytes(encodeIntakeEvent(r))));
        const plan = planBatch(position, decoded.events, none, none, "2026-01-01T00:00:02.000Z");
        expect(plan.planned.length).toBe(requests.length);
        plan.planned.forEach((p, i) => {
          const body = JSON.parse(p.payload) as Record<string, string>;
          expect(body.sequenceId).toBe(String(42n + BigInt(i)));
          const { sequenceId: _s, previousId: _p, sequencedAt: _t, ...intake } = body;
          const again = decodeIntakeEvent(JSON.stringify(intake));
          expect(again).toEqual({ ok: true, event: requests[i] as IntakeEvent });
        });
      }),
    );
  });
});
