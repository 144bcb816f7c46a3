import { sql } from "drizzle-orm";
import { bigint, bigserial, check, index, pgTable, text, timestamp } from "drizzle-orm/pg-core";

/**
 * The sequenced log. The primary key and the unique previous_id make a second writer's insert fail instead of
 * forking the sequence; the unique reference_id is the second duplicate filter behind the sequencer's own.
 * The check makes every row name its predecessor, so the chain can only be read one way.
 * `payload` holds the exact JSON bytes published on TRADING, so a republish after a crash sends the same bytes.
 */
export const events = pgTable(
  "events",
  {
    sequenceId: bigint("sequence_id", { mode: "bigint" }).primaryKey(),
    previousId: bigint("previous_id", { mode: "bigint" }).notNull().unique(),
    referenceId: bigint("reference_id", { mode: "bigint" }).notNull().unique(),
    type: text("type").notNull(),
    userId: bigint("user_id", { mode: "bigint" }).notNull(),
    payload: text("payload").notNull(),
    /** `<principal user id>:<Idempotency-Key>`: behind the API's idempotency window the log still refuses a repeat. */
    idempotencyKey: text("idempotency_key").unique(),
    createdAt: timestamp("created_at", { withTimezone: true, mode: "string" }).notNull(),
    sequencedAt: timestamp("sequenced_at", { withTimezone: true, mode: "string" }).notNull(),
  },
  (table) => [
    check("events_sequence_id_positive", sql`${table.sequenceId} > 0`),
    check("events_previous_id_is_predecessor", sql`${table.previousId} = ${table.sequenceId} - 1`),
  ],
);

/**
 * Messages taken from SEQUENCE that are not valid events (not JSON, wrong shape, unknown type). They are recorded
 * here in the same transaction as the batch they came in, then acked: never a crash loop, never a silent drop.
 * stream_seq is unique so a redelivered poison message is recorded once.
 */
export const rejectedMessages = pgTable(
  "rejected_messages",
  {
    id: bigserial("id", { mode: "bigint" }).primaryKey(),
    streamSeq: bigint("stream_seq", { mode: "bigint" }).notNull().unique(),
    subject: text("subject").notNull(),
    reason: text("reason").notNull(),
    data: text("data").notNull(),
    receivedAt: timestamp("received_at", { withTimezone: true, mode: "string" }).notNull().defaultNow(),
  },
  (table) => [index("rejected_messages_received_at_idx").on(table.receivedAt)],
);
