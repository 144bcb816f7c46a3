/**
 * Wires the real adapters (nats.js, Drizzle) around a Sequencer for integration tests, the way src/service.ts
 * does, but step by step so a test can inject a failpoint by wrapping an adapter.
 */
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  type JetStreamClient,
  type JetStreamManager,
  type JsMsg,
  jetstream,
  jetstreamManager,
} from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { type Database, openDatabase } from "../../src/adapters/db/client.ts";
import { DrizzleEventStore, type StoredEvent } from "../../src/adapters/db/event-store.ts";
import { JetStreamIntakeSource } from "../../src/adapters/nats/intake-consumer.ts";
import { JetStreamIntakePublisher } from "../../src/adapters/nats/intake-publisher.ts";
import { ensureTopology, TRADING_STREAM } from "../../src/adapters/nats/topology.ts";
import {
  digestOfMsgId,
  JetStreamTradingLog,
  msgIdDigest,
  type TradingLog,
  tradingMsgId,
} from "../../src/adapters/nats/trading-publisher.ts";
import { chainDigests, DigestChain, ZERO_DIGEST } from "../../src/app/log-digest.ts";
import { Sequencer } from "../../src/app/sequencer.ts";
import {
  type CreateOrder,
  encodeSequencedEvent,
  type Intake,
  type SequencedEvent,
} from "../../src/domain/events.ts";
import { SnowflakeGenerator } from "../../src/domain/ids.ts";
import { createLogger } from "../../src/logger.ts";
import { getPostgres } from "./services.ts";

export type Stack = {
  nc: NatsConnection;
  js: JetStreamClient;
  jsm: JetStreamManager;
  database: Database;
  store: DrizzleEventStore;
  intake: JetStreamIntakePublisher;
  close(): Promise<void>;
};

/** A database URL, or undefined for a fresh PGlite directory. */
export async function openStack(natsUrl: string, databaseUrl: string | undefined): Promise<Stack> {
  const nc = await connect({ servers: natsUrl });
  const jsm = await jetstreamManager(nc);
  const js = jetstream(nc);
  await ensureTopology(jsm, { duplicateWindowMs: 120_000, ackWaitMs: 30_000, maxAckPending: 20_000 });
  const database = await openDatabase({
    url: databaseUrl,
    pgliteDir: join(mkdtempSync(join(tmpdir(), "seq-pglite-")), "pg"),
  });
  await database.migrate();
  return {
    nc,
    js,
    jsm,
    database,
    store: new DrizzleEventStore(database.db),
    intake: new JetStreamIntakePublisher(js, 5_000),
    async close() {
      await nc.close();
      await database.close();
    },
  };
}

export type RunningSequencer = { sequencer: Sequencer; stop(): Promise<void> };

export async function runSequencer(
  stack: Stack,
  options: { wrapTrading?: (real: TradingLog) => TradingLog; batchSize?: number } = {},
): Promise<RunningSequencer> {
  const source = await JetStreamIntakeSource.open(stack.js, 2_000);
  const real = new JetStreamTradingLog(stack.nc, stack.js, stack.jsm, 5_000);
  const sequencer = new Sequencer(
    source,
    stack.store,
    options.wrapTrading ? options.wrapTrading(real) : real,
    { batchSize: options.batchSize ?? 500, fetchWaitMs: 100, catchUpPageSize: 50, keepAliveMs: 5_000 },
    createLogger({ test: true }, "silent"),
  );
  const abort = new AbortController();
  const done = sequencer.run(abort.signal);
  return {
    sequencer,
    async stop() {
      abort.abort();
      await done;
      await source.close();
    },
  };
}

/**
 * Events as the sequencer stores them: each payload encoded and its digest chained, in order, after `from` (the
 * digest of the event before the first; the zero digest before sequenceId 1). Pass `from` to append() as well.
 */
export function chained(events: readonly SequencedEvent[], from: string = ZERO_DIGEST): StoredEvent[] {
  const chain = new DigestChain(from);
  return events.map((event) => {
    const payload = encodeSequencedEvent(event);
    return { event, payload, digest: chain.next(payload) };
  });
}

let userCounter = 0n;
const ids = new SnowflakeGenerator(900);

export function makeOrder(overrides: Partial<Intake<CreateOrder>> = {}): Intake<CreateOrder> {
  userCounter++;
  return {
    referenceId: ids.next(),
    type: "CREATE_ORDER",
    createdAt: new Date().toISOString(),
    userId: userCounter,
    orderId: ids.next(),
    direction: userCounter % 2n === 0n ? "BUY" : "SELL",
    price: `${100 + Number(userCounter % 50n)}.25`,
    quantity: "1.5",
    ...overrides,
  };
}

export async function waitFor(
  what: string,
  check: () => Promise<boolean>,
  timeoutMs = 20_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export type TradingMessage = {
  position: number;
  msgId: string | undefined;
  /** The digest part of the msg id (the first 32 hex characters of the event's digest); null without one. */
  digest: string | null;
  subject: string;
  /** The body as published (text). */
  raw: string;
  body: Record<string, string>;
};

/** Reads TRADING from the first message to the last, with positions, Nats-Msg-Id and the digest it carries. */
export async function readTrading(stack: Stack): Promise<TradingMessage[]> {
  const info = await stack.jsm.streams.info(TRADING_STREAM);
  const last = info.state.last_seq;
  if (info.state.messages === 0) return [];
  const consumer = await stack.js.consumers.get(TRADING_STREAM); // ordered consumer, from the start
  const out: TradingMessage[] = [];
  const messages = await consumer.consume();
  for await (const msg of messages as AsyncIterable<JsMsg>) {
    out.push({
      position: msg.seq,
      msgId: msg.headers?.get("Nats-Msg-Id"),
      digest: digestOfMsgId(msg.headers?.get("Nats-Msg-Id")),
      subject: msg.subject,
      raw: msg.string(),
      body: msg.json<Record<string, string>>(),
    });
    if (msg.seq >= last) break;
  }
  await messages.close();
  return out;
}

/**
 * Every invariant the issue names, over the log and TRADING: 1..N, previousId, positions, msg ids, once each; and
 * the digest chain: every stored digest follows from the previous one and the payload, and TRADING carries the
 * same bytes and msg id `<sequenceId>:<the digest's first 32 hex characters>` (tradingMsgId).
 */
export async function checkLog(
  stack: Stack,
): Promise<{ events: Record<string, string>[]; trading: TradingMessage[] }> {
  const records = await stack.store.readAfter(0n, 1_000_000);
  const events = records.map((r) => JSON.parse(r.payload) as Record<string, string>);
  const trading = await readTrading(stack);
  const problems: string[] = [];
  events.forEach((event, i) => {
    const expected = String(i + 1);
    if (event.sequenceId !== expected) problems.push(`event ${i} has sequenceId ${event.sequenceId}`);
    if (event.previousId !== String(i)) problems.push(`event ${expected} has previousId ${event.previousId}`);
    if (i > 0 && (event.sequencedAt ?? "") < (events[i - 1]?.sequencedAt ?? "")) {
      problems.push(`sequencedAt goes back at ${expected}`);
    }
  });
  const digests = chainDigests(
    ZERO_DIGEST,
    records.map((r) => r.payload),
  );
  records.forEach((r, i) => {
    if (r.digest !== digests[i]) problems.push(`event ${r.sequenceId}'s stored digest breaks the chain`);
  });
  const refs = new Set(events.map((e) => e.referenceId));
  if (refs.size !== events.length) problems.push("a referenceId is stored twice");
  if (trading.length !== events.length)
    problems.push(`TRADING has ${trading.length} messages, log ${events.length}`);
  trading.forEach((msg, i) => {
    const event = events[i];
    if (msg.position !== i + 1) problems.push(`TRADING message ${i} at position ${msg.position}`);
    const record = records[i];
    const expected = record ? tradingMsgId({ sequenceId: BigInt(msg.position), digest: record.digest }) : "";
    if (msg.msgId !== expected)
      problems.push(`TRADING ${msg.position} has Nats-Msg-Id ${msg.msgId}, the log ${expected}`);
    if (msg.digest === null || msg.digest !== msgIdDigest(record?.digest ?? ""))
      problems.push(
        `TRADING ${msg.position}'s msg id carries ${msg.digest}, the log's digest ${record?.digest}`,
      );
    if (msg.raw !== record?.payload) problems.push(`TRADING ${msg.position}'s bytes differ from the log's`);
    if (!event || JSON.stringify(msg.body) !== JSON.stringify(event)) {
      problems.push(`TRADING ${msg.position} differs from the log`);
    }
    if (msg.subject !== "trading.create_order") problems.push(`TRADING ${msg.position} on ${msg.subject}`);
  });
  if (problems.length > 0) throw new Error(`log invariants broken:\n${problems.slice(0, 20).join("\n")}`);
  return { events, trading };
}

export const quietLogger = createLogger({}, "silent");

/**
 * The two databases the in-process sequencer tests run on: a fresh database on the harness's PostgreSQL (or its
 * PGlite fallback) by URL, and the embedded PGlite (no URL). For `describe.each(DATABASE_BACKENDS)`.
 */
export const DATABASE_BACKENDS: [string, () => Promise<string | undefined>][] = [
  ["PostgreSQL", async () => (await getPostgres()).createDatabase()],
  ["PGlite", async () => undefined],
];
