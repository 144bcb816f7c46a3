/**
 * Idempotency keys: a retried write with the same user and key gets the first answer back and creates no second
 * event; the same key with a different request is a conflict.
 *
 * The record is written before the publish and holds the exact intake event, so a first attempt that died
 * half-way (published or not) is completed by the retry: it republishes the same event with the same msgID —
 * dropped by the broker inside its duplicate window, filtered by the sequencer (same referenceId) after it.
 * Behind this store's window the idempotency key itself travels with the event and the database's unique
 * constraint on it still refuses a second event.
 *
 * A record read back is not trusted (anyone who can write the bucket could plant one): it is used only
 * when it is consistent — its event decodes, stands for exactly this request (type and fields), carries this
 * caller's scoped key, and its answer (if any) is the one that event gives. Anything else is refused with
 * IdempotencyRecordRejected and nothing is published or returned from it.
 */
import type { Intake } from "../domain/events.ts";
import { ConflictError, type IdempotencyRecordProblem, IdempotencyRecordRejected } from "./errors.ts";
import type { Answer, IdempotencyRecord, IdempotencyStore } from "./ports.ts";

export type Attempt = {
  /** Builds the event for a first attempt (mints its ids). */
  build(): Intake;
  encode(event: Intake): string;
  decode(text: string): Intake;
  publish(event: Intake): Promise<void>;
  answer(event: Intake): Answer;
  /** The canonical request an event stands for (its type and fields), as `request` is written. */
  requestOf(event: Intake): string;
  /**
   * Whose key this is: a stored event must carry `eventKey` (`<userId>:<key>`); userId and key (as the client
   * sent it) name the caller in a refusal.
   */
  scope: { userId: string; key: string; eventKey: string };
  /**
   * The event already in the log under this key, if any: after the store's window has passed, the log still
   * knows the key, and the retry must get that event's answer rather than a new, never-sequenced referenceId.
   */
  logged(): Promise<{ request: string; answer: Answer } | null>;
};

export async function runIdempotent(
  store: IdempotencyStore,
  key: string,
  request: string,
  attempt: Attempt,
): Promise<Answer> {
  // Two rounds cover the race where another request creates the key between our get and create.
  for (let round = 0; round < 2; round++) {
    const existing = await store.get(key);
    if (existing) {
      if (existing.request !== request) {
        throw new ConflictError("this Idempotency-Key was used for a different request");
      }
      const event = verifiedEvent(existing, request, attempt);
      if (existing.answer !== null && existing.answer !== undefined) return existing.answer;
      await attempt.publish(event);
      const answer = attempt.answer(event);
      await store.put(key, { ...existing, answer });
      return answer;
    }
    const logged = await attempt.logged();
    if (logged) {
      if (logged.request !== request) {
        throw new ConflictError("this Idempotency-Key was used for a different request");
      }
      return logged.answer;
    }
    const event = attempt.build();
    const record: IdempotencyRecord = { request, event: attempt.encode(event), answer: null };
    if (await store.create(key, record)) {
      await attempt.publish(event);
      const answer = attempt.answer(event);
      await store.put(key, { ...record, answer });
      return answer;
    }
  }
  throw new ConflictError("this Idempotency-Key is being used by a concurrent request; retry");
}

/**
 * The stored record's event, when the record is consistent with the request and with itself; otherwise throws
 * IdempotencyRecordRejected. Callers have already checked `existing.request === request`; that alone proves
 * nothing about the event, which is what gets published (and whose ids make the answer).
 */
function verifiedEvent(existing: IdempotencyRecord, request: string, attempt: Attempt): Intake {
  const reject = (problem: IdempotencyRecordProblem, eventType?: string) =>
    new IdempotencyRecordRejected(attempt.scope.userId, attempt.scope.key, problem, eventType);
  let event: Intake;
  try {
    if (typeof existing.event !== "string") throw new TypeError("not a string");
    event = attempt.decode(existing.event);
  } catch {
    throw reject("undecodable-event");
  }
  if (attempt.requestOf(event) !== request) throw reject("event-differs-from-request", event.type);
  if (event.idempotencyKey !== attempt.scope.eventKey) throw reject("event-key-differs", event.type);
  if (
    existing.answer !== null &&
    existing.answer !== undefined &&
    !sameAnswer(existing.answer, attempt.answer(event))
  ) {
    throw reject("answer-differs-from-event", event.type);
  }
  return event;
}

/** Exactly the same answer: the same members (referenceId, orderId when there is one), the same strings. */
function sameAnswer(stored: unknown, expected: Answer): boolean {
  if (typeof stored !== "object" || stored === null || Array.isArray(stored)) return false;
  const keys = Object.keys(stored).sort();
  const wanted = Object.keys(expected).sort();
  if (keys.length !== wanted.length || keys.some((key, i) => key !== wanted[i])) return false;
  const record = stored as Record<string, unknown>;
  return wanted.every((key) => record[key] === expected[key as keyof Answer]);
}
