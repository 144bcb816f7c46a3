/**
 * The events this service orders, in two shapes:
 * - IntakeEvent: what the API publishes on SEQUENCE (no sequence number yet), keyed by referenceId;
 * - SequencedEvent: what the sequencer stores in Postgres and publishes on TRADING.
 * Every id and decimal is a string on the wire; ids are bigint in memory.
 *
 * Each event type is described once, as an ordered list of typed fields (EVENT_FIELDS); the encoders, the
 * decoder and the JSON key order all follow that list, so adding a type is one entry here.
 */
import { parsePositiveId } from "./ids.ts";
import {
  AMOUNT_RULE,
  type DecimalCheck,
  type DecimalRule,
  PRICE_RULE,
  parsePositiveDecimal,
  parsePositiveDecimalFast,
  QUANTITY_RULE,
} from "./money.ts";

export type Direction = "BUY" | "SELL";

export type CreateOrder = {
  type: "CREATE_ORDER";
  userId: bigint;
  orderId: bigint;
  direction: Direction;
  price: string;
  quantity: string;
};
export type CancelOrder = { type: "CANCEL_ORDER"; userId: bigint; orderId: bigint };
export type Deposit = { type: "DEPOSIT"; userId: bigint; assetId: bigint; amount: string };
export type Transfer = {
  type: "TRANSFER";
  fromUserId: bigint;
  toUserId: bigint;
  assetId: bigint;
  amount: string;
};

/** What a request asks for: one of the four event types with its own fields. */
export type EventBody = CreateOrder | CancelOrder | Deposit | Transfer;
export type EventType = EventBody["type"];

type Envelope = {
  referenceId: bigint;
  createdAt: string;
  /** `<principal user id>:<Idempotency-Key>` when the request carried one; stored, not published on TRADING. */
  idempotencyKey?: string | undefined;
};
export type Intake<T extends EventBody = EventBody> = T & Envelope;
export type Sequenced<T extends EventBody = EventBody> = Intake<T> & {
  sequenceId: bigint;
  previousId: bigint;
  sequencedAt: string;
};
export type IntakeEvent = Intake;
export type SequencedEvent = Sequenced;

type FieldKind = "id" | "direction" | { decimal: DecimalRule };
const ID = "id" as const;

export const EVENT_FIELDS: { readonly [T in EventType]: readonly (readonly [string, FieldKind])[] } = {
  CREATE_ORDER: [
    ["userId", ID],
    ["orderId", ID],
    ["direction", "direction"],
    ["price", { decimal: PRICE_RULE }],
    ["quantity", { decimal: QUANTITY_RULE }],
  ],
  CANCEL_ORDER: [
    ["userId", ID],
    ["orderId", ID],
  ],
  DEPOSIT: [
    ["userId", ID],
    ["assetId", ID],
    ["amount", { decimal: AMOUNT_RULE }],
  ],
  TRANSFER: [
    ["fromUserId", ID],
    ["toUserId", ID],
    ["assetId", ID],
    ["amount", { decimal: AMOUNT_RULE }],
  ],
};

export const EVENT_TYPES = Object.keys(EVENT_FIELDS) as EventType[];

function isEventType(value: unknown): value is EventType {
  return typeof value === "string" && Object.hasOwn(EVENT_FIELDS, value);
}

/** NATS subject suffix for an event type: CREATE_ORDER → create_order. */
export function subjectToken(type: EventType): string {
  return type.toLowerCase();
}

/** The user an event belongs to (stored in events.user_id): the sender of a transfer, else its user. */
export function ownerOf(event: EventBody): bigint {
  return event.type === "TRANSFER" ? event.fromUserId : event.userId;
}

/**
 * Every user an event concerns, who may read it: its owner, and a transfer's recipient as well. `event` is the
 * JSON of an intake or sequenced event (ids as decimal strings); anything else concerns nobody.
 */
export function partiesOfJson(json: string): string[] {
  let event: unknown;
  try {
    event = JSON.parse(json);
  } catch {
    return [];
  }
  if (typeof event !== "object" || event === null) return [];
  const e = event as Record<string, unknown>;
  const ids = e.type === "TRANSFER" ? [e.fromUserId, e.toUserId] : [e.userId];
  return ids.filter((id): id is string => typeof id === "string");
}

/** The type's own fields in their wire order, with bigint ids as decimal strings. */
function wireFields(event: EventBody): Record<string, string> {
  const source = event as unknown as Record<string, bigint | string>;
  const out: Record<string, string> = {};
  for (const [name] of EVENT_FIELDS[event.type]) out[name] = String(source[name]);
  return out;
}

export function encodeIntakeEvent(event: IntakeEvent): string {
  return JSON.stringify({
    referenceId: event.referenceId.toString(),
    type: event.type,
    createdAt: event.createdAt,
    ...wireFields(event),
    ...(event.idempotencyKey === undefined ? {} : { idempotencyKey: event.idempotencyKey }),
  });
}

/** The JSON stored in Postgres and published on TRADING; one fixed key order so the bytes are reproducible. */
export function encodeSequencedEvent(event: SequencedEvent): string {
  return JSON.stringify({
    sequenceId: event.sequenceId.toString(),
    previousId: event.previousId.toString(),
    referenceId: event.referenceId.toString(),
    type: event.type,
    createdAt: event.createdAt,
    sequencedAt: event.sequencedAt,
    ...wireFields(event),
  });
}

export type DecodeResult = { ok: true; event: IntakeEvent } | { ok: false; reason: string };

/** Exactly what Date#toISOString produces, years 2000-2999: a value Postgres will always accept. */
function isIsoInstant(value: unknown): value is string {
  if (typeof value !== "string" || value.length !== 24 || !value.startsWith("2")) return false;
  const time = Date.parse(value);
  return !Number.isNaN(time) && new Date(time).toISOString() === value;
}

/** What a client may send as Idempotency-Key: 1-64 characters of A-Z a-z 0-9 _ - (safe in a KV key and a log). */
const CLIENT_KEY = "[A-Za-z0-9_-]{1,64}";
const CLIENT_IDEMPOTENCY_KEY = new RegExp(`^${CLIENT_KEY}$`);
/** The key an event carries: the client's key scoped by its user, "<user id>:<key>". */
const IDEMPOTENCY_KEY = new RegExp(`^[1-9][0-9]{0,18}:${CLIENT_KEY}$`);

/** Whether `key` is a well-formed Idempotency-Key as a client sends it (before it is scoped by its user). */
export function isClientIdempotencyKey(key: string): boolean {
  return CLIENT_IDEMPOTENCY_KEY.test(key);
}

/**
 * Checks one field of a body against its kind; the parsed value or a reason. `decimal` picks the decimal check:
 * decimal.js by default, the string-only equivalent in the sequencer's decode (same answers, property-tested).
 */
export function checkField(
  name: string,
  kind: FieldKind,
  value: unknown,
  decimalCheck: (input: unknown, rule: DecimalRule) => DecimalCheck = parsePositiveDecimal,
): { ok: true; value: bigint | string } | { ok: false; reason: string } {
  if (kind === "id") {
    const id = parsePositiveId(value);
    return id === null
      ? { ok: false, reason: `${name} must be a positive 64-bit decimal string` }
      : { ok: true, value: id };
  }
  if (kind === "direction") {
    return value === "BUY" || value === "SELL"
      ? { ok: true, value }
      : { ok: false, reason: `${name} must be BUY or SELL` };
  }
  const decimal = decimalCheck(value, kind.decimal);
  return decimal.ok ? { ok: true, value: decimal.value } : { ok: false, reason: `${name} ${decimal.reason}` };
}

/** Rules that span fields. */
export function crossFieldProblem(body: EventBody): { field: string; reason: string } | null {
  if (body.type === "TRANSFER" && body.fromUserId === body.toUserId) {
    return { field: "toUserId", reason: "toUserId must differ from fromUserId" };
  }
  return null;
}

/** The keys an intake message of each type may carry. */
const ALLOWED_KEYS: { readonly [T in EventType]: ReadonlySet<string> } = Object.fromEntries(
  EVENT_TYPES.map((type) => [
    type,
    new Set([
      "referenceId",
      "type",
      "createdAt",
      "idempotencyKey",
      ...EVENT_FIELDS[type].map(([name]) => name),
    ]),
  ]),
) as unknown as { [T in EventType]: ReadonlySet<string> };

const utf8 = new TextDecoder();

/**
 * Decodes and fully re-validates a message taken from SEQUENCE. Anyone with publish rights can put bytes on the
 * intake stream, so the sequencer trusts nothing the API would have checked: a message that fails here is
 * recorded as rejected, never sequenced.
 */
export function decodeIntakeEvent(bytes: Uint8Array | string): DecodeResult {
  let raw: unknown;
  try {
    raw = JSON.parse(typeof bytes === "string" ? bytes : utf8.decode(bytes));
  } catch {
    return { ok: false, reason: "not valid JSON" };
  }
  if (typeof raw !== "object" || raw === null || Array.isArray(raw))
    return { ok: false, reason: "not a JSON object" };
  return decodeIntakeFields(raw as Record<string, unknown>);
}

/**
 * decodeIntakeEvent's checks on an already parsed JSON object (a TRADING reader parses the body once, takes the
 * sequencing fields off and checks the rest here, instead of encoding it again for decodeIntakeEvent).
 */
export function decodeIntakeFields(o: Record<string, unknown>): DecodeResult {
  if (!isEventType(o.type)) return { ok: false, reason: `unknown event type ${JSON.stringify(o.type)}` };
  const spec = EVENT_FIELDS[o.type];
  const allowed = ALLOWED_KEYS[o.type];
  for (const key of Object.keys(o))
    if (!allowed.has(key)) return { ok: false, reason: `unexpected field ${key}` };
  const referenceId = parsePositiveId(o.referenceId);
  if (referenceId === null)
    return { ok: false, reason: "referenceId must be a positive 64-bit decimal string" };
  if (!isIsoInstant(o.createdAt)) return { ok: false, reason: "createdAt must be an ISO-8601 UTC instant" };
  if (
    o.idempotencyKey !== undefined &&
    (typeof o.idempotencyKey !== "string" || !IDEMPOTENCY_KEY.test(o.idempotencyKey))
  ) {
    return { ok: false, reason: "idempotencyKey must be <user id>:<1-64 of [A-Za-z0-9_-]>" };
  }
  const event: Record<string, unknown> = { referenceId, type: o.type, createdAt: o.createdAt };
  if (o.idempotencyKey !== undefined) event.idempotencyKey = o.idempotencyKey;
  for (const [name, kind] of spec) {
    const checked = checkField(name, kind, o[name], parsePositiveDecimalFast);
    if (!checked.ok) return { ok: false, reason: checked.reason };
    event[name] = checked.value;
  }
  const problem = crossFieldProblem(event as EventBody);
  if (problem) return { ok: false, reason: problem.reason };
  return { ok: true, event: event as IntakeEvent };
}
