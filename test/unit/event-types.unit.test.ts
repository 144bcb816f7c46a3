/**
 * The four event types through the table-driven codec (EVENT_FIELDS): round trips, exact key order on the wire,
 * what decode refuses (cross-type fields, same-user transfers, bad ids and amounts, bad idempotency keys), where
 * the idempotency key travels (intake yes, TRADING no), and the sequencing rule's idempotency-key filter.
 */
import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import {
  type CancelOrder,
  type CreateOrder,
  type DecodeResult,
  type Deposit,
  decodeIntakeEvent,
  EVENT_FIELDS,
  EVENT_TYPES,
  type EventType,
  encodeIntakeEvent,
  encodeSequencedEvent,
  type Intake,
  isClientIdempotencyKey,
  ownerOf,
  type Sequenced,
  type Transfer,
} from "../../src/domain/events.ts";
import { AMOUNT_RULE, type DecimalRule, PRICE_RULE, QUANTITY_RULE } from "../../src/domain/money.ts";
import { EMPTY_HEAD, sequenceBatch } from "../../src/domain/sequencing.ts";
import { isoArb } from "../support/arbitraries.ts";

const MAX_INT64 = (1n << 63n) - 1n;

// ---------------------------------------------------------------------------------------------------------------
// Arbitraries
// ---------------------------------------------------------------------------------------------------------------

const idArb = fc.oneof(
  fc.bigInt({ min: 1n, max: MAX_INT64 }),
  fc.bigInt({ min: 1n, max: 1000n }),
  fc.constant(MAX_INT64),
);

/** Canonical positive decimals within a rule: no trailing fraction zeros, at most the rule's digits. */
function decimalArb(rule: DecimalRule): fc.Arbitrary<string> {
  const intPart = fc.oneof(
    fc.constant("0"),
    fc.stringMatching(new RegExp(`^[1-9][0-9]{0,${rule.maxIntegerDigits - 1}}$`)),
    fc.constant("9".repeat(rule.maxIntegerDigits)),
  );
  const fracPart = fc.option(fc.stringMatching(new RegExp(`^[0-9]{0,${rule.maxScale - 1}}[1-9]$`)), {
    nil: undefined,
  });
  return fc
    .tuple(intPart, fracPart)
    .map(([int, frac]) => (frac === undefined ? int : `${int}.${frac}`))
    .filter((s) => s !== "0");
}

const keyTailArb = fc.stringMatching(/^[A-Za-z0-9_-]{1,64}$/);
const scopedKeyArb = fc.tuple(idArb, keyTailArb).map(([user, key]) => `${user}:${key}`);

/** An envelope with or without an idempotency key (absent, not `undefined`, when there is none). */
const envelopeArb = fc.record(
  { referenceId: idArb, createdAt: isoArb, idempotencyKey: scopedKeyArb },
  { requiredKeys: ["referenceId", "createdAt"] },
);

const createOrderArb: fc.Arbitrary<Intake<CreateOrder>> = fc
  .tuple(
    envelopeArb,
    fc.record({
      type: fc.constant("CREATE_ORDER" as const),
      userId: idArb,
      orderId: idArb,
      direction: fc.constantFrom("BUY" as const, "SELL" as const),
      price: decimalArb(PRICE_RULE),
      quantity: decimalArb(QUANTITY_RULE),
    }),
  )
  .map(([envelope, body]) => ({ ...envelope, ...body }));

const cancelOrderArb: fc.Arbitrary<Intake<CancelOrder>> = fc
  .tuple(
    envelopeArb,
    fc.record({ type: fc.constant("CANCEL_ORDER" as const), userId: idArb, orderId: idArb }),
  )
  .map(([envelope, body]) => ({ ...envelope, ...body }));

const depositArb: fc.Arbitrary<Intake<Deposit>> = fc
  .tuple(
    envelopeArb,
    fc.record({
      type: fc.constant("DEPOSIT" as const),
      userId: idArb,
      assetId: idArb,
      amount: decimalArb(AMOUNT_RULE),
    }),
  )
  .map(([envelope, body]) => ({ ...envelope, ...body }));

const transferArb: fc.Arbitrary<Intake<Transfer>> = fc
  .tuple(
    envelopeArb,
    fc.record({
      type: fc.constant("TRANSFER" as const),
      fromUserId: idArb,
      toUserId: idArb,
      assetId: idArb,
      amount: decimalArb(AMOUNT_RULE),
    }),
  )
  .filter(([, body]) => body.fromUserId !== body.toUserId)
  .map(([envelope, body]) => ({ ...envelope, ...body }));

const ARBS: { [T in EventType]: fc.Arbitrary<Intake> } = {
  CREATE_ORDER: createOrderArb,
  CANCEL_ORDER: cancelOrderArb,
  DEPOSIT: depositArb,
  TRANSFER: transferArb,
};
const anyEventArb: fc.Arbitrary<Intake> = fc.oneof(createOrderArb, cancelOrderArb, depositArb, transferArb);

// ---------------------------------------------------------------------------------------------------------------
// Samples and helpers
// ---------------------------------------------------------------------------------------------------------------

const ENVELOPE = { referenceId: 500n, createdAt: "2026-03-01T10:00:00.000Z" } as const;

const SAMPLES: { [T in EventType]: Intake } = {
  CREATE_ORDER: {
    ...ENVELOPE,
    type: "CREATE_ORDER",
    userId: 1n,
    orderId: 2n,
    direction: "SELL",
    price: "10.5",
    quantity: "3",
  },
  CANCEL_ORDER: { ...ENVELOPE, type: "CANCEL_ORDER", userId: 1n, orderId: 2n },
  DEPOSIT: { ...ENVELOPE, type: "DEPOSIT", userId: 1n, assetId: 3n, amount: "100.25" },
  TRANSFER: { ...ENVELOPE, type: "TRANSFER", fromUserId: 1n, toUserId: 4n, assetId: 3n, amount: "7" },
};

/** The wire fields of each type, restated by hand so a change to EVENT_FIELDS has to change this too. */
const OWN_FIELDS: { [T in EventType]: string[] } = {
  CREATE_ORDER: ["userId", "orderId", "direction", "price", "quantity"],
  CANCEL_ORDER: ["userId", "orderId"],
  DEPOSIT: ["userId", "assetId", "amount"],
  TRANSFER: ["fromUserId", "toUserId", "assetId", "amount"],
};

const SEQUENCED_HEAD = ["sequenceId", "previousId", "referenceId", "type", "createdAt", "sequencedAt"];

function wireOf(type: EventType, overrides: Record<string, unknown> = {}, omit: string[] = []): string {
  const base: Record<string, unknown> = JSON.parse(encodeIntakeEvent(SAMPLES[type]));
  for (const key of omit) delete base[key];
  return JSON.stringify({ ...base, ...overrides });
}

function reasonOf(result: DecodeResult): string {
  if (result.ok) throw new Error(`expected a rejection, got ${encodeIntakeEvent(result.event)}`);
  return result.reason;
}

function sequencedOf(event: Intake, sequenceId: bigint, sequencedAt: string): Sequenced {
  return { ...event, sequenceId, previousId: sequenceId - 1n, sequencedAt } as Sequenced;
}

// ---------------------------------------------------------------------------------------------------------------
// Round trips
// ---------------------------------------------------------------------------------------------------------------

describe("EVENT_FIELDS", () => {
  test("lists the four types with their fields in wire order", () => {
    expect(EVENT_TYPES).toEqual(["CREATE_ORDER", "CANCEL_ORDER", "DEPOSIT", "TRANSFER"]);
    for (const type of EVENT_TYPES) {
      expect(EVENT_FIELDS[type].map(([name]) => name)).toEqual(OWN_FIELDS[type]);
    }
  });

  test("amounts follow AMOUNT_RULE (15 integer digits, 8 decimals)", () => {
    expect(AMOUNT_RULE).toEqual({ maxIntegerDigits: 15, maxScale: 8 });
    expect(EVENT_FIELDS.DEPOSIT.find(([name]) => name === "amount")?.[1]).toEqual({ decimal: AMOUNT_RULE });
    expect(EVENT_FIELDS.TRANSFER.find(([name]) => name === "amount")?.[1]).toEqual({ decimal: AMOUNT_RULE });
  });

  test("ownerOf: the sender of a transfer, else the user", () => {
    expect(ownerOf(SAMPLES.TRANSFER)).toBe(1n);
    expect(ownerOf({ ...SAMPLES.TRANSFER, fromUserId: 9n } as Transfer)).toBe(9n);
    expect(ownerOf(SAMPLES.DEPOSIT)).toBe(1n);
    expect(ownerOf(SAMPLES.CANCEL_ORDER)).toBe(1n);
    expect(ownerOf(SAMPLES.CREATE_ORDER)).toBe(1n);
  });
});

describe("encode → decode round trip, every type", () => {
  for (const type of EVENT_TYPES) {
    test(`property: ${type} (string and bytes), re-encoding gives the same bytes`, () => {
      fc.assert(
        fc.property(ARBS[type], (event) => {
          const text = encodeIntakeEvent(event);
          const decoded = decodeIntakeEvent(text);
          expect(decoded).toEqual({ ok: true, event });
          expect(decodeIntakeEvent(new TextEncoder().encode(text))).toEqual({ ok: true, event });
          if (!decoded.ok) return;
          expect(encodeIntakeEvent(decoded.event)).toBe(text);
          // An absent key stays absent (not present as undefined).
          expect("idempotencyKey" in decoded.event).toBe(event.idempotencyKey !== undefined);
        }),
        { numRuns: 300 },
      );
    });
  }

  test("property: intake key order is envelope, the type's fields in EVENT_FIELDS order, then idempotencyKey", () => {
    fc.assert(
      fc.property(anyEventArb, (event) => {
        const keys = Object.keys(JSON.parse(encodeIntakeEvent(event)));
        const expected = ["referenceId", "type", "createdAt", ...OWN_FIELDS[event.type]];
        if (event.idempotencyKey !== undefined) expected.push("idempotencyKey");
        expect(keys).toEqual(expected);
      }),
      { numRuns: 300 },
    );
  });

  test("samples encode to exact bytes", () => {
    expect(encodeIntakeEvent(SAMPLES.DEPOSIT)).toBe(
      '{"referenceId":"500","type":"DEPOSIT","createdAt":"2026-03-01T10:00:00.000Z","userId":"1",' +
        '"assetId":"3","amount":"100.25"}',
    );
    expect(encodeIntakeEvent({ ...SAMPLES.TRANSFER, idempotencyKey: "1:k" })).toBe(
      '{"referenceId":"500","type":"TRANSFER","createdAt":"2026-03-01T10:00:00.000Z","fromUserId":"1",' +
        '"toUserId":"4","assetId":"3","amount":"7","idempotencyKey":"1:k"}',
    );
    expect(encodeIntakeEvent(SAMPLES.CANCEL_ORDER)).toBe(
      '{"referenceId":"500","type":"CANCEL_ORDER","createdAt":"2026-03-01T10:00:00.000Z","userId":"1",' +
        '"orderId":"2"}',
    );
  });

  test("non-canonical amounts are canonicalised on decode", () => {
    expect(decodeIntakeEvent(wireOf("DEPOSIT", { amount: "100.2500" }))).toEqual({
      ok: true,
      event: SAMPLES.DEPOSIT,
    });
    expect(decodeIntakeEvent(wireOf("TRANSFER", { amount: "7.00000000" }))).toEqual({
      ok: true,
      event: SAMPLES.TRANSFER,
    });
  });
});

// ---------------------------------------------------------------------------------------------------------------
// encodeSequencedEvent
// ---------------------------------------------------------------------------------------------------------------

describe("encodeSequencedEvent per type", () => {
  test("property: exact key order (fixed head, then EVENT_FIELDS), all values strings", () => {
    fc.assert(
      fc.property(
        anyEventArb,
        fc.bigInt({ min: 1n, max: MAX_INT64 }),
        isoArb,
        (event, sequenceId, sequencedAt) => {
          const parsed: Record<string, unknown> = JSON.parse(
            encodeSequencedEvent(sequencedOf(event, sequenceId, sequencedAt)),
          );
          expect(Object.keys(parsed)).toEqual([
            ...SEQUENCED_HEAD,
            ...EVENT_FIELDS[event.type].map(([name]) => name),
          ]);
          expect(Object.keys(parsed)).toEqual([...SEQUENCED_HEAD, ...OWN_FIELDS[event.type]]);
          for (const value of Object.values(parsed)) expect(typeof value).toBe("string");
          const source = event as unknown as Record<string, unknown>;
          for (const name of OWN_FIELDS[event.type]) expect(parsed[name]).toBe(String(source[name]));
          expect(parsed.sequenceId).toBe(sequenceId.toString());
          expect(parsed.previousId).toBe((sequenceId - 1n).toString());
          expect(parsed.referenceId).toBe(event.referenceId.toString());
          expect(parsed.type).toBe(event.type);
        },
      ),
      { numRuns: 500 },
    );
  });

  test("exact bytes for each type", () => {
    const at = "2026-03-01T10:00:01.000Z";
    const head = '{"sequenceId":"7","previousId":"6","referenceId":"500",';
    const times = `"createdAt":"2026-03-01T10:00:00.000Z","sequencedAt":"${at}"`;
    expect(encodeSequencedEvent(sequencedOf(SAMPLES.CREATE_ORDER, 7n, at))).toBe(
      `${head}"type":"CREATE_ORDER",${times},"userId":"1","orderId":"2","direction":"SELL","price":"10.5","quantity":"3"}`,
    );
    expect(encodeSequencedEvent(sequencedOf(SAMPLES.CANCEL_ORDER, 7n, at))).toBe(
      `${head}"type":"CANCEL_ORDER",${times},"userId":"1","orderId":"2"}`,
    );
    expect(encodeSequencedEvent(sequencedOf(SAMPLES.DEPOSIT, 7n, at))).toBe(
      `${head}"type":"DEPOSIT",${times},"userId":"1","assetId":"3","amount":"100.25"}`,
    );
    expect(encodeSequencedEvent(sequencedOf(SAMPLES.TRANSFER, 7n, at))).toBe(
      `${head}"type":"TRANSFER",${times},"fromUserId":"1","toUserId":"4","assetId":"3","amount":"7"}`,
    );
  });

  test("fields of another type carried in memory are not emitted", () => {
    const polluted = {
      ...SAMPLES.DEPOSIT,
      orderId: 99n,
      direction: "BUY",
      toUserId: 5n,
    } as unknown as Intake;
    const parsed = JSON.parse(encodeSequencedEvent(sequencedOf(polluted, 1n, ENVELOPE.createdAt)));
    expect(Object.keys(parsed)).toEqual([...SEQUENCED_HEAD, ...OWN_FIELDS.DEPOSIT]);
    const intake = JSON.parse(encodeIntakeEvent(polluted));
    expect(Object.keys(intake)).toEqual(["referenceId", "type", "createdAt", ...OWN_FIELDS.DEPOSIT]);
  });
});

// ---------------------------------------------------------------------------------------------------------------
// The idempotency key: kept on intake, not published on TRADING
// ---------------------------------------------------------------------------------------------------------------

describe("idempotencyKey on the wire", () => {
  test("property: encodeIntakeEvent keeps it (last key), decode returns it; encodeSequencedEvent never emits it", () => {
    fc.assert(
      fc.property(anyEventArb, scopedKeyArb, isoArb, (event, key, sequencedAt) => {
        const keyed = { ...event, idempotencyKey: key };
        const intake = JSON.parse(encodeIntakeEvent(keyed));
        expect(intake.idempotencyKey).toBe(key);
        expect(Object.keys(intake).at(-1)).toBe("idempotencyKey");
        const decoded = decodeIntakeEvent(encodeIntakeEvent(keyed));
        expect(decoded.ok && decoded.event.idempotencyKey).toBe(key);

        const text = encodeSequencedEvent(sequencedOf(keyed, 1n, sequencedAt));
        expect(text).not.toContain("idempotencyKey");
        expect(text).not.toContain(JSON.stringify(key));
        // The same event without a key encodes to the same TRADING bytes.
        const { idempotencyKey: _drop, ...bare } = keyed;
        expect(encodeSequencedEvent(sequencedOf(bare as Intake, 1n, sequencedAt))).toBe(text);
      }),
      { numRuns: 300 },
    );
  });

  test("an event without a key has no idempotencyKey on the intake wire at all", () => {
    for (const type of EVENT_TYPES) {
      expect(encodeIntakeEvent(SAMPLES[type])).not.toContain("idempotencyKey");
      expect(encodeIntakeEvent({ ...SAMPLES[type], idempotencyKey: undefined })).not.toContain(
        "idempotencyKey",
      );
    }
  });

  const validKeys = [
    "1:a",
    "42:A-b_C-9",
    `9223372036854775807:${"z".repeat(64)}`,
    `1:${"-".repeat(64)}`,
    "1:_",
  ];
  test.each(validKeys)("accepts idempotencyKey %p", (key) => {
    for (const type of EVENT_TYPES) {
      const decoded = decodeIntakeEvent(wireOf(type, { idempotencyKey: key }));
      expect(decoded).toEqual({ ok: true, event: { ...SAMPLES[type], idempotencyKey: key } });
    }
  });

  const badKeys: unknown[] = [
    "",
    "1",
    "1:",
    ":abc",
    "0:abc",
    "01:abc",
    "-1:abc",
    "a:abc",
    "12345678901234567890:abc", // 20 digits
    `1:${"a".repeat(65)}`,
    "1:a b",
    "1:a.b",
    "1:a:b",
    "1:a/b",
    "1:é",
    "1:abc\n",
    " 1:abc",
    "1 :abc",
    1,
    null,
    true,
    ["1:a"],
    { key: "1:a" },
  ];
  test.each(badKeys.map((k) => [k]))("rejects idempotencyKey %p", (key) => {
    for (const type of EVENT_TYPES) {
      expect(reasonOf(decodeIntakeEvent(wireOf(type, { idempotencyKey: key })))).toBe(
        "idempotencyKey must be <user id>:<1-64 of [A-Za-z0-9_-]>",
      );
    }
  });

  test("property: a random string is accepted as a key exactly when it matches <digits>:<1-64 of [A-Za-z0-9_-]>", () => {
    const shape = /^[1-9][0-9]{0,18}:[A-Za-z0-9_-]{1,64}$/;
    fc.assert(
      fc.property(
        fc.oneof(
          fc.string({ maxLength: 80 }),
          fc.stringMatching(/^[0-9]{0,21}:[A-Za-z0-9_. :-]{0,70}$/),
          scopedKeyArb,
        ),
        fc.constantFrom(...EVENT_TYPES),
        (key, type) => {
          const decoded = decodeIntakeEvent(wireOf(type, { idempotencyKey: key }));
          expect(decoded.ok).toBe(shape.test(key));
        },
      ),
      { numRuns: 1000 },
    );
  });

  test("property: the API takes a client's key exactly when the event decode takes it scoped by its user", () => {
    fc.assert(
      fc.property(
        fc.oneof(fc.string({ maxLength: 80 }), fc.stringMatching(/^[A-Za-z0-9_. :-]{0,70}$/), keyTailArb),
        idArb,
        (key, user) => {
          const decoded = decodeIntakeEvent(wireOf("DEPOSIT", { idempotencyKey: `${user}:${key}` }));
          expect(isClientIdempotencyKey(key)).toBe(decoded.ok);
        },
      ),
      { numRuns: 1000 },
    );
  });
});

// ---------------------------------------------------------------------------------------------------------------
// What decode refuses
// ---------------------------------------------------------------------------------------------------------------

describe("decode refuses", () => {
  test("a TRANSFER from a user to the same user", () => {
    expect(reasonOf(decodeIntakeEvent(wireOf("TRANSFER", { toUserId: "1" })))).toBe(
      "toUserId must differ from fromUserId",
    );
    // Equal as numbers after canonical parsing, too (ids are strings: "1" vs "1" only; "01" is invalid).
    expect(reasonOf(decodeIntakeEvent(wireOf("TRANSFER", { fromUserId: "4", toUserId: "4" })))).toBe(
      "toUserId must differ from fromUserId",
    );
  });

  test("property: any TRANSFER with fromUserId == toUserId", () => {
    fc.assert(
      fc.property(transferArb, (event) => {
        const same = { ...event, toUserId: event.fromUserId };
        expect(reasonOf(decodeIntakeEvent(encodeIntakeEvent(same)))).toBe(
          "toUserId must differ from fromUserId",
        );
      }),
      { numRuns: 200 },
    );
  });

  /** For each type, the fields only other types have. */
  const foreignFields = (type: EventType): string[] => {
    const own = new Set(OWN_FIELDS[type]);
    return [...new Set(EVENT_TYPES.flatMap((t) => OWN_FIELDS[t]))].filter((f) => !own.has(f));
  };

  test("foreign-field table is what we think it is", () => {
    expect(foreignFields("CREATE_ORDER").sort()).toEqual(["amount", "assetId", "fromUserId", "toUserId"]);
    expect(foreignFields("CANCEL_ORDER").sort()).toEqual([
      "amount",
      "assetId",
      "direction",
      "fromUserId",
      "price",
      "quantity",
      "toUserId",
    ]);
    expect(foreignFields("DEPOSIT").sort()).toEqual([
      "direction",
      "fromUserId",
      "orderId",
      "price",
      "quantity",
      "toUserId",
    ]);
    expect(foreignFields("TRANSFER").sort()).toEqual(["direction", "orderId", "price", "quantity", "userId"]);
  });

  for (const type of EVENT_TYPES) {
    test(`fields of another type on a ${type}`, () => {
      for (const field of foreignFields(type)) {
        expect(reasonOf(decodeIntakeEvent(wireOf(type, { [field]: "1" })))).toBe(`unexpected field ${field}`);
      }
    });

    test(`a ${type} missing any of its own fields`, () => {
      for (const field of OWN_FIELDS[type]) {
        expect(reasonOf(decodeIntakeEvent(wireOf(type, {}, [field])))).toContain(field);
      }
    });

    test(`sequenced-only fields on a ${type}`, () => {
      for (const field of ["sequenceId", "previousId", "sequencedAt"]) {
        expect(reasonOf(decodeIntakeEvent(wireOf(type, { [field]: "1" })))).toBe(`unexpected field ${field}`);
      }
    });
  }

  test("property: a body of one type relabelled as another type is refused", () => {
    fc.assert(
      fc.property(anyEventArb, fc.constantFrom(...EVENT_TYPES), (event, otherType) => {
        fc.pre(otherType !== event.type);
        const wire: Record<string, unknown> = JSON.parse(encodeIntakeEvent(event));
        wire.type = otherType;
        const result = decodeIntakeEvent(JSON.stringify(wire));
        // CREATE_ORDER → CANCEL_ORDER etc. always differ in fields: one side has a field the other lacks.
        expect(result.ok).toBe(false);
      }),
      { numRuns: 300 },
    );
  });

  const badIds: unknown[] = [
    "0",
    "-1",
    "01",
    "abc",
    "1.0",
    "1e3",
    " 1",
    "9223372036854775808",
    "99999999999999999999",
    "",
    0,
    7,
    null,
    true,
    {},
    [],
  ];
  for (const type of ["DEPOSIT", "TRANSFER"] as const) {
    test(`a ${type} with a bad assetId`, () => {
      for (const bad of badIds) {
        expect(reasonOf(decodeIntakeEvent(wireOf(type, { assetId: bad })))).toBe(
          "assetId must be a positive 64-bit decimal string",
        );
      }
    });
  }
  test("bad user ids on every type", () => {
    for (const [type, field] of [
      ["DEPOSIT", "userId"],
      ["CANCEL_ORDER", "userId"],
      ["CANCEL_ORDER", "orderId"],
      ["TRANSFER", "fromUserId"],
      ["TRANSFER", "toUserId"],
    ] as const) {
      for (const bad of badIds) {
        expect(reasonOf(decodeIntakeEvent(wireOf(type, { [field]: bad })))).toBe(
          `${field} must be a positive 64-bit decimal string`,
        );
      }
    }
  });

  const badAmounts: unknown[] = [
    "0",
    "0.0",
    "0.00000000",
    "-1",
    "+1",
    "1e5",
    "1E5",
    "0x10",
    "NaN",
    "Infinity",
    "1.",
    ".5",
    " 1",
    "1 ",
    "1,5",
    "01",
    "1.123456789", // 9 decimals
    "0.000000001",
    "1234567890123456", // 16 integer digits
    "9999999999999999.5",
    "١٢",
    "9".repeat(100),
    "",
    1,
    1.5,
    null,
    {},
  ];
  for (const type of ["DEPOSIT", "TRANSFER"] as const) {
    test(`a ${type} with a bad amount`, () => {
      for (const bad of badAmounts) {
        const reason = reasonOf(decodeIntakeEvent(wireOf(type, { amount: bad })));
        expect({ bad, starts: reason.startsWith("amount ") }).toEqual({ bad, starts: true });
      }
    });

    test(`a ${type} amount at the AMOUNT_RULE bounds is accepted`, () => {
      for (const good of ["999999999999999.99999999", "0.00000001", "123456789012345", "1.10000000"]) {
        const decoded = decodeIntakeEvent(wireOf(type, { amount: good }));
        expect({ good, ok: decoded.ok }).toEqual({ good, ok: true });
      }
      // 13-15 integer digits are fine for an amount though not for a price.
      const decoded = decodeIntakeEvent(wireOf(type, { amount: "1234567890123" }));
      expect(decoded.ok).toBe(true);
      expect(decodeIntakeEvent(wireOf("CREATE_ORDER", { price: "1234567890123" })).ok).toBe(false);
    });
  }

  test("property: a decimal is accepted as an amount exactly when it has ≤15 integer and ≤8 decimal digits", () => {
    fc.assert(
      fc.property(
        fc.stringMatching(/^[1-9][0-9]{0,17}$/),
        fc.option(fc.stringMatching(/^[0-9]{0,10}[1-9]$/), { nil: undefined }),
        (int, frac) => {
          const amount = frac === undefined ? int : `${int}.${frac}`;
          const fits = int.length <= 15 && (frac?.length ?? 0) <= 8;
          const decoded = decodeIntakeEvent(wireOf("DEPOSIT", { amount }));
          expect({ amount, ok: decoded.ok }).toEqual({ amount, ok: fits });
        },
      ),
      { numRuns: 500 },
    );
  });
});

// ---------------------------------------------------------------------------------------------------------------
// sequenceBatch: the idempotency-key filter
// ---------------------------------------------------------------------------------------------------------------

describe("sequenceBatch drops repeated idempotency keys", () => {
  const NOW = "2026-03-01T10:00:05.000Z";
  const none = () => false;

  function keyed(referenceId: bigint, key: string | undefined, type: EventType = "DEPOSIT"): Intake {
    const event = { ...SAMPLES[type], referenceId } as Intake;
    if (key !== undefined) event.idempotencyKey = key;
    return event;
  }

  test("a key already stored drops the event, even with a new referenceId", () => {
    const batch = [keyed(10n, "1:a"), keyed(11n, "1:b"), keyed(12n, undefined)];
    const result = sequenceBatch(EMPTY_HEAD, batch, none, NOW, (key) => key === "1:a");
    expect(result.duplicates).toEqual([0]);
    expect(result.sequenced.map((e) => [e.referenceId, e.sequenceId])).toEqual([
      [11n, 1n],
      [12n, 2n],
    ]);
    expect(result.head.sequenceId).toBe(2n);
  });

  test("a key repeated inside the batch: the first one wins, later ones are dropped whatever their type", () => {
    const batch = [
      keyed(20n, "7:k", "CREATE_ORDER"),
      keyed(21n, "7:k", "CREATE_ORDER"),
      keyed(22n, "7:other", "CANCEL_ORDER"),
      keyed(23n, "7:k", "TRANSFER"),
    ];
    const result = sequenceBatch({ sequenceId: 5n, sequencedAt: null }, batch, none, NOW);
    expect(result.duplicates).toEqual([1, 3]);
    expect(result.sequenced.map((e) => [e.referenceId, e.sequenceId, e.previousId])).toEqual([
      [20n, 6n, 5n],
      [22n, 7n, 6n],
    ]);
    expect(result.sequenced[0]?.idempotencyKey).toBe("7:k");
  });

  test("keys are compared whole: the same tail under another user is a different key", () => {
    const batch = [keyed(30n, "1:k"), keyed(31n, "2:k"), keyed(32n, "1:K")];
    const result = sequenceBatch(EMPTY_HEAD, batch, none, NOW);
    expect(result.duplicates).toEqual([]);
    expect(result.sequenced).toHaveLength(3);
  });

  test("an event dropped for its referenceId does not reserve its key", () => {
    const batch = [keyed(40n, "1:x"), keyed(41n, "1:y")];
    const result = sequenceBatch(EMPTY_HEAD, batch, (ref) => ref === 40n, NOW);
    expect(result.duplicates).toEqual([0]);
    expect(result.sequenced.map((e) => e.referenceId)).toEqual([41n]);
  });

  test("everything dropped → empty result, head unchanged", () => {
    const head = { sequenceId: 9n, sequencedAt: "2026-03-01T10:00:00.000Z" };
    const result = sequenceBatch(head, [keyed(50n, "1:a"), keyed(51n, "1:a")], none, NOW, () => true);
    expect(result).toEqual({ sequenced: [], duplicates: [0, 1], head });
  });

  test("property: equals the rule restated (first of each referenceId and key, neither stored), gap-free", () => {
    const refPool = fc.bigInt({ min: 1n, max: 30n });
    const keyPool = fc.option(fc.constantFrom("1:a", "1:b", "2:a", "3:z", "4:q"), { nil: undefined });
    fc.assert(
      fc.property(
        fc.array(fc.tuple(refPool, keyPool, fc.constantFrom(...EVENT_TYPES)), { maxLength: 40 }),
        fc.uniqueArray(refPool, { maxLength: 10 }),
        fc.uniqueArray(fc.constantFrom<string>("1:a", "1:b", "2:a", "3:z", "4:q"), { maxLength: 3 }),
        fc.bigInt({ min: 0n, max: 1000n }),
        (spec, storedRefs, storedKeys, start) => {
          const batch = spec.map(([ref, key, type]) => keyed(ref, key, type));
          const refs = new Set(storedRefs);
          const keys = new Set(storedKeys);
          const result = sequenceBatch(
            { sequenceId: start, sequencedAt: null },
            batch,
            (r) => refs.has(r),
            NOW,
            (k) => keys.has(k),
          );
          const seenRefs = new Set<bigint>();
          const seenKeys = new Set<string>();
          const accepted: number[] = [];
          const dropped: number[] = [];
          batch.forEach((event, i) => {
            const key = event.idempotencyKey;
            const keyTaken = key !== undefined && (keys.has(key) || seenKeys.has(key));
            if (keyTaken || refs.has(event.referenceId) || seenRefs.has(event.referenceId)) {
              dropped.push(i);
              return;
            }
            seenRefs.add(event.referenceId);
            if (key !== undefined) seenKeys.add(key);
            accepted.push(i);
          });
          expect(result.duplicates).toEqual(dropped);
          expect(result.sequenced.map((e) => e.referenceId)).toEqual(
            accepted.map((i) => batch[i]?.referenceId ?? -1n),
          );
          result.sequenced.forEach((e, i) => {
            expect(e.sequenceId).toBe(start + BigInt(i) + 1n);
            expect(e.previousId).toBe(e.sequenceId - 1n);
            expect(e.sequencedAt).toBe(NOW);
          });
          // No key appears twice among the sequenced events, and none of them was stored already.
          const outKeys = result.sequenced.flatMap((e) => (e.idempotencyKey ? [e.idempotencyKey] : []));
          expect(new Set(outKeys).size).toBe(outKeys.length);
          for (const k of outKeys) expect(keys.has(k)).toBe(false);
        },
      ),
      { numRuns: 500 },
    );
  });
});
