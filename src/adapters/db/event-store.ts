/**
 * The Postgres side of the sequencer: the head of the log, the duplicate filter, the one-transaction append,
 * and keyset reads for replay and catch-up. Written against Drizzle only, so it runs on postgres.js and PGlite.
 */
import { asc, desc, eq, gt, inArray, or } from "drizzle-orm";
import { ownerOf, type SequencedEvent } from "../../domain/events.ts";
import type { Head } from "../../domain/sequencing.ts";
import { EMPTY_HEAD } from "../../domain/sequencing.ts";
import type { Db } from "./client.ts";
import { events, rejectedMessages } from "./schema.ts";

export type StoredEvent = { event: SequencedEvent; payload: string };
export type RejectedMessage = { streamSeq: bigint; subject: string; reason: string; data: string };
/** A stored event as it goes out again: the exact payload bytes, and the type that picks the TRADING subject. */
export type EventRecord = { sequenceId: bigint; type: string; payload: string };

export interface EventStore {
  head(): Promise<Head>;
  /** Which of these referenceIds and idempotency keys are already in the log. */
  findStored(
    referenceIds: readonly bigint[],
    idempotencyKeys: readonly string[],
  ): Promise<{ references: Set<bigint>; idempotencyKeys: Set<string> }>;
  /** Stores a sequenced batch and the rejected messages that came with it, all or nothing. */
  append(batch: readonly StoredEvent[], rejected: readonly RejectedMessage[]): Promise<void>;
  /** Events with sequenceId > after, in order, at most `limit`. */
  readAfter(after: bigint, limit: number): Promise<EventRecord[]>;
  /** One event by its sequenceId or by its referenceId. */
  find(by: { sequenceId: bigint } | { referenceId: bigint }): Promise<EventRecord | null>;
}

/** Postgres renders timestamptz as "2026-01-02 03:04:05.678+00"; the wire wants ISO-8601. */
function toIso(timestamp: string): string {
  return new Date(timestamp).toISOString();
}

/** Runs first inside every append transaction; throws to refuse the write (see writer-lease.ts). */
export type WriteFence = (tx: Pick<Db, "execute">) => Promise<void>;

export class DrizzleEventStore implements EventStore {
  constructor(
    private readonly db: Db,
    private readonly fence?: WriteFence,
  ) {}

  async head(): Promise<Head> {
    const rows = await this.db
      .select({ sequenceId: events.sequenceId, sequencedAt: events.sequencedAt })
      .from(events)
      .orderBy(desc(events.sequenceId))
      .limit(1);
    const row = rows[0];
    return row ? { sequenceId: row.sequenceId, sequencedAt: toIso(row.sequencedAt) } : EMPTY_HEAD;
  }

  async findStored(
    referenceIds: readonly bigint[],
    idempotencyKeys: readonly string[],
  ): Promise<{ references: Set<bigint>; idempotencyKeys: Set<string> }> {
    if (referenceIds.length === 0) return { references: new Set(), idempotencyKeys: new Set() };
    const byReference = inArray(events.referenceId, [...referenceIds]);
    const rows = await this.db
      .select({ referenceId: events.referenceId, idempotencyKey: events.idempotencyKey })
      .from(events)
      .where(
        idempotencyKeys.length > 0
          ? or(byReference, inArray(events.idempotencyKey, [...idempotencyKeys]))
          : byReference,
      );
    return {
      references: new Set(rows.map((row) => row.referenceId)),
      idempotencyKeys: new Set(
        rows.flatMap((row) => (row.idempotencyKey === null ? [] : [row.idempotencyKey])),
      ),
    };
  }

  async append(batch: readonly StoredEvent[], rejected: readonly RejectedMessage[]): Promise<void> {
    if (batch.length === 0 && rejected.length === 0) return;
    await this.db.transaction(async (tx) => {
      await this.fence?.(tx);
      if (batch.length > 0) {
        await tx.insert(events).values(
          batch.map(({ event, payload }) => ({
            sequenceId: event.sequenceId,
            previousId: event.previousId,
            referenceId: event.referenceId,
            type: event.type,
            userId: ownerOf(event),
            idempotencyKey: event.idempotencyKey ?? null,
            payload,
            createdAt: event.createdAt,
            sequencedAt: event.sequencedAt,
          })),
        );
      }
      if (rejected.length > 0) {
        await tx
          .insert(rejectedMessages)
          .values([...rejected])
          .onConflictDoNothing();
      }
    });
  }

  async readAfter(after: bigint, limit: number): Promise<EventRecord[]> {
    return this.db
      .select({ sequenceId: events.sequenceId, type: events.type, payload: events.payload })
      .from(events)
      .where(gt(events.sequenceId, after))
      .orderBy(asc(events.sequenceId))
      .limit(limit);
  }

  async find(by: { sequenceId: bigint } | { referenceId: bigint }): Promise<EventRecord | null> {
    const rows = await this.db
      .select({ sequenceId: events.sequenceId, type: events.type, payload: events.payload })
      .from(events)
      .where(
        "sequenceId" in by ? eq(events.sequenceId, by.sequenceId) : eq(events.referenceId, by.referenceId),
      )
      .limit(1);
    return rows[0] ?? null;
  }
}
