import Decimal from "decimal.js";

/**
 * Decimal strings for prices, quantities and amounts. The wire form is plain digits with an optional fraction:
 * no sign, exponent, hex, NaN, Infinity, whitespace or leading "+". Values are kept as strings end to end and
 * only parsed here (decimal.js) to check bounds, so no precision is ever lost to a JS number.
 */
export type DecimalRule = { maxScale: number; maxIntegerDigits: number };

export const PRICE_RULE: DecimalRule = { maxScale: 8, maxIntegerDigits: 12 };
export const QUANTITY_RULE: DecimalRule = { maxScale: 8, maxIntegerDigits: 12 };
export const AMOUNT_RULE: DecimalRule = { maxScale: 8, maxIntegerDigits: 15 };

const PLAIN_DECIMAL = /^(0|[1-9][0-9]*)(\.[0-9]+)?$/;
/** PLAIN_DECIMAL with the fraction's significant digits (trailing zeros left out) captured. */
const PLAIN_DECIMAL_PARTS = /^(0|[1-9][0-9]*)(?:\.(?=[0-9])([0-9]*?)0*)?$/;

export type DecimalCheck = { ok: true; value: string } | { ok: false; reason: string };

const NOT_A_STRING: DecimalCheck = { ok: false, reason: "must be a decimal string" };
const TOO_LONG: DecimalCheck = { ok: false, reason: "is too long" };
const NOT_PLAIN: DecimalCheck = {
  ok: false,
  reason: 'must be a plain decimal string like "12.5" (no sign, exponent or spaces)',
};
const NOT_POSITIVE: DecimalCheck = { ok: false, reason: "must be greater than zero" };
const tooManyPlaces = (rule: DecimalRule): DecimalCheck => ({
  ok: false,
  reason: `must have at most ${rule.maxScale} decimal places`,
});
const tooManyDigits = (rule: DecimalRule): DecimalCheck => ({
  ok: false,
  reason: `must have at most ${rule.maxIntegerDigits} digits before the decimal point`,
});

/** Validates a positive decimal string and returns its canonical form (trailing fraction zeros dropped). */
export function parsePositiveDecimal(input: unknown, rule: DecimalRule): DecimalCheck {
  if (typeof input !== "string") return NOT_A_STRING;
  if (input.length > rule.maxIntegerDigits + rule.maxScale + 1 + 32) return TOO_LONG;
  if (!PLAIN_DECIMAL.test(input)) return NOT_PLAIN;
  const value = new Decimal(input);
  if (value.lte(0)) return NOT_POSITIVE;
  if (value.decimalPlaces() > rule.maxScale) return tooManyPlaces(rule);
  if (value.trunc().toFixed().length > rule.maxIntegerDigits) return tooManyDigits(rule);
  return { ok: true, value: value.toFixed() };
}

/**
 * The same check as parsePositiveDecimal, answer for answer (value and reason), without decimal.js: once the
 * input has the plain form `(0|[1-9][0-9]*)(\.[0-9]+)?`, everything decimal.js would compute follows from the
 * digits themselves — the value is positive iff some digit is non-zero, its decimal places are the fraction
 * without trailing zeros, its integer part is the written one (no leading zeros), and the canonical form is the
 * integer part plus the trimmed fraction. Used where every event passes (the API's validation, the sequencer's
 * decode); a property test holds it to parsePositiveDecimal, the decimal.js reference
 * (test/unit/money.unit.test.ts).
 */
export function parsePositiveDecimalFast(input: unknown, rule: DecimalRule): DecimalCheck {
  if (typeof input !== "string") return NOT_A_STRING;
  if (input.length > rule.maxIntegerDigits + rule.maxScale + 1 + 32) return TOO_LONG;
  const match = PLAIN_DECIMAL_PARTS.exec(input);
  if (match === null) return NOT_PLAIN;
  const integer = match[1] as string;
  const fraction = match[2] ?? ""; // digits after the point, trailing zeros excluded
  if (integer === "0" && fraction === "") return NOT_POSITIVE;
  if (fraction.length > rule.maxScale) return tooManyPlaces(rule);
  if (integer.length > rule.maxIntegerDigits) return tooManyDigits(rule);
  return { ok: true, value: fraction === "" ? integer : `${integer}.${fraction}` };
}
