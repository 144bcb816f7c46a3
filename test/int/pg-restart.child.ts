/**
 * The child process of pg-restart.int.test.ts: a process that talks to PostgreSQL through postgres.js the way the
 * service does, for the test to take its database away. It must never die of that; a crash (an uncaught exception,
 * an unhandled rejection) ends it with Bun's default exit code, which is what the test looks for.
 *
 *   bun pg-restart.child.ts load   the service's query patterns in a loop, a progress line (JSON) every 100 ms:
 *                                  pipelined appends on the writer's fenced session, the duplicate filter and the
 *                                  API's idempotency/reference lookups on the pool, and migrate() (a reserved
 *                                  connection for the advisory lock, and drizzle's transaction)
 *   bun pg-restart.child.ts <case> one connection-loss path of postgres.js, made deterministic (CASES below);
 *                                  prints "ok" and exits 0 when the process came through it
 *
 * DATABASE_URL: a migrated database.
 */
import net from "node:net";
import postgres from "postgres";
import { openDatabase } from "../../src/adapters/db/client.ts";
import { DrizzleEventStore } from "../../src/adapters/db/event-store.ts";
import { PostgresWriterLease } from "../../src/adapters/db/writer-lease.ts";
import type { RejectedMessage } from "../../src/app/ports.ts";
import type { SequencedEvent } from "../../src/domain/events.ts";
import type { Head } from "../../src/domain/sequencing.ts";
import { chained, makeOrder, quietLogger } from "../support/stack.ts";
import { within } from "../support/wait.ts";

const url = process.env.DATABASE_URL;
if (!url) throw new Error("DATABASE_URL is required");
const mode = process.argv[2] ?? "load";

process.on("SIGTERM", () => process.exit(0));

async function load(databaseUrl: string): Promise<void> {
  const database = await openDatabase({ url: databaseUrl, pgliteDir: "" });
  const reader = new DrizzleEventStore(database.db);
  const lease = new PostgresWriterLease(databaseUrl, quietLogger, { pollMs: 100, heartbeatMs: 200 });
  const progress = { appended: 0, lookups: 0, migrations: 0, failures: 0, lastError: "" };
  const failed = (error: unknown) => {
    progress.failures++;
    progress.lastError = String(error instanceof Error ? (error.cause ?? error.message) : error).slice(
      0,
      200,
    );
  };
  let rejectedSeq = 0n;

  const batchAfter = (head: Head) => {
    const events: SequencedEvent[] = [0n, 1n].map((i) => ({
      ...makeOrder(i === 0n ? { idempotencyKey: `key-${crypto.randomUUID()}` } : {}),
      sequenceId: head.sequenceId + 1n + i,
      previousId: head.sequenceId + i,
      sequencedAt: new Date().toISOString(),
    }));
    rejectedSeq += 1n;
    const rejected: RejectedMessage[] = [
      { streamSeq: rejectedSeq, subject: "orders.intake", reason: "test", data: "{}" },
    ];
    return { stored: chained(events, head.digest), rejected };
  };

  // The sequencer: the filter on the pool, then three appends in flight on the writer's one session, each sent
  // before the previous one is answered.
  const writer = async () => {
    for (;;) {
      if (!lease.isHeld()) {
        await lease.acquire(AbortSignal.timeout(5_000)).catch(failed);
        continue;
      }
      const store = new DrizzleEventStore(lease.db, lease.fence, database.db);
      try {
        let head = await store.head();
        const appends: Promise<void>[] = [];
        for (let i = 0; i < 3; i++) {
          const { stored, rejected } = batchAfter(head);
          await store.findStored(
            stored.map((s) => s.event.referenceId),
            stored.flatMap((s) => (s.event.idempotencyKey ? [s.event.idempotencyKey] : [])),
          );
          const append = store.append(stored, rejected, head.digest);
          append.catch(() => {}); // awaited below; a failure must not count as unhandled meanwhile
          appends.push(append);
          const last = stored[stored.length - 1] as (typeof stored)[number];
          head = {
            sequenceId: last.event.sequenceId,
            sequencedAt: last.event.sequencedAt,
            digest: last.digest,
          };
        }
        await Promise.all(appends);
        progress.appended += appends.length;
      } catch (error) {
        failed(error);
        await Bun.sleep(20);
      }
    }
  };

  // The API: idempotency-key and reference lookups, and a page of the log, on the pool.
  const looker = async () => {
    for (;;) {
      try {
        await reader.find({ idempotencyKey: `key-${crypto.randomUUID()}` });
        await reader.find({ referenceId: 1n });
        await reader.readAfter(0n, 5);
        progress.lookups++;
      } catch (error) {
        failed(error);
        await Bun.sleep(20);
      }
    }
  };

  // Start-up: every process migrates (a reserved connection holds the advisory lock; drizzle runs a transaction).
  const migrator = async () => {
    for (;;) {
      try {
        await database.migrate();
        progress.migrations++;
      } catch (error) {
        failed(error);
      }
      await Bun.sleep(10);
    }
  };

  void writer();
  for (let i = 0; i < 6; i++) void looker();
  void migrator();
  setInterval(() => console.log(JSON.stringify(progress)), 100);
}

/** A client whose sockets this file holds (postgres.js's `socket` option), to fail them at a chosen moment. */
function clientWithSockets(databaseUrl: string, options: postgres.Options<Record<string, never>> = {}) {
  const { hostname, port } = new URL(databaseUrl);
  const sockets: net.Socket[] = [];
  // `socket` (a function giving the connected socket) is a postgres.js option its type definitions leave out.
  const custom = {
    socket: () =>
      new Promise<net.Socket>((resolve, reject) => {
        const socket = net.connect(Number(port), hostname);
        sockets.push(socket);
        socket.once("connect", () => resolve(socket));
        socket.once("error", reject);
      }),
  };
  const sql = postgres(databaseUrl, { max: 1, onnotice: () => {}, ...options, ...custom });
  const current = () => sockets[sockets.length - 1] as net.Socket;
  return { sql, current };
}

const resetError = () => Object.assign(new Error("read ECONNRESET"), { code: "ECONNRESET" });

const CASES: Record<string, (databaseUrl: string) => Promise<void>> = {
  /** A reserved connection whose backend was terminated: its next queries must fail, not end the process. */
  async "reserved-terminated"(databaseUrl) {
    const sql = postgres(databaseUrl, { max: 2, onnotice: () => {} });
    const admin = postgres(databaseUrl, { max: 1, onnotice: () => {} });
    const reserved = await sql.reserve();
    const [row] = await reserved<{ pid: number }[]>`select pg_backend_pid() as pid`;
    await admin`select pg_terminate_backend(${row?.pid ?? 0})`;
    for (let i = 0; i < 2; i++)
      await within(
        5_000,
        "query on the lost session",
        reserved`select 1`.catch(() => {}),
      );
    reserved.release();
    await within(10_000, "a query after the loss", sql`select 1`);
    await Promise.all([sql.end({ timeout: 1 }), admin.end({ timeout: 1 })]);
  },

  /** sql.begin() whose session is terminated mid-transaction: begin sends its own ROLLBACK on the lost connection. */
  async "transaction-terminated"(databaseUrl) {
    const sql = postgres(databaseUrl, { max: 1, onnotice: () => {} });
    const admin = postgres(databaseUrl, { max: 1, onnotice: () => {} });
    let pid: number | undefined;
    const transaction = sql.begin(async (tx) => {
      const [row] = await tx<{ pid: number }[]>`select pg_backend_pid() as pid`;
      pid = row?.pid;
      await tx`select pg_sleep(5)`;
    });
    transaction.catch(() => {});
    while (pid === undefined) await Bun.sleep(10);
    await admin`select pg_terminate_backend(${pid})`;
    await within(
      5_000,
      "the transaction",
      transaction.catch(() => {}),
    );
    await Bun.sleep(100); // the ROLLBACK's deferred write comes on a later turn
    await within(10_000, "a query after the loss", sql`select 1`);
    await Promise.all([sql.end({ timeout: 1 }), admin.end({ timeout: 1 })]);
  },

  /**
   * The connection fails while postgres.js fetches the array types on a new connection (as when PostgreSQL goes
   * away while a pool reconnects): that internal query's rejection must not be an unhandled one.
   */
  async "reset-while-fetching-types"(databaseUrl) {
    let resets = 0;
    const { sql, current } = clientWithSockets(databaseUrl, {
      debug: (_connection, query) => {
        if (resets === 0 && query.includes("typarray")) {
          resets++;
          current().destroy(resetError());
        }
      },
    });
    await within(
      5_000,
      "the first query",
      sql`select 1`.catch(() => {}),
    );
    await within(10_000, "a query after the loss", sql`select 1`);
    if (resets !== 1) throw new Error("the array types were not fetched: the case did not happen");
    await sql.end({ timeout: 1 });
  },

  /**
   * A query written on the turn the socket closes (its write deferred to setImmediate, the close already queued):
   * the next connection's start-up message must still go out, not wait for connect_timeout.
   */
  async "write-pending-at-close"(databaseUrl) {
    const { sql, current } = clientWithSockets(databaseUrl, { connect_timeout: 30 });
    await sql`select 1`;
    current().destroy();
    await within(
      5_000,
      "the query on the closing connection",
      sql`select 2`.catch(() => {}),
    );
    await within(5_000, "a query on a new connection", sql`select 3`);
    await sql.end({ timeout: 1 });
  },

  /** A query sent between the socket's 'error' and its 'close' must be settled, not left waiting forever. */
  async "query-between-error-and-close"(databaseUrl) {
    const { sql, current } = clientWithSockets(databaseUrl);
    await sql`select 1`;
    let between: Promise<unknown> | undefined;
    current().once("error", () => {
      between = sql`select 2`.catch(() => {});
    });
    current().destroy(resetError());
    while (between === undefined) await Bun.sleep(1);
    await within(5_000, "the query sent between 'error' and 'close'", between);
    await within(10_000, "a query after the loss", sql`select 3`);
    await sql.end({ timeout: 1 });
  },

  /** end() called while a query is in flight, and the connection is lost before it completes: end() returns. */
  async "end-while-connection-lost"(databaseUrl) {
    const { sql, current } = clientWithSockets(databaseUrl);
    await sql`select 1`;
    const inFlight = sql`select pg_sleep(5)`.catch(() => {});
    await Bun.sleep(100);
    let ended: Promise<void> | undefined;
    current().once("error", () => {
      ended = sql.end();
    });
    current().destroy(resetError());
    while (ended === undefined) await Bun.sleep(1);
    await within(3_000, "end()", ended);
    await inFlight;
  },
};

if (mode === "load") {
  await load(url);
} else {
  const run = CASES[mode];
  if (!run) throw new Error(`unknown case ${mode}; one of load, ${Object.keys(CASES).join(", ")}`);
  await run(url);
  console.log("ok");
  process.exit(0);
}
