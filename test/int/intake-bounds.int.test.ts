/**
 * Bounded intake and a database that refuses writes, through the production composition (an API process and a
 * sequencer process on a real nats-server and PostgreSQL):
 * - once orders are sequenced SEQUENCE keeps only a small fraction of them (work-queue retention: a message goes
 *   when the sequencer acks it, after its commit), and a retried publish inside the duplicate window is still
 *   dropped by the broker although the original is gone;
 * - while PostgreSQL refuses every write (a "disk full" trigger), the sequencer backs off without dying, readiness
 *   says why, nothing unsequenced is trimmed although the window passes several times, and once writes work again
 *   every accepted order is sequenced exactly once, without a gap.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import postgres from "postgres";
import { INTAKE_STREAM, TRADING_STREAM } from "../../src/adapters/nats/topology.ts";
import { loadConfig } from "../../src/config.ts";
import { createLogger } from "../../src/logger.ts";
import { type RunningService, startService } from "../../src/service.ts";
import { getPostgres, type NatsServerHandle, onPglite, startNats } from "../support/services.ts";
import { holdTableLock } from "../support/table-lock.ts";
import { waitFor } from "../support/wait.ts";

const WINDOW_MS = 5_000;
let nats: NatsServerHandle;
let databaseUrl: string;
let api: RunningService;
let sequencer: RunningService;
let admin: postgres.Sql;
let token = "";
let readerToken = "";
const accepted: string[] = [];

async function placeOrders(count: number, concurrency = 16): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < count) {
        next += 1;
        const res = await fetch(`${api.url}/orders`, {
          method: "POST",
          headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
          body: JSON.stringify({ direction: "BUY", price: "10.5", quantity: "1" }),
        });
        expect(res.status).toBe(202);
        accepted.push(((await res.json()) as { referenceId: string }).referenceId);
      }
    }),
  );
}

async function streamMessages(name: string): Promise<{ messages: number; first: number; last: number }> {
  const nc = await connect({ servers: nats.url });
  try {
    const { state } = await (await jetstreamManager(nc)).streams.info(name);
    return { messages: state.messages, first: state.first_seq, last: state.last_seq };
  } finally {
    await nc.close();
  }
}

/** G1–G4 over the log: every accepted order exactly once, sequenceIds 1..n without a gap, TRADING as long. */
async function expectExactLog(): Promise<void> {
  const rows = await admin<{ sequence_id: string; reference_id: string }[]>`
    select sequence_id::text, reference_id::text from events order by events.sequence_id`;
  expect(rows.map((r) => r.sequence_id)).toEqual(rows.map((_, i) => String(i + 1)));
  expect(rows.map((r) => r.reference_id).sort()).toEqual([...accepted].sort());
  expect((await streamMessages(TRADING_STREAM)).last).toBe(rows.length);
}

async function databaseHead(): Promise<number> {
  const [row] = await admin<{ n: number }[]>`select coalesce(max(sequence_id), 0)::int as n from events`;
  return row?.n ?? 0;
}

describe.skipIf(onPglite)("bounded intake (needs real PostgreSQL)", () => {
  beforeAll(async () => {
    nats = await startNats();
    databaseUrl = await (await getPostgres()).createDatabase();
    const env = {
      NATS_URL: nats.url,
      DATABASE_URL: databaseUrl,
      AUTH_SECRET: "intake-bounds-test-secret-0123456789-abcdef",
      PORT: "0",
      OPS_PORT: "0",
      WORKER_ID: "7",
      DUPLICATE_WINDOW: `${WINDOW_MS}ms`,
      RATE_LIMIT: "off",
      QUERY_TIMEOUT: "1500ms",
      WRITER_LEASE_TTL: "3s",
    };
    const quiet = createLogger({}, "silent");
    api = await startService(loadConfig(env), "api", quiet);
    sequencer = await startService(loadConfig(env), "sequencer", quiet);
    token = (await api.tokens?.mint(101n)) ?? "";
    readerToken = (await api.tokens?.mint(2n, { role: "reader" })) ?? "";
    admin = postgres(databaseUrl, { max: 2, onnotice: () => {} });
  }, 60_000);

  afterAll(async () => {
    if (admin) await admin`drop trigger if exists disk_full on events`.catch(() => {});
    await admin?.end({ timeout: 5 });
    await sequencer?.stop();
    await api?.stop();
    await nats?.stop();
  });

  test("after N orders are sequenced, SEQUENCE holds a small fraction of N, and the broker still drops a retried publish", async () => {
    const n = 1_000;
    await placeOrders(n);
    await waitFor("every order sequenced", async () => (await databaseHead()) === n, 20_000);
    const t = Date.now();
    await waitFor(
      "SEQUENCE trimmed",
      async () => (await streamMessages(INTAKE_STREAM)).messages <= n / 20,
      30_000,
    );
    const trimmedAfterMs = Date.now() - t;
    expect(trimmedAfterMs).toBeLessThan(30_000);
    const intake = await streamMessages(INTAKE_STREAM);
    expect(intake.last).toBe(n); // nothing new was written: only removed
    // The original is gone from the stream, but its msg id is still in the duplicate window: a retry is dropped.
    const nc = await connect({ servers: nats.url });
    try {
      const first = accepted[0] as string;
      const retry = await jetstream(nc).publish("sequence.create_order", "{}", { msgID: first });
      expect(retry.duplicate).toBe(true);
    } finally {
      await nc.close();
    }
    expect((await streamMessages(INTAKE_STREAM)).last).toBe(n);
    await expectExactLog();
  }, 60_000);

  test("PostgreSQL refusing writes: the sequencer backs off and says why, nothing unsequenced is removed, and it resumes", async () => {
    const before = await databaseHead();
    await admin.unsafe(`
      create or replace function refuse_disk_full() returns trigger language plpgsql as $$
      begin raise exception 'could not extend file: No space left on device' using errcode = '53100'; end $$;
      create trigger disk_full before insert on events for each statement execute function refuse_disk_full();`);
    const m = 200;
    await placeOrders(m);
    const intakeAtStart = await streamMessages(INTAKE_STREAM);
    let lastReadiness = "";
    // Readiness names the reason (the ops listener shows details).
    await waitFor(
      "readiness to show the refusal",
      async () => {
        const body = (await (await fetch(`${sequencer.opsUrl}/readyz`)).json()) as {
          checks: Record<string, { ok: boolean; detail?: string }>;
        };
        lastReadiness = JSON.stringify(body.checks);
        return (
          body.checks.sequencer?.ok === false && /No space left/.test(body.checks.sequencer.detail ?? "")
        );
      },
      15_000,
    ).catch((error) => {
      throw new Error(`${error}; last /readyz checks: ${lastReadiness}`);
    });
    // Two windows and more: nothing that is not stored may be removed.
    await Bun.sleep(2 * WINDOW_MS + 2_000);
    expect(await databaseHead()).toBe(before);
    const intake = await streamMessages(INTAKE_STREAM);
    expect(intake.last).toBe(intakeAtStart.last);
    expect(intake.first).toBeLessThanOrEqual(intake.last - m + 1);
    expect(intake.messages).toBeGreaterThanOrEqual(m);

    await admin`drop trigger disk_full on events`;
    await waitFor("sequencing to resume", async () => (await databaseHead()) === before + m, 30_000);
    await expectExactLog();
    expect(sequencer.leadership.leader).toBe(true);
  }, 90_000);

  test("a table lock holds reads for QUERY_TIMEOUT (503, not forever), and a stuck append costs the writer its lease, not its liveness", async () => {
    const leaderDetail = async () => {
      const body = (await (await fetch(`${sequencer.opsUrl}/readyz`)).json()) as {
        checks: Record<string, { ok: boolean; detail?: string }>;
      };
      return body.checks.leader?.detail ?? "";
    };
    const termOf = (detail: string) => Number(/term (\d+)/.exec(detail)?.[1] ?? -1);
    const termBefore = termOf(await leaderDetail());
    expect(termBefore).toBeGreaterThan(0);
    const before = await databaseHead();
    const lock = await holdTableLock(admin, "events", "access exclusive");
    try {
      await placeOrders(50); // accepted: the intake does not need the database
      const t = Date.now();
      const res = await fetch(`${api.url}/events?after=0`, {
        headers: { authorization: `Bearer ${readerToken}` },
      });
      const waitedMs = Date.now() - t;
      expect(res.status).toBe(503);
      expect(res.headers.get("retry-after")).toBe("1");
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe("UNAVAILABLE");
      expect(waitedMs).toBeGreaterThanOrEqual(1_000);
      expect(waitedMs).toBeLessThan(5_000);
      // The writer's append waits on the lock; without progress its lease runs out (3 s) and it steps down
      // (ending the stuck session) and takes the lease again: a new term.
      await waitFor("a new writer term", async () => termOf(await leaderDetail()) > termBefore, 15_000);
    } finally {
      await lock.release();
    }
    await waitFor("sequencing to resume", async () => (await databaseHead()) === before + 50, 30_000);
    await expectExactLog();
  }, 60_000);
});
