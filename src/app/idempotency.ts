/**
 * Idempotency keys: a retried write with the same user and key gets the first answer back and creates no second
 * event; the same key with a different request is a conflict.
 *
 * The record is written before the publish and holds the exact intake event, so a first attempt that died
 * half-way (published or not) is completed by the retry: it republishes the same event with the same msgID —
 * dropped by the broker inside its duplicate window, filtered by the sequencer (same referenceId) after it.
 * Behind this store's window the idempotency key itself travels with the event and the database's unique
 * constraint on it still refuses a second event.
 */
import type { Intake } from "../domain/events.ts";
import { ConflictError } from "./errors.ts";

export type Answer = { referenceId: string; orderId?: string };

export type IdempotencyRecord = {
  /** The canonical request; a retry must match it exactly. */
  request: string;
  /** The encoded intake event the first attempt built. */
  event: string;
  answer: Answer | null;
};

/** A create-if-absent key/value store with a retention window (a JetStream KV bucket in production). */
export interface IdempotencyStore {
  get(key: string): Promise<IdempotencyRecord | null>;
  /** False when the key already exists. */
  create(key: string, record: IdempotencyRecord): Promise<boolean>;
  put(key: string, record: IdempotencyRecord): Promise<void>;
}

export type Attempt = {
  /** Builds the event for a first attempt (mints its ids). */
  build(): Intake;
  encode(event: Intake): string;
  decode(text: string): Intake;
  publish(event: Intake): Promise<void>;
  answer(event: Intake): Answer;
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
      if (existing.answer) return existing.answer;
      const event = attempt.decode(existing.event);
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
