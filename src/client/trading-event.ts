/**
 * Decoding one TRADING message body into a typed SequencedEvent: the three sequencing fields checked here, the
 * rest by the same decoder the sequencer applies to intake (src/domain/events.ts), so a reader accepts exactly the
 * events the sequencer could have published, with ids as bigint.
 */
import { decodeIntakeFields, type SequencedEvent } from "../domain/events.ts";
import { parsePositiveId } from "../domain/ids.ts";

export type DecodedTradingEvent = { ok: true; event: SequencedEvent } | { ok: false; reason: string };

/** An ISO-8601 UTC instant exactly as Date#toISOString writes it (how the sequencer stamps sequencedAt). */
function isInstant(value: unknown): value is string {
  if (typeof value !== "string") return false;
  const time = Date.parse(value);
  return !Number.isNaN(time) && new Date(time).toISOString() === value;
}

export function decodeTradingEvent(payload: string): DecodedTradingEvent {
  let raw: unknown;
  try {
    raw = JSON.parse(payload);
  } catch {
    return { ok: false, reason: "not valid JSON" };
  }
  if (typeof raw !== "object" || raw === null || Array.isArray(raw))
    return { ok: false, reason: "not a JSON object" };
  const {
    sequenceId: rawSequenceId,
    previousId: rawPreviousId,
    sequencedAt,
    ...intake
  } = raw as Record<string, unknown>;
  const sequenceId = parsePositiveId(rawSequenceId);
  if (sequenceId === null)
    return { ok: false, reason: "sequenceId must be a positive 64-bit decimal string" };
  // previousId is 0 before the first event, so it is not a positive id.
  const previousId = rawPreviousId === "0" ? 0n : parsePositiveId(rawPreviousId);
  if (previousId === null)
    return { ok: false, reason: "previousId must be a non-negative 64-bit decimal string" };
  if (!isInstant(sequencedAt)) return { ok: false, reason: "sequencedAt must be an ISO-8601 UTC instant" };
  if ("idempotencyKey" in intake) return { ok: false, reason: "unexpected field idempotencyKey" };
  const decoded = decodeIntakeFields(intake);
  if (!decoded.ok) return decoded;
  return { ok: true, event: { ...decoded.event, sequenceId, previousId, sequencedAt } };
}
