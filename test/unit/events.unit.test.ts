import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import {
  type CreateOrder,
  type DecodeResult,
  decodeIntakeEvent,
  EVENT_TYPES,
  encodeIntakeEvent,
  encodeSequencedEvent,
  type Intake,
  type Sequenced,
  subjectToken,
} from "../../src/domain/events.ts";
import { isoArb } from "../support/arbitraries.ts";

const MAX_INT64 = (1n << 63n) - 1n;

const idArb = fc.bigInt({ min: 1n, max: MAX_INT64 });
const decimalArb = fc
  .tuple(
    fc.oneof(fc.constant("0"), fc.stringMatching(/^[1-9][0-9]{0,11}$/)),
    fc.option(fc.stringMatching(/^[0-9]{0,7}[1-9]$/), { nil: undefined }),
  )
  .map(([int, frac]) => (frac === undefined ? int : `${int}.${frac}`))
  .filter((s) => s !== "0");
const directionArb = fc.constantFrom("BUY" as const, "SELL" as const);

const intakeArb: fc.Arbitrary<Intake<CreateOrder>> = fc.record({
  referenceId: idArb,
  type: fc.constant("CREATE_ORDER" as const),
  createdAt: isoArb,
  userId: idArb,
  orderId: idArb,
  direction: directionArb,
  price: decimalArb,
  quantity: decimalArb,
});

const sample: Intake<CreateOrder> = {
  referenceId: 123456789012345678n,
  type: "CREATE_ORDER",
  createdAt: "2026-01-15T12:00:00.000Z",
  userId: 42n,
  orderId: 7n,
  direction: "BUY",
  price: "101.25",
  quantity: "0.5",
};

function wire(overrides: Record<string, unknown> = {}, omit: string[] = []): string {
  const base: Record<string, unknown> = JSON.parse(encodeIntakeEvent(sample));
  for (const key of omit) delete base[key];
  return JSON.stringify({ ...base, ...overrides });
}

function reasonOf(result: DecodeResult): string {
  if (result.ok)
    throw new Error(`expected rejection, got ${JSON.stringify(encodeIntakeEvent(result.event))}`);
  return result.reason;
}

describe("subjectToken", () => {
  test("lower-cases the event type", () => {
    expect(subjectToken("CREATE_ORDER")).toBe("create_order");
    expect(subjectToken("CANCEL_ORDER")).toBe("cancel_order");
    expect(subjectToken("DEPOSIT")).toBe("deposit");
    expect(subjectToken("TRANSFER")).toBe("transfer");
    expect(EVENT_TYPES).toEqual(["CREATE_ORDER", "CANCEL_ORDER", "DEPOSIT", "TRANSFER"]);
  });
});

describe("encodeIntakeEvent / decodeIntakeEvent", () => {
  test("encodes ids as decimal strings in a fixed key order", () => {
    expect(encodeIntakeEvent(sample)).toBe(
      '{"referenceId":"123456789012345678","type":"CREATE_ORDER","createdAt":"2026-01-15T12:00:00.000Z",' +
        '"userId":"42","orderId":"7","direction":"BUY","price":"101.25","quantity":"0.5"}',
    );
  });

  test("decodes the sample from a string and from bytes", () => {
    const text = encodeIntakeEvent(sample);
    expect(decodeIntakeEvent(text)).toEqual({ ok: true, event: sample });
    expect(decodeIntakeEvent(new TextEncoder().encode(text))).toEqual({ ok: true, event: sample });
  });

  test("property: encode → decode round trip (string and bytes)", () => {
    fc.assert(
      fc.property(intakeArb, (event) => {
        const text = encodeIntakeEvent(event);
        expect(decodeIntakeEvent(text)).toEqual({ ok: true, event });
        expect(decodeIntakeEvent(new TextEncoder().encode(text))).toEqual({ ok: true, event });
      }),
      { numRuns: 500 },
    );
  });

  test("property: decode → encode reproduces canonical bytes", () => {
    fc.assert(
      fc.property(intakeArb, (event) => {
        const text = encodeIntakeEvent(event);
        const decoded = decodeIntakeEvent(text);
        if (!decoded.ok) return false;
        return encodeIntakeEvent(decoded.event) === text;
      }),
    );
  });

  test("field order on the wire does not matter", () => {
    const shuffled = JSON.stringify({
      quantity: "0.5",
      price: "101.25",
      direction: "BUY",
      orderId: "7",
      userId: "42",
      createdAt: "2026-01-15T12:00:00.000Z",
      type: "CREATE_ORDER",
      referenceId: "123456789012345678",
    });
    expect(decodeIntakeEvent(shuffled)).toEqual({ ok: true, event: sample });
  });

  test("non-canonical decimals are canonicalised on decode", () => {
    const result = decodeIntakeEvent(wire({ price: "101.2500", quantity: "2.0" }));
    expect(result).toEqual({ ok: true, event: { ...sample, price: "101.25", quantity: "2" } });
  });

  test("decodes the largest int64 ids", () => {
    const max = MAX_INT64.toString();
    const result = decodeIntakeEvent(wire({ referenceId: max, userId: max, orderId: max }));
    expect(result).toEqual({
      ok: true,
      event: { ...sample, referenceId: MAX_INT64, userId: MAX_INT64, orderId: MAX_INT64 },
    });
  });

  test.each(["", "{", "not json", "{'a':1}", "\u0000", '{"referenceId":1,}'])(
    "rejects non-JSON %p",
    (text) => {
      expect(reasonOf(decodeIntakeEvent(text))).toBe("not valid JSON");
    },
  );

  test("rejects invalid UTF-8 bytes without throwing", () => {
    expect(decodeIntakeEvent(new Uint8Array([0xff, 0xfe, 0x7b]))).toEqual({
      ok: false,
      reason: "not valid JSON",
    });
  });

  test.each(["[]", "[{}]", `[${encodeIntakeEvent(sample)}]`, "null", "1", '"CREATE_ORDER"', "true"])(
    "rejects non-object JSON %p",
    (text) => {
      expect(reasonOf(decodeIntakeEvent(text))).toBe("not a JSON object");
    },
  );

  test.each<[unknown]>([["PLACE_ORDER"], ["create_order"], [""], [null], [1], [["CREATE_ORDER"]]])(
    "rejects unknown type %p",
    (type) => {
      expect(reasonOf(decodeIntakeEvent(wire({ type })))).toContain("unknown event type");
    },
  );

  test("rejects a missing type", () => {
    expect(reasonOf(decodeIntakeEvent(wire({}, ["type"])))).toContain("unknown event type");
  });

  test.each(["sequenceId", "previousId", "sequencedAt", "extra", "__proto__", "constructor"])(
    "rejects extra field %p",
    (field) => {
      const text = wire().replace(/}$/, `,${JSON.stringify(field)}:"1"}`);
      expect(reasonOf(decodeIntakeEvent(text))).toBe(`unexpected field ${field}`);
    },
  );

  test.each(["referenceId", "createdAt", "userId", "orderId", "direction", "price", "quantity"])(
    "rejects missing field %p",
    (field) => {
      const reason = reasonOf(decodeIntakeEvent(wire({}, [field])));
      expect(reason).toContain(field);
    },
  );

  test.each(["referenceId", "userId", "orderId"])("rejects bad values of id field %p", (field) => {
    for (const bad of [
      0,
      1,
      "0",
      "-1",
      "01",
      "1.0",
      "1e3",
      " 1",
      "9223372036854775808",
      "",
      null,
      true,
      {},
      [],
    ]) {
      const reason = reasonOf(decodeIntakeEvent(wire({ [field]: bad })));
      expect(reason).toBe(`${field} must be a positive 64-bit decimal string`);
    }
  });

  test.each<[unknown]>([
    ["2026-02-31T00:00:00.000Z"],
    ["2026-02-29T00:00:00.000Z"],
    ["2026-13-01T00:00:00.000Z"],
    ["2026-01-01T24:00:00.000Z"],
    ["0000-01-01T00:00:00.000Z"],
    ["1999-12-31T23:59:59.999Z"],
    ["3000-01-01T00:00:00.000Z"],
    ["+275760-09-13T00:00:00.000Z"],
    ["2026-01-15T12:00:00Z"],
    ["2026-01-15T12:00:00.000+00:00"],
    ["2026-01-15 12:00:00.000Z"],
    ["2026-01-15T12:00:00.000z"],
    ["2026-01-15"],
    ["Thu, 15 Jan 2026 12:00:00 GMT"],
    ["2026-01-15T12:00:00.0000"],
    [""],
    [1768478400000],
    [null],
  ])("rejects createdAt %p", (createdAt) => {
    expect(reasonOf(decodeIntakeEvent(wire({ createdAt })))).toBe(
      "createdAt must be an ISO-8601 UTC instant",
    );
  });

  test("accepts createdAt at the edges of years 2000-2999 and on a leap day", () => {
    for (const createdAt of [
      "2000-01-01T00:00:00.000Z",
      "2999-12-31T23:59:59.999Z",
      "2024-02-29T23:59:59.999Z",
    ]) {
      expect(decodeIntakeEvent(wire({ createdAt }))).toEqual({ ok: true, event: { ...sample, createdAt } });
    }
  });

  test.each<[unknown]>([["buy"], ["Sell"], ["HOLD"], [""], [null], [1]])(
    "rejects direction %p",
    (direction) => {
      expect(reasonOf(decodeIntakeEvent(wire({ direction })))).toBe("direction must be BUY or SELL");
    },
  );

  test.each(["price", "quantity"])("rejects bad %p values", (field) => {
    for (const bad of ["0", "-1", "1e5", "0.123456789", "1234567890123", " 1", "", 1.5, null]) {
      const reason = reasonOf(decodeIntakeEvent(wire({ [field]: bad })));
      expect(reason.startsWith(`${field} `)).toBe(true);
    }
  });

  test("property: never throws on arbitrary bytes", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => {
        const result = decodeIntakeEvent(bytes);
        expect(typeof result.ok).toBe("boolean");
      }),
      { numRuns: 1000 },
    );
  });

  test("property: never throws on arbitrary JSON values and strings", () => {
    fc.assert(
      fc.property(fc.oneof(fc.json(), fc.string()), (text) => {
        const result = decodeIntakeEvent(text);
        expect(typeof result.ok).toBe("boolean");
      }),
      { numRuns: 1000 },
    );
  });

  test("property: a field replaced by junk is only accepted if the junk is a string, and the result is stable", () => {
    const fields = [
      "referenceId",
      "userId",
      "orderId",
      "createdAt",
      "direction",
      "price",
      "quantity",
    ] as const;
    fc.assert(
      fc.property(intakeArb, fc.constantFrom(...fields), fc.jsonValue(), (event, field, junk) => {
        const base: Record<string, unknown> = JSON.parse(encodeIntakeEvent(event));
        base[field] = junk;
        const result = decodeIntakeEvent(JSON.stringify(base));
        if (result.ok) {
          expect(typeof junk).toBe("string");
          // Whatever decode accepts re-encodes to something it decodes identically.
          expect(decodeIntakeEvent(encodeIntakeEvent(result.event))).toEqual(result);
        }
      }),
      { numRuns: 500 },
    );
  });

  test("deeply nested JSON does not throw", () => {
    const deep = `${"[".repeat(100_000)}${"]".repeat(100_000)}`;
    expect(decodeIntakeEvent(deep).ok).toBe(false);
  });
});

describe("encodeSequencedEvent", () => {
  const sequenced: Sequenced<CreateOrder> = {
    ...sample,
    sequenceId: 10n,
    previousId: 9n,
    sequencedAt: "2026-01-15T12:00:01.000Z",
  };

  test("emits the exact bytes with a fixed key order and string ids", () => {
    expect(encodeSequencedEvent(sequenced)).toBe(
      '{"sequenceId":"10","previousId":"9","referenceId":"123456789012345678","type":"CREATE_ORDER",' +
        '"createdAt":"2026-01-15T12:00:00.000Z","sequencedAt":"2026-01-15T12:00:01.000Z","userId":"42",' +
        '"orderId":"7","direction":"BUY","price":"101.25","quantity":"0.5"}',
    );
  });

  test("property: key order and string-typed ids hold for any event", () => {
    const order = [
      "sequenceId",
      "previousId",
      "referenceId",
      "type",
      "createdAt",
      "sequencedAt",
      "userId",
      "orderId",
      "direction",
      "price",
      "quantity",
    ];
    fc.assert(
      fc.property(intakeArb, idArb, isoArb, (event, sequenceId, sequencedAt) => {
        const full: Sequenced<CreateOrder> = {
          ...event,
          sequenceId,
          previousId: sequenceId - 1n,
          sequencedAt,
        };
        const text = encodeSequencedEvent(full);
        const parsed: Record<string, unknown> = JSON.parse(text);
        expect(Object.keys(parsed)).toEqual(order);
        for (const value of Object.values(parsed)) expect(typeof value).toBe("string");
        expect(parsed).toEqual({
          sequenceId: sequenceId.toString(),
          previousId: (sequenceId - 1n).toString(),
          referenceId: event.referenceId.toString(),
          type: "CREATE_ORDER",
          createdAt: event.createdAt,
          sequencedAt,
          userId: event.userId.toString(),
          orderId: event.orderId.toString(),
          direction: event.direction,
          price: event.price,
          quantity: event.quantity,
        });
        // Reproducible bytes: encoding twice, or from a copy with a different property order, is identical.
        const reordered: Sequenced<CreateOrder> = {
          quantity: full.quantity,
          price: full.price,
          direction: full.direction,
          orderId: full.orderId,
          userId: full.userId,
          sequencedAt: full.sequencedAt,
          createdAt: full.createdAt,
          type: full.type,
          referenceId: full.referenceId,
          previousId: full.previousId,
          sequenceId: full.sequenceId,
        };
        expect(encodeSequencedEvent(reordered)).toBe(text);
      }),
    );
  });

  test("drops any extra in-memory properties", () => {
    const withExtra = { ...sequenced, secret: "x" } as Sequenced<CreateOrder>;
    expect(JSON.parse(encodeSequencedEvent(withExtra))).not.toHaveProperty("secret");
  });
});
