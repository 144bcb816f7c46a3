import { sql } from "drizzle-orm";
import {
  bigint,
  bigserial,
  check,
  customType,
  index,
  integer,
  pgTable,
  text,
  timestamp,
  uniqueIndex,
} from "drizzle-orm/pg-core";

/**
 * bytea (Drizzle 0.45 has no built-in column for it). The event store reads and writes the digest as hex in SQL
 * (encode/decode), so this type only shapes the DDL and the rare direct select.
 */
const bytea = customType<{ data: Uint8Array; driverData: Uint8Array }>({
  dataType: () => "bytea",
});

/**
 * The sequenced log. The primary key makes a second writer's insert fail instead of forking the sequence; the
 * unique reference_id is the second duplicate filter behind the sequencer's own. The check makes every row name
 * its predecessor (previous_id = sequence_id - 1), so the chain can only be read one way — and, with the primary
 * key, previous_id is unique without an index of its own (drizzle/0005: that index cost every insert a B-tree
 * entry and 22.6 B/event for nothing).
 * `payload` holds the exact JSON bytes published on TRADING, so a republish after a crash sends the same bytes.
 * `digest` is the tamper-evident chain (src/app/log-digest.ts): SHA-256 of the previous row's digest and this
 * row's payload, 32 bytes; the append checks that the row before a batch carries the digest the batch was
 * chained from, and each TRADING message's msg id carries its first 16 bytes (`<sequenceId>:<32 hex characters>`).
 */
export const events = pgTable(
  "events",
  {
    sequenceId: bigint("sequence_id", { mode: "bigint" }).primaryKey(),
    previousId: bigint("previous_id", { mode: "bigint" }).notNull(),
    referenceId: bigint("reference_id", { mode: "bigint" }).notNull().unique(),
    type: text("type").notNull(),
    userId: bigint("user_id", { mode: "bigint" }).notNull(),
    payload: text("payload").notNull(),
    /**
     * `<principal user id>:<Idempotency-Key>`: behind the API's idempotency window the log still refuses a repeat.
     * Unique among the rows that have one (the partial index below); most rows have none.
     */
    idempotencyKey: text("idempotency_key"),
    createdAt: timestamp("created_at", { withTimezone: true, mode: "string" }).notNull(),
    sequencedAt: timestamp("sequenced_at", { withTimezone: true, mode: "string" }).notNull(),
    digest: bytea("digest").notNull(),
    /** A transfer's recipient (null otherwise). With user_id, whom an event concerns: GET /me/events. */
    counterpartyId: bigint("counterparty_id", { mode: "bigint" }),
  },
  (table) => [
    // Partial: a full index held an entry per row although most have no key (6.6 B/event of NULLs,
    // docs/storage.md). Every lookup by key (`= $1`, `= any($1)`) implies NOT NULL, so the planner uses it, and
    // uniqueness among non-NULL keys is what the full one enforced too (NULLs never conflicted).
    uniqueIndex("events_idempotency_key_unique")
      .on(table.idempotencyKey)
      .where(sql`${table.idempotencyKey} is not null`),
    // GET /me/events: one index range per side, in sequence order, never a scan over other users' rows.
    index("events_user_id_sequence_id_idx").on(table.userId, table.sequenceId),
    index("events_counterparty_id_sequence_id_idx")
      .on(table.counterpartyId, table.sequenceId)
      .where(sql`${table.counterpartyId} is not null`),
    check("events_sequence_id_positive", sql`${table.sequenceId} > 0`),
    check("events_previous_id_is_predecessor", sql`${table.previousId} = ${table.sequenceId} - 1`),
    check("events_digest_is_sha256", sql`octet_length(${table.digest}) = 32`),
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

/**
 * The writer lease: one row naming the process that sequences, the PostgreSQL session that holds the writer lock
 * for it, and until when (by the database's clock) it is trusted to. The writer renews it only while its
 * sequencing loop makes progress, so a writer that died, froze (SIGSTOP, a paused VM) or whose event loop is
 * blocked stops renewing; a standby that finds it expired ends that session (pg_terminate_backend) and takes over.
 * `term` grows by one at each takeover (readiness and logs name it).
 */
export const writerLease = pgTable("writer_lease", {
  name: text("name").primaryKey(),
  holder: text("holder").notNull(),
  backendPid: integer("backend_pid").notNull(),
  term: bigint("term", { mode: "bigint" }).notNull(),
  renewedAt: timestamp("renewed_at", { withTimezone: true, mode: "string" }).notNull(),
  expiresAt: timestamp("expires_at", { withTimezone: true, mode: "string" }).notNull(),
});
