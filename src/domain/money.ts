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

export type DecimalCheck = { ok: true; value: string } | { ok: false; reason: string };

/** Validates a positive decimal string and returns its canonical form (trailing fraction zeros dropped). */
export function parsePositiveDecimal(input: unknown, rule: DecimalRule): DecimalCheck {
  if (typeof input !== "string") return { ok: false, reason: "must be a decimal string" };
  if (input.length > rule.maxIntegerDigits + rule.maxScale + 1 + 32) {
    return { ok: false, reason: "is too long" };
  }
  if (!PLAIN_DECIMAL.test(input)) {
    return { ok: false, reason: 'must be a plain decimal string like "12.5" (no sign, exponent or spaces)' };
  }
  const value = new Decimal(input);
  if (value.lte(0)) return { ok: false, reason: "must be greater than zero" };
  if (value.decimalPlaces() > rule.maxScale) {
    return { ok: false, reason: `must have at most ${rule.maxScale} decimal places` };
  }
  if (value.trunc().toFixed().length > rule.maxIntegerDigits) {
    return {
      ok: false,
      reason: `must have at most ${rule.maxIntegerDigits} digits before the decimal point`,
    };
  }
  return { ok: true, value: value.toFixed() };
}
