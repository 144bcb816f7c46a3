/**
 * The Postgres side of the sequencer: the head of the log, the duplicate filter, the one-transaction append,
 * and keyset reads for replay and catch-up. Written against Drizzle only, so it runs on postgres.js and PGlite.
 */
import { asc, desc, eq, gt, type SQL, sql } from "drizzle-orm";
import { LogContinuityError } from "../../app/errors.ts";
import type {
  EventKey,
  EventStore,
  RejectedMessage,
  SequencedRecord,
  StoredEvent,
  UserEventReader,
} from "../../app/ports.ts";
import { ownerOf } from "../../domain/events.ts";
import type { Head } from "../../domain/sequencing.ts";
import { EMPTY_HEAD } from "../../domain/sequencing.ts";
import { type Db, executePrepared, rowsOf } from "./client.ts";
import { events } from "./schema.ts";
import type { WriteFence } from "./write-fence.ts";

/** Postgres renders timestamptz as "2026-01-02 03:04:05.678+00"; the wire wants ISO-8601. */
function toIso(timestamp: string): string {
  return new Date(timestamp).toISOString();
}

/**
 * One multi-row INSERT from a single JSON parameter (json_to_recordset): one parameter for any batch size, so
 * neither the driver nor Postgres pays per-row statement building, and the rows are serialized by the native
 * JSON.stringify instead of the driver escaping every element of seven text[] arrays (the payloads are long and
 * full of quotes). Ids travel as JSON strings, so no 64-bit value is rounded through a JS number. A batch shares
 * one sequencedAt, and previous_id is derived in SQL from sequence_id (the check constraint holds it to that).
 */
function insertBatch(batch: readonly StoredEvent[]) {
  const rows = new Array<EventRow>(batch.length);
  for (let i = 0; i < batch.length; i++) {
    const { event, payload, digest } = batch[i] as StoredEvent;
    rows[i] = {
      s: event.sequenceId.toString(),
      r: event.referenceId.toString(),
      t: event.type,
      u: ownerOf(event).toString(),
      k: event.idempotencyKey ?? null,
      p: payload,
      c: event.createdAt,
      d: digest,
      o: event.type === "TRANSFER" ? event.toUserId.toString() : null,
    };
  }
  const sequencedAt = batch[0]?.event.sequencedAt;
  return sql`
    insert into events
      (sequence_id, previous_id, reference_id, type, user_id, idempotency_key, payload, created_at, sequenced_at,
       digest, counterparty_id)
    select s, s - 1, r, t, u, k, p, c, ${sequencedAt}::timestamptz, decode(d, 'hex'), o
    from json_to_recordset(${sql.param(JSON.stringify(rows))}::json)
      as x(s bigint, r bigint, t text, u bigint, k text, p text, c timestamptz, d text, o bigint)
    where (select ok from fence)
    returning 1`;
}

/** One events row as it travels in the insert's JSON parameter (d: the digest as hex). */
type EventRow = {
  s: string;
  r: string;
  t: string;
  u: string;
  k: string | null;
  p: string;
  c: string;
  d: string;
  /** counterparty_id: a transfer's recipient, else null. */
  o: string | null;
};

/** The digest column as the 64 hex characters the rest of the code uses (drivers differ on bytea). */
const digestHex = sql<string>`encode(${events.digest}, 'hex')`;

/**
 * The log's head: its last event's sequenceId, sequencedAt and digest (EMPTY_HEAD when the log is empty). The one
 * query for it, used by the sequencer's store and by `inspect`; inside a transaction it reads that snapshot.
 */
export async function readHead(db: Db): Promise<Head> {
  const rows = await db
    .select({ sequenceId: events.sequenceId, sequencedAt: events.sequencedAt, digest: digestHex })
    .from(events)
    .orderBy(desc(events.sequenceId))
    .limit(1);
  const row = rows[0];
  return row
    ? { sequenceId: row.sequenceId, sequencedAt: toIso(row.sequencedAt), digest: row.digest }
    : EMPTY_HEAD;
}

/** A bigint[] literal: decimal digits need no quoting or escaping, so this is the whole encoding. */
function bigintArray(ids: readonly bigint[]): string {
  return `{${ids.join(",")}}`;
}

function insertRejected(rejected: readonly RejectedMessage[]) {
  return sql`
    insert into rejected_messages (stream_seq, subject, reason, data)
    select q, s, r, d
    from unnest(${sql.param(rejected.map((m) => m.streamSeq.toString()))}::bigint[],
                ${sql.param(rejected.map((m) => m.subject))}::text[],
                ${sql.param(rejected.map((m) => m.reason))}::text[],
                ${sql.param(rejected.map((m) => m.data))}::text[]) as x(q, s, r, d)
    where (select ok from fence)
    on conflict (stream_seq) do nothing
    returning 1`;
}

export class DrizzleEventStore implements EventStore, UserEventReader {
  /**
   * @param db every write (and head) goes through it: the writer's fenced session in the sequencer.
   * @param reader the duplicate filter's reads (default `db`): a pool, so that the next batch's filter can run
   * while the writer's connection commits the current batch. A read sees every batch committed before it starts;
   * the sequencer checks the batch still being committed itself, and the unique constraints stay the second filter.
   */
  constructor(
    private readonly db: Db,
    private readonly fence?: WriteFence,
    private readonly reader: Db = db,
  ) {}

  head(): Promise<Head> {
    return readHead(this.db);
  }

  async findStored(
    referenceIds: readonly bigint[],
    idempotencyKeys: readonly string[],
  ): Promise<{ references: Set<bigint>; idempotencyKeys: Set<string> }> {
    if (referenceIds.length === 0) return { references: new Set(), idempotencyKeys: new Set() };
    // One array parameter per list (not one parameter per id): the statement stays the same size whatever the
    // batch, and ids travel as text so no driver rounds a 64-bit value through a JS number.
    const refs = sql.param(bigintArray(referenceIds));
    const keys = sql.param([...idempotencyKeys]);
    // Two index lookups glued by UNION ALL (an OR across two columns would not use either index).
    const byKey =
      idempotencyKeys.length === 0
        ? sql``
        : sql` union all select reference_id::text, idempotency_key from events where idempotency_key = any(${keys}::text[])`;
    const rows = rowsOf<{ reference_id: string; idempotency_key: string | null }>(
      await executePrepared(
        this.reader,
        "find_stored",
        sql`
        select reference_id::text as reference_id, idempotency_key from events
        where reference_id = any(${refs}::bigint[])${byKey}`,
      ),
    );
    return {
      references: new Set(rows.map((row) => BigInt(row.reference_id))),
      idempotencyKeys: new Set(
        rows.flatMap((row) => (row.idempotency_key === null ? [] : [row.idempotency_key])),
      ),
    };
  }

  /**
   * The whole append is ONE statement: the fence check, the continuity check, the events and the rejected
   * messages, as data-modifying CTEs. A single statement is atomic without an explicit transaction, so a
   * connection lost mid-write can neither half-apply it nor leave a client-side transaction to roll back on a
   * dead socket. The continuity check (the row before the batch's first is stored) is what makes it safe to send
   * the next batch's statement before this one's answer: if this one fails, the next one writes nothing. It also
   * covers postgres.js re-sending a prepared statement that PostgreSQL asked it to re-prepare: the retry goes out
   * behind statements already pipelined, and those are refused rather than stored out of order. Do not drop it.
   * The same check compares that row's digest with the one the batch was chained from (`chainedFrom`), so a batch
   * chained from anything but the stored log is refused too: `continues` is null when the row is missing, false
   * when its digest differs.
   */
  async append(
    batch: readonly StoredEvent[],
    rejected: readonly RejectedMessage[],
    chainedFrom: string,
  ): Promise<void> {
    if (batch.length === 0 && rejected.length === 0) return;
    const first = batch[0]?.event.sequenceId;
    const continues =
      first === undefined
        ? sql`true`
        : first === 1n
          ? chainedFrom === EMPTY_HEAD.digest
            ? sql`true`
            : sql`false`
          : sql`(select digest = decode(${chainedFrom}::text, 'hex') from events
                 where sequence_id = ${(first - 1n).toString()}::bigint)`;
    const parts = [
      sql`with checks as (select (${this.fence?.holds ?? sql`true`}) as held, (${continues}) as continues),
        fence as (select held and coalesce(continues, false) as ok from checks)`,
    ];
    if (batch.length > 0) parts.push(sql`, new_events as (${insertBatch(batch)})`);
    if (rejected.length > 0) parts.push(sql`, new_rejected as (${insertRejected(rejected)})`);
    parts.push(sql` select held, continues from checks`);
    const [row] = rowsOf<{ held: boolean; continues: boolean | null }>(
      await executePrepared(this.db, "append", sql.join(parts)),
    );
    if (row?.held !== true) throw this.fence?.refused() ?? new Error("append refused");
    if (row.continues !== true) {
      const before = (first ?? 1n) - 1n;
      throw new LogContinuityError(
        row.continues === false
          ? `event ${before}'s digest is not the one the batch from ${first} was chained from: not appended`
          : `event ${before} is not stored: batch from ${first} not appended`,
      );
    }
  }

  async readAfter(after: bigint, limit: number): Promise<SequencedRecord[]> {
    return this.db
      .select({
        sequenceId: events.sequenceId,
        type: events.type,
        payload: events.payload,
        digest: digestHex,
      })
      .from(events)
      .where(gt(events.sequenceId, after))
      .orderBy(asc(events.sequenceId))
      .limit(limit);
  }

  /**
   * Two index ranges — (user_id, sequence_id) and (counterparty_id, sequence_id) — each cut at `limit` in order,
   * then merged: the cost follows the page, not the log or the other users' rows. The second side leaves out the
   * user's own rows (a transfer to oneself, which the API refuses anyway, would otherwise come twice).
   */
  async readConcerning(userId: bigint, after: bigint, limit: number): Promise<SequencedRecord[]> {
    const user = userId.toString();
    const from = after.toString();
    const side = (column: SQL, also: SQL) => sql`(
      select sequence_id, type, payload, digest from events
      where ${column} = ${user}::bigint and sequence_id > ${from}::bigint${also}
      order by sequence_id limit ${limit})`;
    // The id goes out as text (no 64-bit value through a JS number) under another name: ORDER BY must see the
    // bigint column, not the text one.
    const rows = rowsOf<{ id: string; type: string; payload: string; digest: string }>(
      await executePrepared(
        this.db,
        "read_concerning",
        sql`select sequence_id::text as id, type, payload, encode(digest, 'hex') as digest
          from (${side(sql`user_id`, sql``)} union all
                ${side(sql`counterparty_id`, sql` and user_id <> ${user}::bigint`)}) as concerning
          order by sequence_id limit ${limit}`,
      ),
    );
    return rows.map((row) => ({
      sequenceId: BigInt(row.id),
      type: row.type,
      payload: row.payload,
      digest: row.digest,
    }));
  }

  async find(by: EventKey): Promise<SequencedRecord | null> {
    const rows = await this.db
      .select({
        sequenceId: events.sequenceId,
        type: events.type,
        payload: events.payload,
        digest: digestHex,
      })
      .from(events)
      .where(
        "sequenceId" in by
          ? eq(events.sequenceId, by.sequenceId)
          : "referenceId" in by
            ? eq(events.referenceId, by.referenceId)
            : eq(events.idempotencyKey, by.idempotencyKey),
      )
      .limit(1);
    return rows[0] ?? null;
  }
}
