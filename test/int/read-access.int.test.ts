/**
 * Who may read what over HTTP, through the production composition (an API process and a sequencer process on a
 * real nats-server and PostgreSQL): the whole log only for reader and admin tokens, GET /me/events for a user's
 * own events, GET /references only for the user it concerns (a stranger gets the unknown id's 404, also while it
 * is pending), and /me/events served by index ranges, not a scan over other users' rows.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { sql } from "drizzle-orm";
import { openDatabase, rowsOf } from "../../src/adapters/db/client.ts";
import { DrizzleEventStore } from "../../src/adapters/db/event-store.ts";
import { loadConfig } from "../../src/config.ts";
import { createLogger } from "../../src/logger.ts";
import { type RunningService, startService } from "../../src/service.ts";
import { getPostgres, type NatsServerHandle, startNats } from "../support/services.ts";
import { waitFor } from "../support/wait.ts";

const A = 101n;
const B = 102n;
const C = 103n;
let nats: NatsServerHandle;
let databaseUrl: string;
let api: RunningService;
let sequencer: RunningService | undefined;
const token: Record<"A" | "B" | "C" | "admin" | "reader", string> = {
  A: "",
  B: "",
  C: "",
  admin: "",
  reader: "",
};
/** referenceIds by name, in the order they were accepted. */
const ref = {
  orderA: "",
  orderB: "",
  cancelA: "",
  depositA: "",
  transferAB: "",
  transferCA: "",
  orderC: "",
};

async function get(path: string, who?: keyof typeof token): Promise<{ status: number; body: unknown }> {
  const res = await fetch(`${api.url}${path}`, {
    headers: who ? { authorization: `Bearer ${token[who]}` } : {},
  });
  return { status: res.status, body: await res.json() };
}

async function post(path: string, who: keyof typeof token, body: unknown): Promise<string> {
  const res = await fetch(`${api.url}${path}`, {
    method: "POST",
    headers: { authorization: `Bearer ${token[who]}`, "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  expect(res.status).toBe(202);
  return ((await res.json()) as { referenceId: string }).referenceId;
}

type Page = { events: { sequenceId: string; referenceId: string }[]; next: string | null };

beforeAll(async () => {
  nats = await startNats();
  databaseUrl = await (await getPostgres()).createDatabase();
  const config = loadConfig({
    NATS_URL: nats.url,
    DATABASE_URL: databaseUrl,
    AUTH_SECRET: "read-access-test-secret-0123456789-abcdef",
    PORT: "0",
    OPS_PORT: "0",
    WORKER_ID: "9",
  });
  api = await startService(config, "api", createLogger({}, "silent"));
  const tokens = api.tokens;
  if (!tokens) throw new Error("the api role has no token service");
  token.A = await tokens.mint(A);
  token.B = await tokens.mint(B);
  token.C = await tokens.mint(C);
  token.admin = await tokens.mint(1n, { role: "admin" });
  token.reader = await tokens.mint(2n, { role: "reader" });

  // Accepted while no sequencer runs: pending.
  ref.orderA = await post("/orders", "A", { direction: "BUY", price: "10", quantity: "1" });
}, 60_000);

afterAll(async () => {
  await sequencer?.stop();
  await api?.stop();
  await nats?.stop();
});

describe("GET /references while pending", () => {
  test("the user it concerns sees pending; a stranger gets exactly the unknown id's 404", async () => {
    expect(await get(`/references/${ref.orderA}`, "A")).toEqual({ status: 200, body: { status: "pending" } });
    expect(await get(`/references/${ref.orderA}`, "reader")).toEqual({
      status: 200,
      body: { status: "pending" },
    });
    const stranger = await get(`/references/${ref.orderA}`, "B");
    const unknown = await get("/references/4242424242", "B");
    expect(stranger.status).toBe(404);
    expect(JSON.stringify(stranger.body).replace(ref.orderA, "ID")).toBe(
      JSON.stringify(unknown.body).replace("4242424242", "ID"),
    );
    expect((await get(`/references/${ref.orderA}`)).status).toBe(401);
  });
});

describe("once sequenced", () => {
  beforeAll(async () => {
    sequencer = await startService(
      loadConfig({
        NATS_URL: nats.url,
        DATABASE_URL: databaseUrl,
        AUTH_SECRET: "read-access-test-secret-0123456789-abcdef",
        PORT: "0",
        OPS_PORT: "0",
      }),
      "sequencer",
      createLogger({}, "silent"),
    );
    ref.orderB = await post("/orders", "B", { direction: "SELL", price: "11", quantity: "1" });
    ref.cancelA = await post("/orders/77/cancel", "A", undefined);
    ref.depositA = await post("/deposits", "admin", { userId: "101", assetId: "1", amount: "5" });
    ref.transferAB = await post("/transfers", "admin", {
      fromUserId: "101",
      toUserId: "102",
      assetId: "1",
      amount: "1",
    });
    ref.transferCA = await post("/transfers", "admin", {
      fromUserId: "103",
      toUserId: "101",
      assetId: "1",
      amount: "2",
    });
    ref.orderC = await post("/orders", "C", { direction: "BUY", price: "12", quantity: "1" });
    await waitFor("7 events sequenced", async () => {
      const { body } = await get("/events?after=0&limit=100", "reader");
      return (body as Page).events.length === 7;
    });
  }, 60_000);

  test("the whole log: reader and admin only (a user → 403, no token → 401)", async () => {
    for (const path of ["/events?after=0&limit=100", "/events/1"]) {
      expect((await get(path)).status).toBe(401);
      const user = await get(path, "A");
      expect(user.status).toBe(403);
      expect((user.body as { error: { code: string } }).error.code).toBe("FORBIDDEN");
      expect((await get(path, "reader")).status).toBe(200);
      expect((await get(path, "admin")).status).toBe(200);
    }
    const all = (await get("/events?after=0&limit=100", "reader")).body as Page;
    expect(all.events.map((e) => e.sequenceId)).toEqual(["1", "2", "3", "4", "5", "6", "7"]);
  });

  test("GET /me/events: orders and cancels, deposits to them, transfers from or to them, in order", async () => {
    const mine = async (who: "A" | "B" | "C") =>
      ((await get("/me/events?after=0&limit=1000", who)).body as Page).events.map((e) => e.referenceId);
    expect(await mine("A")).toEqual([ref.orderA, ref.cancelA, ref.depositA, ref.transferAB, ref.transferCA]);
    expect(await mine("B")).toEqual([ref.orderB, ref.transferAB]);
    expect(await mine("C")).toEqual([ref.transferCA, ref.orderC]);
    expect((await get("/me/events")).status).toBe(401);
    expect((await get("/me/events?limit=0", "A")).status).toBe(400);
  });

  test("GET /me/events pages by keyset like /events", async () => {
    const pages: string[] = [];
    let after = "0";
    for (let i = 0; i < 10; i++) {
      const page = (await get(`/me/events?after=${after}&limit=2`, "A")).body as Page;
      pages.push(...page.events.map((e) => e.referenceId));
      if (page.events.length < 2 || page.next === null) break;
      after = page.next;
    }
    expect(pages).toEqual([ref.orderA, ref.cancelA, ref.depositA, ref.transferAB, ref.transferCA]);
  });

  test("GET /references: the user it concerns (a transfer's recipient too), reader or admin; others 404", async () => {
    expect((await get(`/references/${ref.orderA}`, "A")).status).toBe(200);
    expect((await get(`/references/${ref.orderA}`, "reader")).status).toBe(200);
    expect((await get(`/references/${ref.orderA}`, "admin")).status).toBe(200);
    expect((await get(`/references/${ref.orderA}`, "B")).status).toBe(404);
    expect((await get(`/references/${ref.transferAB}`, "B")).status).toBe(200);
    expect((await get(`/references/${ref.transferAB}`, "A")).status).toBe(200);
    const stranger = await get(`/references/${ref.transferAB}`, "C");
    const unknown = await get("/references/4242424242", "C");
    expect(stranger.status).toBe(404);
    expect(JSON.stringify(stranger.body).replace(ref.transferAB, "ID")).toBe(
      JSON.stringify(unknown.body).replace("4242424242", "ID"),
    );
  });

  test("the public port says only ready or not; details and metrics are on the ops listener", async () => {
    expect(await (await fetch(`${api.url}/readyz`)).json()).toEqual({ status: "ready" });
    expect((await fetch(`${api.url}/metrics`)).status).toBe(404);
    const ops = (await (await fetch(`${api.opsUrl}/readyz`)).json()) as { checks: Record<string, unknown> };
    expect(Object.keys(ops.checks)).toContain("nats");
    expect(await (await fetch(`${api.opsUrl}/metrics`)).text()).toContain("http_requests_total");
    expect(new URL(api.opsUrl).hostname).toBe("127.0.0.1");
  });
});

test("GET /me/events is two index ranges, never a scan over other users' rows", async () => {
  const database = await openDatabase({ url: await (await getPostgres()).createDatabase(), pgliteDir: "" });
  try {
    await database.migrate();
    // 50 000 events over 500 users, every 10th a transfer to one of 300 recipients.
    await database.db.execute(sql`
      insert into events (sequence_id, previous_id, reference_id, type, user_id, payload, created_at, sequenced_at,
                          digest, counterparty_id)
      select g, g - 1, g, case when g % 10 = 0 then 'TRANSFER' else 'CREATE_ORDER' end, g % 500 + 1, '{}',
             now(), now(), decode(repeat('00', 32), 'hex'), case when g % 10 = 0 then g % 300 + 1 end
      from generate_series(1, 50000) as g`);
    await database.db.execute(sql`analyze events`);
    const plan = rowsOf<{ "QUERY PLAN": string }>(
      await database.db.execute(sql`explain
        select sequence_id::text as id from (
          (select sequence_id from events where user_id = 11 and sequence_id > 0 order by sequence_id limit 100)
          union all
          (select sequence_id from events where counterparty_id = 11 and sequence_id > 0 and user_id <> 11
           order by sequence_id limit 100)
        ) as concerning order by sequence_id limit 100`),
    )
      .map((row) => row["QUERY PLAN"])
      .join("\n");
    expect(plan).toContain("events_user_id_sequence_id_idx");
    expect(plan).toContain("events_counterparty_id_sequence_id_idx");
    expect(plan).not.toContain("Seq Scan");
    // And the store answers from them: user 11's own rows plus the transfers to 11, in order.
    const store = new DrizzleEventStore(database.db);
    const page = await store.readConcerning(11n, 0n, 1000);
    const expected = rowsOf<{ id: string }>(
      await database.db.execute(
        sql`select sequence_id::text as id from events where user_id = 11 or counterparty_id = 11 order by sequence_id`,
      ),
    ).map((row) => row.id);
    expect(page.map((e) => e.sequenceId.toString())).toEqual(expected);
    expect(expected.length).toBeGreaterThan(200); // 100 of its own, ~166 transfers to it
  } finally {
    await database.close();
  }
});
