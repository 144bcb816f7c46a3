/**
 * The TRADING reader's fast check (src/client/trading-canonical.ts) against the full decode it stands in for
 * (decodeTradingEvent): whatever body it says is certainly the event at a position, the full decode accepts with
 * that sequenceId, previousId and type — on valid bodies of every type, on those bodies mutated a character at a
 * time, and on field values near every boundary. It must also take the sequencer's own bodies (else a replay
 * would not be fast, though still right).
 */
import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { canonicalEventTypeAt } from "../../src/client/trading-canonical.ts";
import { decodeTradingEvent } from "../../src/client/trading-event.ts";
import { EVENT_TYPES, encodeSequencedEvent, type SequencedEvent } from "../../src/domain/events.ts";

const id = fc.bigInt({ min: 1n, max: (1n << 63n) - 1n });
const instant = fc
  .integer({ min: Date.UTC(2000, 0, 1), max: Date.UTC(2999, 11, 31, 23, 59, 59, 999) })
  .map((ms) => new Date(ms).toISOString());
const decimal = fc
  .tuple(fc.stringMatching(/^(0|[1-9][0-9]{0,11})$/), fc.stringMatching(/^[0-9]{0,8}$/))
  .map(([whole, fraction]) => (fraction === "" ? whole : `${whole}.${fraction}`))
  .filter((d) => /[1-9]/.test(d));

const sequencedEvent = fc
  .record({
    // Positions from 10^15 on always get the full decode (see the last test).
    sequenceId: fc.bigInt({ min: 1n, max: 10n ** 15n - 1n }),
    referenceId: id,
    createdAt: instant,
    sequencedAt: instant,
    type: fc.constantFrom(...EVENT_TYPES),
    userId: id,
    orderId: id,
    assetId: id,
    fromUserId: id,
    toUserId: id,
    direction: fc.constantFrom("BUY", "SELL"),
    price: decimal,
    quantity: decimal,
    amount: decimal,
  })
  // A transfer to oneself is not an event the sequencer could publish.
  .filter((e) => e.type !== "TRANSFER" || e.fromUserId !== e.toUserId)
  .map((e) => ({ ...e, previousId: e.sequenceId - 1n }) as unknown as SequencedEvent);

const utf8 = new TextDecoder();

/** The fast check on a body given as text (its UTF-8 bytes) or as bytes. */
const fastType = (body: string | Uint8Array, position: bigint) =>
  canonicalEventTypeAt(typeof body === "string" ? Buffer.from(body, "utf8") : body, Number(position));

/** The fast check's claim about `body` at its event's position, held to the full decode (of the decoded text). */
function agrees(body: string | Uint8Array, position: bigint): boolean {
  const type = fastType(body, position);
  if (type === null) return true;
  const full = decodeTradingEvent(typeof body === "string" ? body : utf8.decode(body));
  return (
    full.ok &&
    full.event.sequenceId === position &&
    full.event.previousId === position - 1n &&
    full.event.type === type
  );
}

const MUTATION_CHARS = '0123456789."\\,:{}[] -TZe+aAÿ\u00e9\u2028x';

describe("canonicalEventTypeAt", () => {
  test("takes the sequencer's own bodies of every type, at their position only", () => {
    fc.assert(
      fc.property(sequencedEvent, (event) => {
        const body = encodeSequencedEvent(event);
        expect(fastType(body, event.sequenceId)).toBe(event.type);
        expect(fastType(body, event.sequenceId + 1n)).toBeNull();
        expect(fastType(body, event.sequenceId * 10n)).toBeNull();
      }),
      { numRuns: 500 },
    );
  });

  test("never takes a body the full decode refuses: bodies mutated one character at a time", () => {
    fc.assert(
      fc.property(
        sequencedEvent,
        fc.array(
          fc.tuple(
            fc.constantFrom("replace", "insert", "delete"),
            fc.nat(),
            fc.constantFrom(...MUTATION_CHARS),
          ),
          { minLength: 1, maxLength: 3 },
        ),
        (event, mutations) => {
          let body = encodeSequencedEvent(event);
          for (const [kind, at, char] of mutations) {
            const i = at % (body.length + 1);
            if (kind === "insert") body = body.slice(0, i) + char + body.slice(i);
            else if (kind === "replace") body = body.slice(0, i) + char + body.slice(i + 1);
            else body = body.slice(0, i) + body.slice(i + 1);
          }
          expect(agrees(body, event.sequenceId)).toBe(true);
        },
      ),
      { numRuns: 5_000 },
    );
  });

  test("never takes a body the full decode refuses: bytes changed, bytes past ASCII included", () => {
    fc.assert(
      fc.property(
        sequencedEvent,
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 3 }),
        (event, changes) => {
          const body = Buffer.from(encodeSequencedEvent(event), "utf8");
          for (const [at, byte] of changes) body[at % body.length] = byte;
          expect(agrees(body, event.sequenceId)).toBe(true);
        },
      ),
      { numRuns: 5_000 },
    );
  });

  test("field values at their boundaries: taken exactly when the full decode takes them", () => {
    const base = {
      sequenceId: 5n,
      previousId: 4n,
      referenceId: 9n,
      type: "TRANSFER",
      createdAt: "2025-01-02T03:04:05.006Z",
      sequencedAt: "2025-01-02T03:04:05.106Z",
      fromUserId: 1n,
      toUserId: 2n,
      assetId: 3n,
      amount: "1",
    } as unknown as SequencedEvent;
    const encoded = (overrides: Record<string, string>) => {
      const body = JSON.parse(encodeSequencedEvent(base));
      return JSON.stringify({ ...body, ...overrides });
    };
    const cases: Record<string, string>[] = [
      { referenceId: "9223372036854775807" },
      { referenceId: "9223372036854775808" },
      { referenceId: "09" },
      { referenceId: "0" },
      { toUserId: "1" },
      { toUserId: "01" },
      { amount: "0" },
      { amount: "0.0" },
      { amount: "00.1" },
      { amount: "1." },
      { amount: ".5" },
      { amount: "-1" },
      { amount: "1e3" },
      { amount: "0.00000001" },
      { amount: "0.000000001" },
      { amount: "1.000000000000" },
      { amount: "999999999999999" },
      { amount: "9999999999999999" },
      { amount: `1.${"0".repeat(60)}` },
      { createdAt: "1999-12-31T23:59:59.999Z" },
      { createdAt: "3000-01-01T00:00:00.000Z" },
      { sequencedAt: "0000-01-01T00:00:00.000Z" },
      { sequencedAt: "9999-12-31T23:59:59.999Z" },
      { sequencedAt: "2024-02-29T00:00:00.000Z" },
      { sequencedAt: "2023-02-29T00:00:00.000Z" },
      { sequencedAt: "2100-02-29T00:00:00.000Z" },
      { sequencedAt: "2000-02-29T00:00:00.000Z" },
      { sequencedAt: "2025-04-31T00:00:00.000Z" },
      { sequencedAt: "2025-01-01T24:00:00.000Z" },
      { sequencedAt: "2025-01-01T23:60:00.000Z" },
      { sequencedAt: "2025-01-01T23:59:60.000Z" },
      { sequencedAt: "2025-01-01T23:59:59.999" },
      { sequencedAt: "2025-01-01 23:59:59.999Z" },
      { sequencedAt: "2025-13-01T00:00:00.000Z" },
      { sequencedAt: "2025-00-01T00:00:00.000Z" },
      { type: "DEPOSIT" },
      { type: "transfer" },
      { idempotencyKey: "7:k" },
      { extra: "1" },
    ];
    for (const overrides of cases) {
      const body = encoded(overrides);
      const fast = fastType(body, 5n);
      const full = decodeTradingEvent(body);
      expect({ overrides, fast: fast !== null }).toEqual({ overrides, fast: full.ok });
    }
    // Valid, but not what the fast check knows: left to the full decode, which takes them.
    for (const body of [
      encoded({ sequencedAt: "+010000-01-01T00:00:00.000Z" }),
      encodeSequencedEvent(base).replace('"TRANSFER"', '"\\u0054RANSFER"'),
      encodeSequencedEvent(base).replace(",", ", "),
      JSON.stringify({ previousId: "4", ...JSON.parse(encodeSequencedEvent(base)) }),
    ]) {
      expect(fastType(body, 5n)).toBeNull();
      expect(decodeTradingEvent(body).ok).toBe(true);
    }
  });

  test("instants of every day of years 0000-9999 as toISOString writes them are taken; others are not", () => {
    const body = (sequencedAt: string) =>
      encodeSequencedEvent({
        sequenceId: 1n,
        previousId: 0n,
        referenceId: 2n,
        type: "CANCEL_ORDER",
        createdAt: "2025-01-02T03:04:05.006Z",
        sequencedAt,
        userId: 3n,
        orderId: 4n,
      } as SequencedEvent);
    fc.assert(
      fc.property(
        fc.integer({
          min: Date.parse("0000-01-01T00:00:00.000Z"),
          max: Date.parse("9999-12-31T23:59:59.999Z"),
        }),
        (ms) => {
          const iso = new Date(ms).toISOString();
          expect(fastType(body(iso), 1n)).toBe("CANCEL_ORDER");
        },
      ),
      { numRuns: 2_000 },
    );
    // Digit strings in the layout, valid or not: taken only when the full decode takes them.
    fc.assert(
      fc.property(
        fc.stringMatching(/^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z$/),
        (iso) => {
          expect(agrees(body(iso), 1n)).toBe(true);
        },
      ),
      { numRuns: 5_000 },
    );
  });

  test("positions from 10^15 on, and a position the digits merely start with, are left to the full decode", () => {
    const at = (sequenceId: bigint) =>
      encodeSequencedEvent({
        sequenceId,
        previousId: sequenceId - 1n,
        referenceId: 2n,
        type: "CANCEL_ORDER",
        createdAt: "2025-01-02T03:04:05.006Z",
        sequencedAt: "2025-01-02T03:04:05.106Z",
        userId: 3n,
        orderId: 4n,
      } as SequencedEvent);
    expect(fastType(at(10n ** 15n - 1n), 10n ** 15n - 1n)).toBe("CANCEL_ORDER");
    expect(fastType(at(10n ** 15n), 10n ** 15n)).toBeNull();
    expect(fastType(at(2n ** 62n), 2n ** 62n)).toBeNull();
    expect(fastType(at(12n), 1n)).toBeNull();
    expect(fastType(at(1n), 0n)).toBeNull();
  });
});
