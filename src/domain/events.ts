/**
 * The events this service orders, in two shapes:
 * - IntakeEvent: what the API publishes on SEQUENCE (no sequence number yet), keyed by referenceId;
 * - SequencedEvent: what the sequencer stores in Postgres and publishes on TRADING.
 * Every id and decimal is a string on the wire; ids are bigint in memory.
 */
import { parsePositiveId } from "./ids.ts";
import { PRICE_RULE, parsePositiveDecimal, QUANTITY_RULE } from "./money.ts";

export const EVENT_TYPES = ["CREATE_ORDER"] as const;
export type EventType = (typeof EVENT_TYPES)[number];
export type Direction = "BUY" | "SELL";

export type CreateOrderFields = {
  userId: bigint;
  orderId: bigint;
  direction: Direction;
  price: string;
  quantity: string;
};

export type IntakeEvent = {
  referenceId: bigint;
  type: "CREATE_ORDER";
  createdAt: string;
} & CreateOrderFields;

export type SequencedEvent = IntakeEvent & {
  sequenceId: bigint;
  previousId: bigint;
  sequencedAt: string;
};

/** NATS subject suffix for an event type: CREATE_ORDER → create_order. */
export function subjectToken(type: EventType): string {
  return type.toLowerCase();
}

export function encodeIntakeEvent(event: IntakeEvent): string {
  return JSON.stringify({
    referenceId: event.referenceId.toString(),
    type: event.type,
    createdAt: event.createdAt,
    userId: event.userId.toString(),
    orderId: event.orderId.toString(),
    direction: event.direction,
    price: event.price,
    quantity: event.quantity,
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
    userId: event.userId.toString(),
    orderId: event.orderId.toString(),
    direction: event.direction,
    price: event.price,
    quantity: event.quantity,
  });
}

export type DecodeResult = { ok: true; event: IntakeEvent } | { ok: false; reason: string };

/** Exactly what Date#toISOString produces, years 2000-2999: a value Postgres will always accept. */
function isIsoInstant(value: unknown): value is string {
  if (typeof value !== "string" || value.length !== 24 || !value.startsWith("2")) return false;
  const time = Date.parse(value);
  return !Number.isNaN(time) && new Date(time).toISOString() === value;
}

/**
 * Decodes and fully re-validates a message taken from SEQUENCE. Anyone with publish rights can put bytes on the
 * intake stream, so the sequencer trusts nothing the API would have checked: a message that fails here is
 * recorded as rejected, never sequenced.
 */
export function decodeIntakeEvent(bytes: Uint8Array | string): DecodeResult {
  let raw: unknown;
  try {
    raw = JSON.parse(typeof bytes === "string" ? bytes : new TextDecoder().decode(bytes));
  } catch {
    return { ok: false, reason: "not valid JSON" };
  }
  if (typeof raw !== "object" || raw === null || Array.isArray(raw))
    return { ok: false, reason: "not a JSON object" };
  const o = raw as Record<string, unknown>;
  if (o.type !== "CREATE_ORDER") return { ok: false, reason: `unknown event type ${JSON.stringify(o.type)}` };
  const allowed = new Set([
    "referenceId",
    "type",
    "createdAt",
    "userId",
    "orderId",
    "direction",
    "price",
    "quantity",
  ]);
  for (const key of Object.keys(o))
    if (!allowed.has(key)) return { ok: false, reason: `unexpected field ${key}` };
  const referenceId = parsePositiveId(o.referenceId);
  if (referenceId === null)
    return { ok: false, reason: "referenceId must be a positive 64-bit decimal string" };
  const userId = parsePositiveId(o.userId);
  if (userId === null) return { ok: false, reason: "userId must be a positive 64-bit decimal string" };
  const orderId = parsePositiveId(o.orderId);
  if (orderId === null) return { ok: false, reason: "orderId must be a positive 64-bit decimal string" };
  if (!isIsoInstant(o.createdAt)) {
    return { ok: false, reason: "createdAt must be an ISO-8601 UTC instant" };
  }
  if (o.direction !== "BUY" && o.direction !== "SELL")
    return { ok: false, reason: "direction must be BUY or SELL" };
  const price = parsePositiveDecimal(o.price, PRICE_RULE);
  if (!price.ok) return { ok: false, reason: `price ${price.reason}` };
  const quantity = parsePositiveDecimal(o.quantity, QUANTITY_RULE);
  if (!quantity.ok) return { ok: false, reason: `quantity ${quantity.reason}` };
  return {
    ok: true,
    event: {
      referenceId,
      type: "CREATE_ORDER",
      createdAt: o.createdAt,
      userId,
      orderId,
      direction: o.direction,
      price: price.value,
      quantity: quantity.value,
    },
  };
}
