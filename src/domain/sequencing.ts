/**
 * The sequencing rule, free of I/O, as one pure function: filtering and numbering together, so no caller can
 * number a batch it has not filtered.
 *
 * Given the stored head and a batch taken from the intake stream in stream order, it
 * - drops events whose referenceId is already stored (a batch redelivered after a crash, or the same request
 *   published again after the broker's duplicate window),
 * - drops repeats of a referenceId inside the batch (first one wins, keeping stream order),
 * - does the same for idempotency keys: a request retried after the API's idempotency window got a new
 *   referenceId but carries the same key, and must not become a second event,
 * - gives the rest contiguous sequenceIds after the head, previousId = sequenceId - 1,
 * - stamps sequencedAt so that it never goes backwards, even if the wall clock does.
 * An empty result means nothing to store or publish, but the batch must still be acked.
 */
import type { IntakeEvent, SequencedEvent } from "./events.ts";

/** What numbering needs of the log's end: its last sequenceId and that event's sequencedAt. */
export type Position = { sequenceId: bigint; sequencedAt: string | null };

/**
 * The log's end: its position and the digest of its last event (64 hex characters; see src/app/log-digest.ts,
 * which computes the chain: this module only carries it).
 */
export type Head = Position & { digest: string };

/** The digest the first event is chained from: 32 zero bytes, as hex. */
export const GENESIS_DIGEST = "0".repeat(64);

export const EMPTY_HEAD: Head = { sequenceId: 0n, sequencedAt: null, digest: GENESIS_DIGEST };

export type SequencingResult<T extends IntakeEvent = IntakeEvent> = {
  sequenced: (T & Pick<SequencedEvent, "sequenceId" | "previousId" | "sequencedAt">)[];
  /** Indexes (in the input batch) of events that were dropped as duplicates. */
  duplicates: number[];
  /** The position after the batch (the caller chains the digests: they hash the encoded events). */
  head: Position;
};

export function sequenceBatch<T extends IntakeEvent>(
  head: Position,
  batch: readonly T[],
  isStored: (referenceId: bigint) => boolean,
  nowIso: string,
  isKeyStored: (idempotencyKey: string) => boolean = () => false,
): SequencingResult<T> {
  const sequencedAt = head.sequencedAt !== null && head.sequencedAt > nowIso ? head.sequencedAt : nowIso;
  const seen = new Set<bigint>();
  const seenKeys = new Set<string>();
  const sequenced: SequencingResult<T>["sequenced"] = [];
  const duplicates: number[] = [];
  let next = head.sequenceId;
  batch.forEach((event, index) => {
    const key = event.idempotencyKey;
    const repeatedKey = key !== undefined && (seenKeys.has(key) || isKeyStored(key));
    if (repeatedKey || seen.has(event.referenceId) || isStored(event.referenceId)) {
      duplicates.push(index);
      return;
    }
    seen.add(event.referenceId);
    if (key !== undefined) seenKeys.add(key);
    next += 1n;
    sequenced.push({ ...event, sequenceId: next, previousId: next - 1n, sequencedAt });
  });
  return {
    sequenced,
    duplicates,
    head: sequenced.length > 0 ? { sequenceId: next, sequencedAt } : head,
  };
}
