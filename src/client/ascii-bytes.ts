/**
 * Comparing received bytes with ASCII text without decoding them (the TRADING reader's per-message checks, where
 * a string per field was a large part of the cost).
 */

/** `text` (ASCII) as bytes. */
export const ascii = (text: string): Uint8Array => Uint8Array.from(text, (c) => c.charCodeAt(0));

/** Whether b[at, at + text.length) is `text` (as bytes). */
export function bytesAre(b: Uint8Array, at: number, text: Uint8Array): boolean {
  if (at < 0 || at + text.length > b.length) return false;
  for (let i = 0; i < text.length; i++) if (b[at + i] !== text[i]) return false;
  return true;
}

/** Whether b[at, at + text.length) is `text`, an ASCII string (e.g. a position's digits). */
export function textAt(b: Uint8Array, at: number, text: string): boolean {
  if (at < 0 || at + text.length > b.length) return false;
  for (let i = 0; i < text.length; i++) if (b[at + i] !== text.charCodeAt(i)) return false;
  return true;
}

/** Whether b[a, a + n) and b[c, c + n) hold the same bytes. */
export function sameBytes(b: Uint8Array, a: number, c: number, n: number): boolean {
  for (let i = 0; i < n; i++) if (b[a + i] !== b[c + i]) return false;
  return true;
}

/** Below this a position's decimal digits are read as a number exactly (15 digits; 2^53 has 16). */
export const EXACT_DIGITS_BELOW = 1e15;

/**
 * Where the decimal digits of `value` (an integer, 0 ≤ value < EXACT_DIGITS_BELOW) written at b[at] end, when
 * b[at] starts with exactly them (no leading zero, no more digits); else -1. Compared as a number, so the caller
 * needs no text of `value`.
 */
export function digitsOfAt(b: Uint8Array, at: number, value: number): number {
  let end = at;
  let n = 0;
  for (; end < b.length && end - at < 16; end++) {
    const c = b[end] as number;
    if (c < 48 || c > 57) break;
    n = n * 10 + (c - 48);
  }
  const digits = end - at;
  if (digits === 0 || digits > 15 || (digits > 1 && b[at] === 48)) return -1;
  return n === value ? end : -1;
}
