/**
 * `sequencer inspect`: the state of the pipeline on one screen — SEQUENCE, the `sequencer` consumer, TRADING,
 * the database head — and a verdict: in sync, behind (work in flight), or MISMATCH (an invariant is broken:
 * TRADING ahead of the log, a hole in the log, or TRADING's last message not the log's event at that position:
 * its bytes, subject or msg id digest differ). `--json` prints the same as one JSON object.
 *
 * `sequencer inspect --verify [--from N]` (verifyLog) walks the whole log from N: it recomputes the digest chain
 * over `events` and compares every event with TRADING's message at its position, and names the first sequenceId
 * where anything differs. When TRADING's retention limits (TRADING_MAX_AGE / TRADING_MAX_BYTES) removed the start
 * of TRADING, the walk starts at the first sequenceId TRADING still holds, and says so (docs/storage.md).
 */
import { DeliverPolicy, type JsMsg, jetstream, jetstreamManager } from "@nats-io/jetstream";
import { sql as dsql } from "drizzle-orm";
import postgres from "postgres";
import { postgresDb, rowsOf } from "./adapters/db/client.ts";
import { readHead } from "./adapters/db/event-store.ts";
import { connectNats, type NatsIdentity } from "./adapters/nats/connection.ts";
import { INTAKE_STREAM, SEQUENCER_CONSUMER, TRADING_STREAM } from "./adapters/nats/topology.ts";
import { carriesDigest, type TradingMessage, tradingDifference } from "./adapters/nats/trading-publisher.ts";
import { DigestChain, ZERO_DIGEST } from "./app/log-digest.ts";

export type Inspection = {
  sequence: { messages: number; firstSeq: number; lastSeq: number; bytes: number };
  consumer: {
    pending: number;
    ackPending: number;
    redelivered: number;
    lastDelivered: number;
    ackFloor: number;
  };
  /** firstSeq: the first position TRADING still holds (lastSeq + 1 when empty, e.g. all removed by its limits). */
  trading: { messages: number; firstSeq: number; lastSeq: number };
  database: { head: string; count: string; rejected: string } | null;
  /**
   * TRADING's last message compared with the log's event at that position (bytes, subject, the digest in its msg
   * id):
   * `difference` null when they match. Null when not compared (no database, TRADING empty or ahead of the log).
   */
  tail: { sequenceId: string; difference: string | null } | null;
  verdict: { state: "in sync" | "behind" | "MISMATCH"; detail: string };
};

export async function inspect(
  natsUrl: string,
  databaseUrl: string | undefined,
  identity: NatsIdentity = {},
): Promise<Inspection> {
  const nc = await connectNats(natsUrl, { ...identity, timeout: 5_000 });
  let sequence: Inspection["sequence"];
  let consumer: Inspection["consumer"];
  let trading: Inspection["trading"];
  let tailMessage: TradingMessage | null = null;
  try {
    const jsm = await jetstreamManager(nc);
    const [s, c, t] = await Promise.all([
      jsm.streams.info(INTAKE_STREAM),
      jsm.consumers.info(INTAKE_STREAM, SEQUENCER_CONSUMER),
      jsm.streams.info(TRADING_STREAM),
    ]);
    sequence = {
      messages: s.state.messages,
      firstSeq: s.state.first_seq,
      lastSeq: s.state.last_seq,
      bytes: s.state.bytes,
    };
    consumer = {
      pending: c.num_pending,
      ackPending: c.num_ack_pending,
      redelivered: c.num_redelivered,
      lastDelivered: c.delivered.stream_seq,
      ackFloor: c.ack_floor.stream_seq,
    };
    trading = {
      messages: t.state.messages,
      firstSeq: t.state.messages > 0 ? t.state.first_seq : t.state.last_seq + 1,
      lastSeq: t.state.last_seq,
    };
    if (databaseUrl && t.state.messages > 0) {
      tailMessage = await jsm.streams.getMessage(TRADING_STREAM, { seq: t.state.last_seq });
    }
  } finally {
    await nc.close();
  }

  let database: Inspection["database"] = null;
  let tail: Inspection["tail"] = null;
  if (databaseUrl) {
    const sql = postgres(databaseUrl, { max: 1, onnotice: () => {}, connect_timeout: 5 });
    try {
      database = await readDatabase(sql);
      // Not when TRADING's limits removed every message (nothing to compare: its last position is empty).
      if (
        database &&
        trading.messages > 0 &&
        trading.lastSeq > 0 &&
        BigInt(trading.lastSeq) <= BigInt(database.head)
      ) {
        const at = BigInt(trading.lastSeq);
        const [event] = await sql<{ type: string; payload: string; digest: string }[]>`
          select type, payload, encode(digest, 'hex') as digest from events where sequence_id = ${at.toString()}`;
        tail = {
          sequenceId: at.toString(),
          difference: !tailMessage
            ? "TRADING has no message there"
            : !event
              ? "the log has no event there"
              : tradingDifference(tailMessage, { sequenceId: at, ...event }),
        };
      }
    } finally {
      await sql.end({ timeout: 5 });
    }
  }
  return {
    sequence,
    consumer,
    trading,
    database,
    tail,
    verdict: verdictOf(consumer, trading, database, tail),
  };
}

/**
 * The log's head and row counts, read in one snapshot: a head and a count read at two moments would differ
 * while the sequencer appends, and look like a hole.
 */
async function readDatabase(sql: postgres.Sql): Promise<NonNullable<Inspection["database"]>> {
  return postgresDb(sql).transaction(
    async (tx) => {
      const head = await readHead(tx);
      const [counts] = rowsOf<{ count: string; rejected: string }>(
        await tx.execute(dsql`
          select (select count(*) from events)::text as count,
                 (select count(*) from rejected_messages)::text as rejected`),
      );
      return {
        head: head.sequenceId.toString(),
        count: counts?.count ?? "0",
        rejected: counts?.rejected ?? "0",
      };
    },
    { isolationLevel: "repeatable read", accessMode: "read only" },
  );
}

export function verdictOf(
  consumer: Inspection["consumer"],
  trading: Inspection["trading"],
  database: Inspection["database"],
  tail: Inspection["tail"] = null,
): Inspection["verdict"] {
  const waiting = consumer.pending + consumer.ackPending;
  if (!database) {
    return waiting > 0
      ? { state: "behind", detail: `${waiting} intake messages not yet sequenced (database not inspected)` }
      : { state: "in sync", detail: "intake drained (database not inspected: set DATABASE_URL)" };
  }
  const head = BigInt(database.head);
  const tradingLast = BigInt(trading.lastSeq);
  if (BigInt(database.count) !== head) {
    return {
      state: "MISMATCH",
      detail: `the log has ${database.count} rows but its head is ${head}: a hole`,
    };
  }
  if (tradingLast > head) {
    return { state: "MISMATCH", detail: `TRADING is at ${tradingLast}, ahead of the database head ${head}` };
  }
  if (tail?.difference) {
    return {
      state: "MISMATCH",
      detail: `TRADING's message at sequenceId ${tail.sequenceId} is not the log's event: ${tail.difference} (inspect --verify finds the first difference)`,
    };
  }
  const parts: string[] = [];
  if (tradingLast < head) parts.push(`TRADING ${head - tradingLast} behind the database`);
  if (waiting > 0) parts.push(`${waiting} intake messages not yet sequenced`);
  return parts.length > 0
    ? { state: "behind", detail: parts.join("; ") }
    : { state: "in sync", detail: `head ${head}` };
}

export function formatInspection(i: Inspection): string {
  const db = i.database
    ? `head ${i.database.head}  rows ${i.database.count}  rejected ${i.database.rejected}`
    : "not inspected (set DATABASE_URL; PGlite belongs to the running service)";
  return [
    `SEQUENCE   messages ${i.sequence.messages}  first ${i.sequence.firstSeq}  last ${i.sequence.lastSeq}  bytes ${i.sequence.bytes}`,
    `consumer   ${SEQUENCER_CONSUMER}: pending ${i.consumer.pending}  ack pending ${i.consumer.ackPending}  redelivered ${i.consumer.redelivered}  last delivered ${i.consumer.lastDelivered}  ack floor ${i.consumer.ackFloor}`,
    `TRADING    messages ${i.trading.messages}  first ${i.trading.firstSeq}  last ${i.trading.lastSeq}${
      i.tail === null
        ? ""
        : i.tail.difference === null
          ? "  (its last message matches the log)"
          : `  (DIFFERS from the log: ${i.tail.difference})`
    }`,
    `database   ${db}`,
    `verdict    ${i.verdict.state === "behind" ? "behind" : i.verdict.state}: ${i.verdict.detail}`,
  ].join("\n");
}

/** The outcome of `inspect --verify`: OK, or the first sequenceId where the log or TRADING differs. */
export type Verification = {
  state: "OK" | "MISMATCH";
  /** The first sequenceId that differs (MISMATCH only). */
  sequenceId: string | null;
  detail: string;
};

const VERIFY_PAGE = 1_000;

/** The iterator's next value, or undefined when it ends or gives nothing within `ms` (a message removed meanwhile). */
async function nextWithin<T>(iterator: AsyncIterator<T>, ms: number): Promise<T | undefined> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<undefined>((resolve) => {
    timer = setTimeout(() => resolve(undefined), ms);
  });
  try {
    const next = await Promise.race([iterator.next(), timeout]);
    return next === undefined || next.done ? undefined : next.value;
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Walks `events` from `requested` (keyset pages) and TRADING from the same position (an ordered consumer) in step,
 * up to the heads both had when it started. For each event: the digest chained from the previous one (starting
 * from row from-1's stored digest) must equal the stored digest, and TRADING's message at that position must carry
 * the same bytes and subject and a msg id carrying the digest's first 32 hex characters (tradingDifference).
 * Names the first sequenceId where anything differs. Reads the database directly: it needs DATABASE_URL (PGlite
 * belongs to the running service).
 *
 * When TRADING no longer holds `requested` (its retention limits removed the older messages), the walk starts at
 * the first position TRADING holds, and the answer says so: the events before it are in PostgreSQL only, with
 * nothing on TRADING to compare them with. A message the limits remove while the walk runs is skipped (and
 * counted in the answer); one missing at or above TRADING's first position is a mismatch.
 */
export async function verifyLog(
  natsUrl: string,
  databaseUrl: string | undefined,
  requested: bigint,
  identity: NatsIdentity = {},
): Promise<Verification> {
  if (!databaseUrl) {
    throw new Error(
      "inspect --verify reads the events table: set DATABASE_URL (PGlite belongs to the running service)",
    );
  }
  if (requested < 1n) throw new Error("--from must be a sequenceId (1 or more)");
  const mismatch = (sequenceId: bigint, detail: string): Verification => ({
    state: "MISMATCH",
    sequenceId: sequenceId.toString(),
    detail,
  });
  const sql = postgres(databaseUrl, { max: 1, onnotice: () => {}, connect_timeout: 5 });
  const nc = await connectNats(natsUrl, { ...identity, timeout: 5_000 }).catch(async (error) => {
    await sql.end({ timeout: 5 });
    throw error;
  });
  let messages: { close(): Promise<unknown> } | undefined;
  let published: AsyncIterator<JsMsg> | undefined;
  try {
    const jsm = await jetstreamManager(nc);
    /** TRADING's first position now (last + 1 when it is empty, e.g. after its limits removed everything). */
    const tradingFirstNow = async () => {
      const state = (await jsm.streams.info(TRADING_STREAM)).state;
      return BigInt(state.messages > 0 ? state.first_seq : state.last_seq + 1);
    };
    const info = (await jsm.streams.info(TRADING_STREAM)).state;
    const tradingLast = BigInt(info.last_seq);
    const tradingFirst = BigInt(info.messages > 0 ? info.first_seq : info.last_seq + 1);
    // The events before TRADING's first position have nothing on TRADING to be compared with: start there.
    const from = tradingFirst > requested ? tradingFirst : requested;
    const trimmed =
      from > requested
        ? `TRADING no longer holds ${requested}..${from - 1n} (removed by its retention limits; they are in PostgreSQL, GET /events): walked from ${from}; `
        : "";
    const head = (await readHead(postgresDb(sql))).sequenceId;
    let chainedFrom = ZERO_DIGEST;
    if (from > 1n) {
      const [before] = await sql<{ digest: string }[]>`
        select encode(digest, 'hex') as digest from events where sequence_id = ${(from - 1n).toString()}`;
      if (!before)
        return mismatch(from - 1n, `the log has no event ${from - 1n} to chain event ${from} from`);
      chainedFrom = before.digest;
    }
    const chain = new DigestChain(chainedFrom);
    // TRADING from `from` (at or after its first message) to its last one.
    const tradingFrom = from;
    if (tradingFrom <= tradingLast) {
      const consumer = await jetstream(nc).consumers.get(TRADING_STREAM, {
        deliver_policy: DeliverPolicy.StartSequence,
        opt_start_seq: Number(tradingFrom),
      });
      const consuming = await consumer.consume();
      messages = consuming;
      published = (consuming as AsyncIterable<JsMsg>)[Symbol.asyncIterator]();
    }

    let expected = from;
    /** TRADING messages with the log's bytes and msg id = sequenceId: published before the digest chain existed. */
    let withoutDigest = 0;
    /** TRADING's first position as last seen: below it, its limits removed the messages during this walk. */
    let floor = tradingFrom;
    /** Messages the limits removed during the walk (skipped, not compared). */
    let removedMeanwhile = 0;
    /** A message read ahead (past a removed one), for the position it is at. */
    let held: JsMsg | undefined;
    while (expected <= head) {
      // (`id`, not `sequence_id`: ORDER BY would take the text column of that name and sort "10" before "2".)
      const page = await sql<{ id: string; type: string; payload: string; digest: string }[]>`
        select sequence_id::text as id, type, payload, encode(digest, 'hex') as digest from events
        where sequence_id >= ${expected.toString()} and sequence_id <= ${head.toString()}
        order by events.sequence_id limit ${VERIFY_PAGE}`;
      if (page.length === 0) break;
      for (const row of page) {
        const sequenceId = BigInt(row.id);
        if (sequenceId !== expected) return mismatch(expected, `the log has no event ${expected}: a hole`);
        const problems: string[] = [];
        if (chain.next(row.payload) !== row.digest) {
          problems.push(
            `its stored digest ${row.digest} does not follow from its payload and the previous digest (the payload or the digest was changed)`,
          );
        }
        if (published && sequenceId >= tradingFrom && sequenceId < floor && sequenceId <= tradingLast) {
          removedMeanwhile++;
        } else if (published && sequenceId >= tradingFrom && sequenceId <= tradingLast) {
          const message = held ?? (await nextWithin(published, 10_000));
          held = undefined;
          // Past this position, or none: removed by TRADING's limits since the walk started, or missing.
          if (!message || BigInt(message.seq) > sequenceId) floor = await tradingFirstNow();
          if (floor > sequenceId) {
            removedMeanwhile++;
            held = message;
          } else if (!message || BigInt(message.seq) !== sequenceId) {
            problems.push(`TRADING has no message at ${sequenceId}`);
          } else {
            const read = { subject: message.subject, data: message.data, header: message.headers };
            if (!carriesDigest(read)) withoutDigest++;
            const difference = tradingDifference(read, {
              sequenceId,
              type: row.type,
              payload: row.payload,
              digest: row.digest,
            });
            if (difference !== null) problems.push(`TRADING: ${difference}`);
          }
        }
        if (problems.length > 0) return mismatch(sequenceId, problems.join("; "));
        expected++;
      }
    }
    if (tradingLast > head) {
      return mismatch(head + 1n, `TRADING is at ${tradingLast}, past the log's head ${head}`);
    }
    const checked = head >= from ? `events ${from}..${head}` : `no events from ${from} (head ${head})`;
    const onTrading =
      tradingLast >= tradingFrom ? `TRADING ${tradingFrom}..${tradingLast}` : "nothing on TRADING to compare";
    const removed =
      removedMeanwhile > 0
        ? `; ${removedMeanwhile} TRADING messages were removed by its retention limits during the walk (not compared)`
        : "";
    const behind = tradingLast < head ? `; ${head - tradingLast} events not yet on TRADING` : "";
    const legacy =
      withoutDigest > 0
        ? `; ${withoutDigest} TRADING messages predate the digest chain (msg id = sequenceId)`
        : "";
    return {
      state: "OK",
      sequenceId: null,
      detail: `${trimmed}${checked} chain intact, ${onTrading} match${removed}${behind}${legacy} (head digest ${chain.head})`,
    };
  } finally {
    // Ending the iteration first, as a `for await` would: close() waits for the iterator to finish.
    await published?.return?.();
    await messages?.close();
    await nc.close();
    await sql.end({ timeout: 5 });
  }
}

export function formatVerification(v: Verification): string {
  return v.state === "OK"
    ? `verify     OK: ${v.detail}`
    : `verify     MISMATCH at sequenceId ${v.sequenceId}: ${v.detail}`;
}
