import { describe, expect, test } from "bun:test";
import Decimal from "decimal.js";
import fc from "fast-check";
import {
  AMOUNT_RULE,
  type DecimalRule,
  PRICE_RULE,
  parsePositiveDecimal,
  parsePositiveDecimalFast,
  QUANTITY_RULE,
} from "../../src/domain/money.ts";

function accepted(input: unknown, rule: DecimalRule = PRICE_RULE): string {
  const result = parsePositiveDecimal(input, rule);
  if (!result.ok) throw new Error(`expected ${JSON.stringify(input)} to be accepted, got: ${result.reason}`);
  return result.value;
}

function rejected(input: unknown, rule: DecimalRule = PRICE_RULE): string {
  const result = parsePositiveDecimal(input, rule);
  if (result.ok)
    throw new Error(`expected ${JSON.stringify(input)} to be rejected, got value ${result.value}`);
  return result.reason;
}

/** Canonical positive decimals within 12 integer digits and 8 decimal places. */
const validDecimal = fc
  .tuple(
    fc.oneof(fc.constant("0"), fc.stringMatching(/^[1-9][0-9]{0,11}$/)),
    fc.option(fc.stringMatching(/^[0-9]{1,8}$/), { nil: undefined }),
  )
  .map(([int, frac]) => (frac === undefined ? int : `${int}.${frac}`))
  .filter((s) => new Decimal(s).gt(0));

describe("rules", () => {
  test("price and quantity allow 12 integer digits and 8 decimal places", () => {
    expect(PRICE_RULE).toEqual({ maxScale: 8, maxIntegerDigits: 12 });
    expect(QUANTITY_RULE).toEqual({ maxScale: 8, maxIntegerDigits: 12 });
  });
});

describe("parsePositiveDecimal accepts", () => {
  test.each([
    ["1", "1"],
    ["0.5", "0.5"],
    ["123456789012.12345678", "123456789012.12345678"],
    ["999999999999.99999999", "999999999999.99999999"],
    ["0.00000001", "0.00000001"],
    ["100", "100"],
    ["1.50", "1.5"],
    ["1.0", "1"],
    ["10.00000000", "10"],
    ["0.10", "0.1"],
  ])("%p as %p", (input, canonical) => {
    expect(accepted(input)).toBe(canonical);
    expect(accepted(input, QUANTITY_RULE)).toBe(canonical);
  });

  test("tiny and huge values are never written with an exponent", () => {
    expect(accepted("0.00000001")).not.toContain("e");
    expect(accepted("100000000000")).toBe("100000000000");
  });

  test("trailing fraction zeros do not count towards the scale limit", () => {
    // Nine written decimal places, but the value only has one.
    expect(accepted("1.500000000")).toBe("1.5");
  });

  test("a custom rule is honoured", () => {
    const rule: DecimalRule = { maxScale: 2, maxIntegerDigits: 3 };
    expect(accepted("999.99", rule)).toBe("999.99");
    expect(rejected("999.999", rule)).toContain("2 decimal places");
    expect(rejected("1000", rule)).toContain("3 digits");
  });
});

describe("parsePositiveDecimal rejects", () => {
  test.each([
    "0",
    "0.0",
    "0.00000000",
    "-1",
    "-0.5",
    "+1",
    "1e5",
    "1E5",
    "0x10",
    "NaN",
    "Infinity",
    "-Infinity",
    " 1",
    "1 ",
    "\t1",
    "1\n",
    "1.",
    ".5",
    "",
    "01",
    "00.5",
    "1,5",
    "1.2.3",
    "1_000",
    "١", // Arabic-Indic digit
  ])("string %p", (input) => {
    expect(rejected(input).length).toBeGreaterThan(0);
  });

  test.each<[unknown]>([[1.5], [1], [1n], [null], [undefined], [{}], [["1"]], [true], [new String("1")]])(
    "non-string %p",
    (input) => {
      expect(rejected(input)).toBe("must be a decimal string");
    },
  );

  test("zero is rejected as not positive", () => {
    expect(rejected("0")).toContain("greater than zero");
    expect(rejected("0.0")).toContain("greater than zero");
  });

  test("nine significant decimal places", () => {
    expect(rejected("0.123456789")).toContain("8 decimal places");
    expect(rejected("1.000000001")).toContain("8 decimal places");
    expect(rejected("0.000000001")).toContain("8 decimal places");
  });

  test("thirteen integer digits", () => {
    expect(rejected("1234567890123")).toContain("12 digits");
    expect(rejected("1000000000000.5")).toContain("12 digits");
  });

  test("very long strings", () => {
    expect(rejected("1".repeat(10_000))).toBe("is too long");
    expect(rejected(`0.${"0".repeat(100)}1`)).toBe("is too long");
    expect(rejected(`1.${"0".repeat(100)}`)).toBe("is too long");
  });

  test("property: more than 8 significant decimal places is rejected", () => {
    fc.assert(
      fc.property(
        fc.stringMatching(/^(0|[1-9][0-9]{0,11})$/),
        fc.stringMatching(/^[0-9]{8,20}[1-9]$/),
        (int, frac) => !parsePositiveDecimal(`${int}.${frac}`, PRICE_RULE).ok,
      ),
    );
  });

  test("property: more than 12 integer digits is rejected", () => {
    fc.assert(
      fc.property(
        fc.stringMatching(/^[1-9][0-9]{12,30}$/),
        fc.option(fc.stringMatching(/^[0-9]{1,8}$/), { nil: undefined }),
        (int, frac) => !parsePositiveDecimal(frac === undefined ? int : `${int}.${frac}`, QUANTITY_RULE).ok,
      ),
    );
  });
});

describe("parsePositiveDecimal properties", () => {
  test("any valid decimal within bounds is accepted with canonical value Decimal(input).toFixed()", () => {
    fc.assert(
      fc.property(validDecimal, (input) => {
        const result = parsePositiveDecimal(input, PRICE_RULE);
        expect(result).toEqual({ ok: true, value: new Decimal(input).toFixed() });
      }),
      { numRuns: 500 },
    );
  });

  test("trailing zeros appended to a valid decimal do not change the canonical value", () => {
    fc.assert(
      fc.property(validDecimal, fc.integer({ min: 1, max: 10 }), (input, zeros) => {
        const padded = input.includes(".") ? input + "0".repeat(zeros) : `${input}.${"0".repeat(zeros)}`;
        const a = parsePositiveDecimal(input, PRICE_RULE);
        const b = parsePositiveDecimal(padded, PRICE_RULE);
        expect(b).toEqual(a);
      }),
    );
  });

  test("canonicalisation is idempotent", () => {
    fc.assert(
      fc.property(validDecimal, (input) => {
        const once = accepted(input);
        expect(accepted(once)).toBe(once);
        expect(once.endsWith("0") && once.includes(".")).toBe(false);
        expect(once.endsWith(".")).toBe(false);
      }),
    );
  });

  test("never throws on arbitrary strings, and anything accepted is a plain positive decimal", () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.string(),
          fc.string({ unit: "grapheme-ascii", maxLength: 80 }),
          fc.stringMatching(/^[-+0-9.eE]{0,25}$/),
        ),
        (input) => {
          const result = parsePositiveDecimal(input, PRICE_RULE);
          if (result.ok) {
            expect(result.value).toMatch(/^(0|[1-9][0-9]{0,11})(\.[0-9]{0,7}[1-9])?$/);
            expect(new Decimal(result.value).gt(0)).toBe(true);
          } else {
            expect(typeof result.reason).toBe("string");
          }
        },
      ),
      { numRuns: 1000 },
    );
  });

  test("never throws on arbitrary values", () => {
    fc.assert(
      fc.property(fc.anything(), (input) => {
        const result = parsePositiveDecimal(input, QUANTITY_RULE);
        if (typeof input !== "string") expect(result.ok).toBe(false);
      }),
    );
  });
});

describe("parsePositiveDecimalFast (the API's validation and the sequencer's decode) agrees with parsePositiveDecimal (decimal.js)", () => {
  const rules: DecimalRule[] = [PRICE_RULE, QUANTITY_RULE, AMOUNT_RULE, { maxScale: 2, maxIntegerDigits: 3 }];
  const agree = (input: unknown) => {
    for (const rule of rules)
      expect(parsePositiveDecimalFast(input, rule)).toEqual(parsePositiveDecimal(input, rule));
  };

  test.each<[unknown]>([
    ["1"],
    ["0"],
    ["0.0"],
    ["00"],
    ["1."],
    [".5"],
    ["1.50"],
    ["1.500000000"],
    ["0.000000001"],
    ["0.00000001"],
    ["999999999999.99999999"],
    ["1000000000000"],
    ["1000000000000.0"],
    ["999.999"],
    ["1000"],
    ["0.100"],
    ["10.00000000"],
    ["1e5"],
    ["-1"],
    ["+1"],
    ["1\n"],
    [" 1"],
    ["1.2.3"],
    [""],
    ["١"],
    ["1".repeat(10_000)],
    [`0.${"0".repeat(100)}1`],
    [`1.${"0".repeat(100)}`],
    [`1.${"0".repeat(30)}`],
    [`0.${"0".repeat(30)}`],
    [1.5],
    [null],
    [undefined],
    [new String("1")],
  ])("%p", (input) => agree(input));

  test("property: decimal-shaped strings (digits, points, zeros, signs, exponents), every rule", () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.stringMatching(/^[0-9]{0,20}(\.[0-9]{0,20})?$/),
          fc.stringMatching(/^(0|[1-9][0-9]{0,16})\.[0-9]{0,10}0{0,40}$/),
          fc.stringMatching(/^0{0,3}[0-9]{0,3}(\.0{0,12}[0-9]{0,3}0{0,5})?$/),
          fc.stringMatching(/^[-+0-9.eE ]{0,25}$/),
        ),
        (input) => agree(input),
      ),
      { numRuns: 5000 },
    );
  });

  test("property: valid decimals, with and without padding zeros", () => {
    fc.assert(
      fc.property(validDecimal, fc.integer({ min: 0, max: 40 }), (input, zeros) => {
        agree(input);
        agree(input.includes(".") ? input + "0".repeat(zeros) : `${input}.${"0".repeat(zeros + 1)}`);
      }),
      { numRuns: 2000 },
    );
  });

  test("property: arbitrary strings and values", () => {
    fc.assert(
      fc.property(
        fc.oneof(fc.string(), fc.string({ unit: "grapheme-ascii", maxLength: 80 }), fc.anything()),
        (input) => agree(input),
      ),
      { numRuns: 2000 },
    );
  });
});
