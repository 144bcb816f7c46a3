/**
 * The fast way through for a TRADING body written the way the sequencer writes it (encodeSequencedEvent in
 * src/domain/events.ts: its keys in their fixed order, no spaces, no escapes): one pass over the received bytes
 * checking each value in place, instead of decoding the text, JSON.parse, then BigInts, Date round trips,
 * canonical decimals and a copy of the object for every event (that full decode, decodeTradingEvent in
 * trading-event.ts, was most of a replay's own CPU). It answers "certainly valid, at this position" or "look
 * closer": anything else — another key order, whitespace, an escape, a year past 9999 — gets the full decode,
 * whose answer and reason stand. So every check here may be stricter than the full decode, never laxer;
 * test/unit/trading-canonical.unit.test.ts holds it to the full decode on valid, mutated and boundary bodies.
 * Every byte it accepts is ASCII, so an accepted body's bytes are the UTF-8 of the text the full decode reads.
 *
 * The fields per type come from EVENT_FIELDS (src/domain/events.ts), as the encoder's do, so a new type is read
 * here too.
 */
import { EVENT_FIELDS, type EventType } from "../domain/events.ts";
import type { DecimalRule } from "../domain/money.ts";
import { ascii, bytesAre, digitsOfAt, EXACT_DIGITS_BELOW, sameBytes } from "./ascii-bytes.ts";

/**
 * Reads one field's value from b[from]: the index of its closing quote when the value is valid, else -1. The
 * value's own characters never include a quote, so the first quote after a valid value closes it.
 */
type ValueScan = (b: Uint8Array, from: number) => number;

const QUOTE = 34;
const DOT = 46;
const ZERO = 48;
const NINE = 57;
const MAX_INT64 = "9223372036854775807";

/** A positive signed-64-bit id, canonical decimal (what parsePositiveId accepts). */
function scanId(b: Uint8Array, from: number): number {
  const first = b[from] as number;
  if (first <= ZERO || first > NINE) return -1;
  let i = from + 1;
  for (; i < b.length; i++) {
    const c = b[i] as number;
    if (c < ZERO || c > NINE) break;
  }
  const length = i - from;
  if (b[i] !== QUOTE || length > MAX_INT64.length) return -1;
  if (length < MAX_INT64.length) return i;
  // As many digits as the largest, no leading zero: compared digit by digit.
  for (let k = 0; k < length; k++) {
    const d = (b[from + k] as number) - MAX_INT64.charCodeAt(k);
    if (d !== 0) return d < 0 ? i : -1;
  }
  return i;
}

/** The number b[from, to) writes when all are digits, else -1. */
function digitsAt(b: Uint8Array, from: number, to: number): number {
  let n = 0;
  for (let i = from; i < to; i++) {
    const c = b[i] as number;
    if (c < ZERO || c > NINE) return -1;
    n = n * 10 + (c - ZERO);
  }
  return n;
}

const DAYS_IN_MONTH = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

function daysIn(year: number, month: number): number {
  const leap = year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0);
  return month === 2 && leap ? 29 : (DAYS_IN_MONTH[month - 1] as number);
}

/**
 * `YYYY-MM-DDTHH:mm:ss.sssZ` naming a real instant: exactly what Date#toISOString writes for years 0000-9999, so
 * what the full decode's Date.parse round trip accepts there.
 */
function scanInstant(b: Uint8Array, from: number): number {
  const to = from + 24;
  if (
    b[to] !== QUOTE ||
    b[from + 4] !== 45 || // -
    b[from + 7] !== 45 ||
    b[from + 10] !== 84 || // T
    b[from + 13] !== 58 || // :
    b[from + 16] !== 58 ||
    b[from + 19] !== DOT ||
    b[from + 23] !== 90 // Z
  )
    return -1;
  const year = digitsAt(b, from, from + 4);
  const month = digitsAt(b, from + 5, from + 7);
  const day = digitsAt(b, from + 8, from + 10);
  if (year < 0 || month < 1 || month > 12 || day < 1 || day > daysIn(year, month)) return -1;
  const hour = digitsAt(b, from + 11, from + 13);
  const minute = digitsAt(b, from + 14, from + 16);
  const second = digitsAt(b, from + 17, from + 19);
  if (hour < 0 || hour > 23 || minute < 0 || minute > 59 || second < 0 || second > 59) return -1;
  return digitsAt(b, from + 20, from + 23) >= 0 ? to : -1;
}

/** createdAt: the intake's instant, years 2000-2999 only (isIsoInstant in src/domain/events.ts). */
function scanIntakeInstant(b: Uint8Array, from: number): number {
  return b[from] === 50 ? scanInstant(b, from) : -1;
}

/**
 * A plain positive decimal within `rule` (what parsePositiveDecimalFast accepts): `(0|[1-9][0-9]*)(\.[0-9]+)?`,
 * not zero, at most maxScale places once trailing zeros are dropped, at most maxIntegerDigits before the point.
 */
function decimalScan(rule: DecimalRule): ValueScan {
  const maxLength = rule.maxIntegerDigits + rule.maxScale + 1 + 32;
  return (b, from) => {
    let i = from;
    let nonZero = false;
    if (b[i] === ZERO) i++;
    else {
      for (; i < b.length; i++) {
        const c = b[i] as number;
        if (c < ZERO || c > NINE) break;
      }
      if (i === from) return -1;
      nonZero = true;
    }
    if (i - from > rule.maxIntegerDigits) return -1;
    // Places up to the last non-zero digit of the fraction.
    let places = 0;
    if (b[i] === DOT) {
      const point = i++;
      for (; i < b.length; i++) {
        const c = b[i] as number;
        if (c < ZERO || c > NINE) break;
        if (c !== ZERO) {
          nonZero = true;
          places = i - point;
        }
      }
      if (i === point + 1) return -1;
    }
    if (b[i] !== QUOTE || i - from > maxLength) return -1;
    return nonZero && places <= rule.maxScale ? i : -1;
  };
}

const BUY = ascii('BUY"');
const SELL = ascii('SELL"');

function scanDirection(b: Uint8Array, from: number): number {
  if (bytesAre(b, from, BUY)) return from + BUY.length - 1;
  return bytesAre(b, from, SELL) ? from + SELL.length - 1 : -1;
}

/**
 * A type as the encoder writes it: its name with what follows up to createdAt's value, its own fields (each
 * `","<name>":"` and its value's scan), and for a transfer the indexes of the two user ids that must differ
 * (crossFieldProblem in src/domain/events.ts).
 */
type Layout = {
  type: EventType;
  nameToCreatedAt: Uint8Array;
  fields: readonly { readonly lead: Uint8Array; readonly scan: ValueScan }[];
  distinct: readonly [number, number] | null;
};

const LAYOUTS: readonly Layout[] = (Object.keys(EVENT_FIELDS) as EventType[]).map((type) => {
  const names = EVENT_FIELDS[type].map(([name]) => name);
  const fields = EVENT_FIELDS[type].map(([name, kind]) => ({
    lead: ascii(`","${name}":"`),
    scan: kind === "id" ? scanId : kind === "direction" ? scanDirection : decimalScan(kind.decimal),
  }));
  const ids = [names.indexOf("fromUserId"), names.indexOf("toUserId")].sort((x, y) => x - y);
  const distinct = type === "TRANSFER" ? ([ids[0] as number, ids[1] as number] as const) : null;
  return { type, nameToCreatedAt: ascii(`${type}","createdAt":"`), fields, distinct };
});

function layoutAt(b: Uint8Array, at: number): Layout | undefined {
  for (const layout of LAYOUTS) if (bytesAre(b, at, layout.nameToCreatedAt)) return layout;
  return undefined;
}

const OPEN = ascii('{"sequenceId":"');
const PREVIOUS = ascii('","previousId":"');
const REFERENCE = ascii('","referenceId":"');
const TYPE = ascii('","type":"');
const SEQUENCED = ascii('","sequencedAt":"');
const CLOSE = ascii('"}');

/**
 * The event type of body `b` when it is, for certain, the valid sequenced event at `position` (previousId
 * position - 1), in the encoder's layout; null to look closer (the full decode). Positions from
 * EXACT_DIGITS_BELOW (10^15) on are always looked at closer.
 */
export function canonicalEventTypeAt(b: Uint8Array, position: number): EventType | null {
  if (!(position >= 1 && position < EXACT_DIGITS_BELOW)) return null;
  // The sequencing fields: the expected position and previousId, digit for digit.
  if (!bytesAre(b, 0, OPEN)) return null;
  let at = digitsOfAt(b, OPEN.length, position);
  if (at < 0 || !bytesAre(b, at, PREVIOUS)) return null;
  at = digitsOfAt(b, at + PREVIOUS.length, position - 1);
  if (at < 0) return null;
  if (!bytesAre(b, at, REFERENCE)) return null;
  let end = scanId(b, at + REFERENCE.length);
  if (end < 0 || !bytesAre(b, end, TYPE)) return null;
  at = end + TYPE.length;
  const layout = layoutAt(b, at);
  if (layout === undefined) return null;
  end = scanIntakeInstant(b, at + layout.nameToCreatedAt.length);
  if (end < 0 || !bytesAre(b, end, SEQUENCED)) return null;
  end = scanInstant(b, end + SEQUENCED.length);
  if (end < 0) return null;
  const { fields, distinct } = layout;
  let distinctFrom = 0;
  let distinctLength = 0;
  for (let index = 0; index < fields.length; index++) {
    const { lead, scan } = fields[index] as Layout["fields"][number];
    if (!bytesAre(b, end, lead)) return null;
    at = end + lead.length;
    end = scan(b, at);
    if (end < 0) return null;
    if (distinct === null) continue;
    // Canonical ids: the same bytes are the same id.
    if (index === distinct[0]) {
      distinctFrom = at;
      distinctLength = end - at;
    } else if (
      index === distinct[1] &&
      end - at === distinctLength &&
      sameBytes(b, at, distinctFrom, distinctLength)
    )
      return null;
  }
  return bytesAre(b, end, CLOSE) && end + CLOSE.length === b.length ? layout.type : null;
}
