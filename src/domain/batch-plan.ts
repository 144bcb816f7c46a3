/**
 * A batch taken from the intake stream, planned without I/O, in two steps with the duplicate filter's read in
 * between (the read needs the decoded ids, and the plan needs its answer):
 *
 *   decodeBatch: the messages' bytes → the valid events (stream order), the invalid ones with why, and the
 *                referenceIds and idempotency keys to look up;
 *   planBatch:   the log's position + those events + "is it stored?" → sequenceBatch (the rule) → each event
 *                numbered and encoded as the exact bytes the log stores and TRADING carries.
 *
 * The digest chain over those bytes is the caller's (src/app/log-digest.ts hashes with node:crypto).
 */
import { decodeIntakeEvent, encodeSequencedEvent, type IntakeEvent, type SequencedEvent } from "./events.ts";
import { type Position, sequenceBatch } from "./sequencing.ts";

export type DecodedBatch = {
  /** The messages that decode, in stream order. */
  events: IntakeEvent[];
  /** The messages that do not: their index in the batch and the reason. */
  invalid: { index: number; reason: string }[];
  /** What the duplicate filter looks up: every valid event's referenceId, and its idempotency key if it has one. */
  referenceIds: bigint[];
  idempotencyKeys: string[];
};

export function decodeBatch(messages: readonly Uint8Array[]): DecodedBatch {
  const decoded: DecodedBatch = { events: [], invalid: [], referenceIds: [], idempotencyKeys: [] };
  messages.forEach((data, index) => {
    const result = decodeIntakeEvent(data);
    if (!result.ok) {
      decoded.invalid.push({ index, reason: result.reason });
      return;
    }
    decoded.events.push(result.event);
    decoded.referenceIds.push(result.event.referenceId);
    if (result.event.idempotencyKey !== undefined) decoded.idempotencyKeys.push(result.event.idempotencyKey);
  });
  return decoded;
}

/** One event numbered, with its encoded body (the `payload` the log stores and TRADING publishes). */
export type PlannedEvent = { event: SequencedEvent; payload: string };

export type BatchPlan = {
  /** The events to store and publish, numbered after the position, in stream order. */
  planned: PlannedEvent[];
  /** How many events were dropped as already stored or repeated in the batch. */
  duplicates: number;
  /** The log's position after the batch (the same position when nothing was numbered). */
  position: Position;
};

/**
 * Numbers a decoded batch's events after `position` (sequenceBatch: drops what is stored or repeated, stamps a
 * sequencedAt that never goes back) and encodes each.
 */
export function planBatch(
  position: Position,
  events: readonly IntakeEvent[],
  isStored: (referenceId: bigint) => boolean,
  isKeyStored: (idempotencyKey: string) => boolean,
  nowIso: string,
): BatchPlan {
  const result = sequenceBatch(position, events, isStored, nowIso, isKeyStored);
  return {
    planned: result.sequenced.map((event) => ({ event, payload: encodeSequencedEvent(event) })),
    duplicates: result.duplicates.length,
    position: result.head,
  };
}
