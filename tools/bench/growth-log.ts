/**
 * The large log the growth phase starts from: N events that are valid as the service sees them, built fast.
 *
 * Every event comes from the src code the sequencer uses: encodeSequencedEvent for the payload (the exact TRADING
 * body), DigestChain for the digest chain, ownerOf for user_id; sequence 1..N, previous_id = sequence_id − 1,
 * unique snowflake reference ids of a worker id nothing else here uses, from a logical clock a day in the past
 * (so every backlog id that comes later is greater, as in a log that grew over time). The events are a
 * deterministic function of (N, that clock), so the TRADING fill regenerates the same bytes instead of reading
 * them back from PostgreSQL.
 *
 * PostgreSQL: the database is migrated by the service's own migrations, the indexes and unique constraints are
 * dropped (their definitions kept), the rows go in with one COPY FROM STDIN … (FREEZE) in the transaction that
 * truncated the table, and the indexes and constraints are created again from the kept definitions; the schema is
 * then compared with the migrated one (it must be identical), VACUUM ANALYZE runs (as autovacuum would have by
 * then) and a CHECKPOINT flushes the load's writes before anything is measured. The chain is then checked by
 * PostgreSQL's own sha256 (the formula of drizzle/0001_digest_chain.sql), independently of the code that built it.
 *
 * TRADING: the same events through JetStreamTradingLog.append (the sequencer's publisher: bodies, subjects,
 * chained-digest msg ids, expected-last-sequence headers), from position 1; the sequencer's start-up check
 * (catchUpTrading: TRADING's head is the log's head, and its message there is the log's event) then passes
 * because TRADING holds the whole log, as it does in a deployment without TRADING limits. The cheaper TRADING —
 * an empty stream purged up to N−k (`purge({ seq: N−k+1 })`) and only the last k events published — is not one
 * the sequencer can go on from on nats-server 2.9.10: the purge moves first_seq and last_seq in the stream's info,
 * but the server's expected-last-sequence check keeps its old last sequence, so the next append is refused
 * ("wrong last sequence: 0"; a stream update does not reset it).
 */
import type { JetStreamClient, JetStreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import postgres from "postgres";
import { openDatabase } from "../../src/adapters/db/client.ts";
import { TRADING_STREAM } from "../../src/adapters/nats/topology.ts";
import { JetStreamTradingLog, tradingDifference } from "../../src/adapters/nats/trading-publisher.ts";
import { DigestChain } from "../../src/app/log-digest.ts";
import type { SequencedRecord } from "../../src/app/ports.ts";
import { type EventBody, encodeSequencedEvent, ownerOf } from "../../src/domain/events.ts";
import { decodeSnowflake, SnowflakeGenerator } from "../../src/domain/ids.ts";

/** Snowflake worker id of the synthetic log's ids (the drain's backlog uses 1000, the replay fill 1001). */
const LOG_WORKER_ID = 1002;
/** Events generated, written to COPY and appended to TRADING at a time (a sequencer batch's size). */
const CHUNK = 1_000;

/** What fixes the synthetic log: its length and the logical clock its ids start from. */
export type LogShape = { rows: number; startMs: number };

/** A log a day old: its ids sort before anything generated now. */
export function logShape(rows: number): LogShape {
  return { rows, startMs: Date.now() - 86_400_000 };
}

/** One event of the synthetic log with what the events row needs beyond the payload. */
export type LogRow = {
  sequenceId: bigint;
  referenceId: bigint;
  type: EventBody["type"];
  userId: bigint;
  counterpartyId: bigint | null;
  idempotencyKey: string | null;
  createdAt: string;
  sequencedAt: string;
  payload: string;
  digest: string;
};

/** Mostly orders, some cancels and transfers (so the counterparty index is not empty), a key on every tenth. */
function bodyOf(i: number, ids: SnowflakeGenerator): EventBody {
  const userId = BigInt(1 + (i % 10_000));
  if (i % 97 === 0) {
    return {
      type: "TRANSFER",
      fromUserId: userId,
      toUserId: BigInt(1 + ((i + 1) % 10_000)),
      assetId: 1n,
      amount: "10.5",
    };
  }
  if (i % 31 === 0) return { type: "CANCEL_ORDER", userId, orderId: ids.next() };
  return {
    type: "CREATE_ORDER",
    userId,
    orderId: ids.next(),
    direction: i % 2 ? "BUY" : "SELL",
    price: `${100 + (i % 50)}.25`,
    quantity: "1.5",
  };
}

/** The log in chunks of CHUNK events, in order, digests chained from the genesis digest. */
export function* logChunks(shape: LogShape): Generator<LogRow[]> {
  const ids = new SnowflakeGenerator(LOG_WORKER_ID, () => shape.startMs);
  const chain = new DigestChain();
  for (let first = 1; first <= shape.rows; first += CHUNK) {
    const rows: LogRow[] = [];
    const last = Math.min(first + CHUNK - 1, shape.rows);
    let createdAt = "";
    let sequencedAt = "";
    for (let i = first; i <= last; i++) {
      const referenceId = ids.next();
      if (i === first) {
        // One sequencedAt per chunk, as a batch shares one; a few ms after the first request of the chunk.
        const createdMs = decodeSnowflake(referenceId).timeMs;
        createdAt = new Date(createdMs).toISOString();
        sequencedAt = new Date(createdMs + 5).toISOString();
      }
      const body = bodyOf(i, ids);
      const sequenceId = BigInt(i);
      const payload = encodeSequencedEvent({
        ...body,
        sequenceId,
        previousId: sequenceId - 1n,
        referenceId,
        createdAt,
        sequencedAt,
      });
      const userId = ownerOf(body);
      rows.push({
        sequenceId,
        referenceId,
        type: body.type,
        userId,
        counterpartyId: body.type === "TRANSFER" ? body.toUserId : null,
        idempotencyKey: i % 10 === 0 ? `${userId}:k${i}` : null,
        createdAt,
        sequencedAt,
        payload,
        digest: chain.next(payload),
      });
    }
    yield rows;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// PostgreSQL
// ---------------------------------------------------------------------------------------------------------------

const COPY_COLUMNS =
  "sequence_id, previous_id, reference_id, type, user_id, payload, idempotency_key, created_at, sequenced_at, digest, counterparty_id";

const COPY_SPECIAL = /[\\\t\n\r]/;

/** A value in COPY's text format (a JSON payload holds no tab or newline, but a backslash is possible). */
function copyText(value: string): string {
  if (!COPY_SPECIAL.test(value)) return value;
  return value.replace(/[\\\t\n\r]/g, (c) =>
    c === "\\" ? "\\\\" : c === "\t" ? "\\t" : c === "\n" ? "\\n" : "\\r",
  );
}

/** The rows as COPY's text format lines, in COPY_COLUMNS' order. */
export function copyLines(rows: readonly LogRow[]): string {
  let out = "";
  for (const r of rows) {
    out += `${r.sequenceId}\t${r.sequenceId - 1n}\t${r.referenceId}\t${r.type}\t${r.userId}\t${copyText(r.payload)}\t${
      r.idempotencyKey === null ? "\\N" : copyText(r.idempotencyKey)
    }\t${r.createdAt}\t${r.sequencedAt}\t\\\\x${r.digest}\t${r.counterpartyId ?? "\\N"}\n`;
  }
  return out;
}

/** The events table's indexes and constraints as PostgreSQL prints them: what must not differ from the migrations'. */
async function schemaOf(sql: postgres.Sql): Promise<string[]> {
  const indexes = await sql<{ def: string }[]>`
    select indexdef as def from pg_indexes where schemaname = 'public' and tablename = 'events'`;
  const constraints = await sql<{ def: string }[]>`
    select conname || ' ' || pg_get_constraintdef(oid) as def from pg_constraint
    where conrelid = 'public.events'::regclass`;
  return [...indexes, ...constraints].map((r) => r.def).sort();
}

/** The index-backed objects of events, each with the statement that creates it again exactly as it was. */
async function indexBacked(sql: postgres.Sql): Promise<{ drop: string; create: string }[]> {
  const constraints = await sql<{ name: string; def: string }[]>`
    select conname as name, pg_get_constraintdef(oid) as def from pg_constraint
    where conrelid = 'public.events'::regclass and contype in ('p', 'u')`;
  const indexes = await sql<{ name: string; def: string }[]>`
    select i.relname as name, pg_get_indexdef(i.oid) as def
    from pg_index x join pg_class i on i.oid = x.indexrelid
    where x.indrelid = 'public.events'::regclass
      and not exists (select 1 from pg_constraint c where c.conindid = x.indexrelid)`;
  return [
    ...constraints.map((c) => ({
      drop: `alter table events drop constraint "${c.name}"`,
      create: `alter table events add constraint "${c.name}" ${c.def}`,
    })),
    ...indexes.map((i) => ({ drop: `drop index "${i.name}"`, create: i.def })),
  ];
}

export type LogBuild = {
  /** COPY of the rows (generation in Bun included: they overlap). */
  loadS: number;
  /** The indexes and unique constraints created again. */
  indexS: number;
  /** VACUUM ANALYZE and CHECKPOINT. */
  vacuumS: number;
  /** The digest chain recomputed by PostgreSQL's sha256 over every row. */
  checkS: number;
  /** "" when it ran; why not otherwise (a non-superuser DATABASE_URL may not CHECKPOINT). */
  checkpoint: string;
};

/** Migrates `databaseUrl` with the service's migrations and fills `events` with the synthetic log. */
export async function buildLogDatabase(databaseUrl: string, shape: LogShape): Promise<LogBuild> {
  const database = await openDatabase({ url: databaseUrl, pgliteDir: "" });
  try {
    await database.migrate();
  } finally {
    await database.close();
  }
  const sql = postgres(databaseUrl, { max: 1, onnotice: () => {} });
  try {
    const migrated = await schemaOf(sql);
    const objects = await indexBacked(sql);
    let started = performance.now();
    await sql.begin(async (tx) => {
      // FREEZE needs the table emptied in this transaction: rows go in frozen and all-visible, so neither the
      // first reads (hint bits) nor a vacuum rewrites 10M rows' pages afterwards.
      await tx`truncate events`;
      for (const o of objects) await tx.unsafe(o.drop);
      const copy = await tx.unsafe(`copy events (${COPY_COLUMNS}) from stdin with (freeze)`).writable();
      for (const rows of logChunks(shape)) {
        if (!copy.write(copyLines(rows))) await new Promise((resolve) => copy.once("drain", resolve));
      }
      await new Promise<void>((resolve, reject) => {
        copy.once("error", reject);
        copy.end(resolve);
      });
    });
    const loadS = (performance.now() - started) / 1000;
    started = performance.now();
    await sql`set maintenance_work_mem = '512MB'`;
    for (const o of objects) await sql.unsafe(o.create);
    const indexS = (performance.now() - started) / 1000;
    const rebuilt = await schemaOf(sql);
    if (rebuilt.join("\n") !== migrated.join("\n")) {
      throw new Error(
        `growth: events' indexes and constraints differ from the migrations' after the load:\n${rebuilt.join("\n")}\n---\n${migrated.join("\n")}`,
      );
    }
    started = performance.now();
    await sql`vacuum analyze events`;
    const checkpoint = await sql`checkpoint`.then(
      () => "",
      (error: Error) => `CHECKPOINT refused: ${error.message}`,
    );
    const vacuumS = (performance.now() - started) / 1000;
    started = performance.now();
    await checkChain(sql, shape.rows);
    return { loadS, indexS, vacuumS, checkS: (performance.now() - started) / 1000, checkpoint };
  } finally {
    await sql.end();
  }
}

/** Every row's digest = sha256(previous digest ‖ payload), by PostgreSQL; rows 1..n without a hole. */
async function checkChain(sql: postgres.Sql, n: number): Promise<void> {
  const [row] = await sql<{ rows: string; max: string; broken: string; first: string | null }[]>`
    select count(*)::text as rows, coalesce(max(e.sequence_id), 0)::text as max,
           count(*) filter (where e.digest is distinct from
             sha256(coalesce(p.digest, decode(repeat('00', 32), 'hex')) || convert_to(e.payload, 'UTF8')))::text as broken,
           min(e.sequence_id) filter (where p.sequence_id is null and e.sequence_id <> 1)::text as first
    from events e left join events p on p.sequence_id = e.sequence_id - 1`;
  if (row?.rows !== String(n) || row.max !== String(n) || row.broken !== "0" || row.first !== null) {
    throw new Error(
      `growth: the built log is not valid: ${row?.rows} rows up to ${row?.max}, ${row?.broken} digests that do not chain, first row without a predecessor ${row?.first}`,
    );
  }
}

// ---------------------------------------------------------------------------------------------------------------
// TRADING
// ---------------------------------------------------------------------------------------------------------------

/**
 * Appends the synthetic log to an empty TRADING with the sequencer's publisher, then checks TRADING's last message
 * against the database's head row (what the sequencer's start-up checks). Returns the seconds taken.
 */
export async function fillTradingWithLog(
  broker: { nc: NatsConnection; js: JetStreamClient; jsm: JetStreamManager },
  shape: LogShape,
  databaseUrl: string,
): Promise<number> {
  const started = performance.now();
  const trading = new JetStreamTradingLog(broker.nc, broker.js, broker.jsm, 30_000);
  const before = (await broker.jsm.streams.info(TRADING_STREAM)).state;
  if (before.last_seq !== 0) throw new Error(`growth: TRADING is not empty (last_seq ${before.last_seq})`);
  for (const rows of logChunks(shape)) {
    await trading.append(
      rows.map(
        (r): SequencedRecord => ({
          sequenceId: r.sequenceId,
          type: r.type,
          payload: r.payload,
          digest: r.digest,
        }),
      ),
    );
  }
  const seconds = (performance.now() - started) / 1000;
  const sql = postgres(databaseUrl, { max: 1, onnotice: () => {} });
  try {
    const [head] = await sql<{ id: string; type: string; payload: string; digest: string }[]>`
      select sequence_id::text as id, type, payload, encode(digest, 'hex') as digest
      from events order by sequence_id desc limit 1`;
    if (!head) throw new Error("growth: the built log is empty");
    const message = await broker.jsm.streams.getMessage(TRADING_STREAM, { seq: Number(head.id) });
    const difference = message
      ? tradingDifference(message, {
          sequenceId: BigInt(head.id),
          type: head.type,
          payload: head.payload,
          digest: head.digest,
        })
      : "TRADING has no message there";
    if (difference !== null)
      throw new Error(`growth: TRADING's event ${head.id} is not the log's: ${difference}`);
  } finally {
    await sql.end();
  }
  return seconds;
}
