/**
 * `sequencer inspect`: the state of the pipeline on one screen — SEQUENCE, the `sequencer` consumer, TRADING,
 * the database head — and a verdict: in sync, behind (work in flight), or MISMATCH (an invariant is broken:
 * TRADING ahead of the log, or a hole in the log). `--json` prints the same as one JSON object.
 */
import { jetstreamManager } from "@nats-io/jetstream";
import postgres from "postgres";
import { connectNats } from "./adapters/nats/connection.ts";
import { INTAKE_STREAM, SEQUENCER_CONSUMER, TRADING_STREAM } from "./adapters/nats/topology.ts";

export type Inspection = {
  sequence: { messages: number; firstSeq: number; lastSeq: number; bytes: number };
  consumer: {
    pending: number;
    ackPending: number;
    redelivered: number;
    lastDelivered: number;
    ackFloor: number;
  };
  trading: { messages: number; lastSeq: number };
  database: { head: string; count: string; rejected: string } | null;
  verdict: { state: "in sync" | "behind" | "MISMATCH"; detail: string };
};

export async function inspect(natsUrl: string, databaseUrl: string | undefined): Promise<Inspection> {
  const nc = await connectNats(natsUrl, { timeout: 5_000 });
  let sequence: Inspection["sequence"];
  let consumer: Inspection["consumer"];
  let trading: Inspection["trading"];
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
    trading = { messages: t.state.messages, lastSeq: t.state.last_seq };
  } finally {
    await nc.close();
  }

  let database: Inspection["database"] = null;
  if (databaseUrl) {
    const sql = postgres(databaseUrl, { max: 1, onnotice: () => {}, connect_timeout: 5 });
    try {
      const [row] = await sql<{ head: string; count: string; rejected: string }[]>`
        select coalesce(max(sequence_id), 0)::text as head, count(*)::text as count,
               (select count(*) from rejected_messages)::text as rejected
        from events`;
      database = row ?? null;
    } finally {
      await sql.end({ timeout: 5 });
    }
  }
  return { sequence, consumer, trading, database, verdict: verdictOf(consumer, trading, database) };
}

export function verdictOf(
  consumer: Inspection["consumer"],
  trading: Inspection["trading"],
  database: Inspection["database"],
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
    `TRADING    messages ${i.trading.messages}  last ${i.trading.lastSeq}`,
    `database   ${db}`,
    `verdict    ${i.verdict.state === "behind" ? "behind" : i.verdict.state}: ${i.verdict.detail}`,
  ].join("\n");
}
