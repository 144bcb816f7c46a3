/**
 * The sequencing rule, free of I/O: the seed's SequenceAndSaveWithFilter + FilterEvents as one pure function.
 *
 * Given the stored head and a batch taken from the intake stream in stream order, it
 * - drops events whose referenceId is already stored (the seed's ErrDuplicate case: a batch redelivered after a
 *   crash, or the same request published again after the broker's duplicate window),
 * - drops repeats of a referenceId inside the batch (first one wins, keeping stream order),
 * - gives the rest contiguous sequenceIds after the head, previousId = sequenceId - 1,
 * - stamps sequencedAt so that it never goes backwards, even if the wall clock does.
 * An empty result is the seed's ErrNoop: nothing to store or publish, but the batch must still be acked.
 */
import type { IntakeEvent, SequencedEvent } from "./events.ts";

export type Head = { sequenceId: bigint; sequencedAt: string | null };

export const EMPTY_HEAD: Head = { sequenceId: 0n, sequencedAt: null };

export type SequencingResult = {
  sequenced: SequencedEvent[];
  /** Indexes (in the input batch) of events that were dropped as duplicates. */
  duplicates: number[];
  head: Head;
};

export function sequenceBatch(
  head: Head,
  batch: readonly IntakeEvent[],
  isStored: (referenceId: bigint) => boolean,
  nowIso: string,
): SequencingResult {
  const sequencedAt = head.sequencedAt !== null && head.sequencedAt > nowIso ? head.sequencedAt : nowIso;
  const seen = new Set<bigint>();
  const sequenced: SequencedEvent[] = [];
  const duplicates: number[] = [];
  let next = head.sequenceId;
  batch.forEach((event, index) => {
    if (seen.has(event.referenceId) || isStored(event.referenceId)) {
      duplicates.push(index);
      return;
    }
    seen.add(event.referenceId);
    next += 1n;
    sequenced.push({ ...event, sequenceId: next, previousId: next - 1n, sequencedAt });
  });
  return {
    sequenced,
    duplicates,
    head: sequenced.length > 0 ? { sequenceId: next, sequencedAt } : head,
  };
}
