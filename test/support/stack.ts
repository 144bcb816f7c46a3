/**
 * The sequencer's stack for integration tests, built through the same builders as src/service.ts
 * (src/composition/): the role's NATS connection, the topology and the migrated database from infrastructure.ts,
 * and runSequencer is the sequencer role itself (writer lease, the store on the writer's fenced session, the
 * leadership loop), so the tests run the pipelining on the writer's session. A test can wrap TRADING to inject a
 * failure. `stack.store` is the shared pool's store, as the API reads the log; the tests that seed the log
 * directly append through it (no sequencer runs then).
 */
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { JetStreamClient, JetStreamManager, JsMsg } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import type { Database } from "../../src/adapters/db/client.ts";
import { DrizzleEventStore } from "../../src/adapters/db/event-store.ts";
import { Metrics } from "../../src/adapters/metrics.ts";
import { JetStreamIntakePublisher } from "../../src/adapters/nats/intake-publisher.ts";
import { TRADING_STREAM } from "../../src/adapters/nats/topology.ts";
import { digestOfMsgId, msgIdDigest, tradingMsgId } from "../../src/adapters/nats/trading-publisher.ts";
import type { LeadershipState } from "../../src/app/leadership.ts";
import { chainDigests, DigestChain, ZERO_DIGEST } from "../../src/app/log-digest.ts";
import type { StoredEvent, TradingLog } from "../../src/app/ports.ts";
import type { Sequencer } from "../../src/app/sequencer.ts";
import {
  connectRole,
  openMigratedDatabase,
  provisionTopology,
} from "../../src/composition/infrastructure.ts";
import { startSequencerRole } from "../../src/composition/sequencer-role.ts";
import { type Config, loadConfig } from "../../src/config.ts";
import {
  type CreateOrder,
  encodeSequencedEvent,
  type Intake,
  type SequencedEvent,
} from "../../src/domain/events.ts";
import { SnowflakeGenerator } from "../../src/domain/ids.ts";
import { createLogger } from "../../src/logger.ts";
import { getPostgres } from "./services.ts";
import { waitFor } from "./wait.ts";

export type Stack = {
  nc: NatsConnection;
  js: JetStreamClient;
  jsm: JetStreamManager;
  database: Database;
  /** The shared pool's store: reads, and the tests that seed the log directly. */
  store: DrizzleEventStore;
  intake: JetStreamIntakePublisher;
  /** What the stack was built with; runSequencer's sequencer role reads its settings from here. */
  config: Config;
  close(): Promise<void>;
};

/**
 * The configuration of the in-process stacks: the defaults (loadConfig of an empty environment), a test's broker
 * and database (undefined: PGlite in a fresh directory), and a sequencer that turns fast (short idle waits, small
 * pages) so that the tests do not wait on it.
 */
export function stackConfig(
  natsUrl: string,
  databaseUrl: string | undefined,
  overrides: Partial<Config> = {},
): Config {
  return {
    ...loadConfig({}),
    natsUrl,
    databaseUrl,
    dataDir: mkdtempSync(join(tmpdir(), "seq-pglite-")),
    duplicateWindowMs: 120_000,
    ackWaitMs: 30_000,
    maxAckPending: 20_000,
    batchSize: 500,
    maxBatchSize: 500,
    intakePrefetch: 2_000,
    fetchWaitMs: 100,
    catchUpPageSize: 50,
    keepAliveMs: 5_000,
    ...overrides,
  };
}

/** A database URL, or undefined for a fresh PGlite directory. */
export async function openStack(natsUrl: string, databaseUrl: string | undefined): Promise<Stack> {
  const config = stackConfig(natsUrl, databaseUrl);
  const connection = await connectRole(natsUrl, {}, "sequencer-test-stack", config, quietLogger);
  try {
    await provisionTopology(connection, config, quietLogger, { buckets: false });
    const database = await openMigratedDatabase(config, quietLogger);
    return {
      nc: connection.nc,
      js: connection.js,
      jsm: connection.jsm,
      database,
      store: new DrizzleEventStore(database.db),
      intake: new JetStreamIntakePublisher(connection.nc, config.publishTimeoutMs, connection.up),
      config,
      async close() {
        await connection.nc.close();
        await database.close();
      },
    };
  } catch (error) {
    await connection.nc.close();
    throw error;
  }
}

/** `sequencer`: the current term's (the last one's after the lease was lost). */
export type RunningSequencer = { readonly sequencer: Sequencer; stop(): Promise<void> };

/** Starts the sequencer role on the stack and waits until it holds the writer lease and sequences. */
export async function runSequencer(
  stack: Stack,
  options: { wrapTrading?: (real: TradingLog) => TradingLog; batchSize?: number } = {},
): Promise<RunningSequencer> {
  const { wrapTrading, batchSize } = options;
  const leadership: LeadershipState = { leader: false, term: undefined };
  const role = startSequencerRole({
    config: batchSize === undefined ? stack.config : { ...stack.config, batchSize, maxBatchSize: batchSize },
    connection: stack,
    database: stack.database,
    metrics: new Metrics(),
    leadership,
    log: quietLogger,
    wrap: wrapTrading ? (real) => ({ ...real, trading: wrapTrading(real.trading) }) : undefined,
  });
  try {
    await waitFor(
      "the sequencer to take the writer lease",
      async () => leadership.term !== undefined,
      30_000,
    );
  } catch (error) {
    await role.stop();
    throw error;
  }
  let last = leadership.term?.sequencer as Sequencer;
  return {
    get sequencer() {
      last = leadership.term?.sequencer ?? last;
      return last;
    },
    stop: () => role.stop(),
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
 * Every invariant of the promise (README: G1–G4), over the log and TRADING: 1..N, previousId, positions, msg ids, once each; and
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
