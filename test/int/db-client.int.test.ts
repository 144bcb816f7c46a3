/**
 * executePrepared: the sequencer's per-batch statements run as prepared statements on postgres.js (parsed and
 * planned once per connection, which db.execute does not do), and give the same rows on both drivers.
 */
import { describe, expect, test } from "bun:test";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { sql } from "drizzle-orm";
import { drizzle } from "drizzle-orm/postgres-js";
import { migrate as migratePostgres } from "drizzle-orm/postgres-js/migrator";
import postgres from "postgres";
import {
  CUSTOM_PLANS,
  type Db,
  executePrepared,
  MIGRATIONS_FOLDER,
  openDatabase,
  postgresDb,
  rowsOf,
} from "../../src/adapters/db/client.ts";
import { DrizzleEventStore } from "../../src/adapters/db/event-store.ts";
import * as schema from "../../src/adapters/db/schema.ts";
import { getPostgres, onPglite } from "../support/services.ts";

test("on postgres.js a statement run through executePrepared is prepared once per connection; db.execute's is not", async () => {
  const client = postgres(await (await getPostgres()).createDatabase(), { max: 1, onnotice: () => {} });
  try {
    const db = drizzle({ client, schema }) as unknown as Db;
    for (const n of [1, 2, 3]) {
      const rows = rowsOf<{ n: number }>(await executePrepared(db, "probe", sql`select ${n}::int + 1 as n`));
      expect(rows).toEqual([{ n: n + 1 }]);
    }
    await db.execute(sql`select ${5}::int + 2 as m`);
    // One connection (max: 1), so this sees the session's own prepared statements.
    const statements = (await client`select statement from pg_prepared_statements`).map((r) =>
      String(r.statement),
    );
    expect(statements.filter((s) => s.includes("+ 1 as n"))).toHaveLength(1);
    expect(statements.filter((s) => s.includes("+ 2 as m"))).toHaveLength(0);
  } finally {
    await client.end({ timeout: 5 });
  }
});

test("on PGlite executePrepared gives the same rows", async () => {
  const database = await openDatabase({
    url: undefined,
    pgliteDir: join(mkdtempSync(join(tmpdir(), "seq-pglite-")), "pg"),
  });
  try {
    const rows = rowsOf<{ n: number; t: string }>(
      await executePrepared(database.db, "probe", sql`select ${41}::int + 1 as n, ${"x"}::text as t`),
    );
    expect(rows).toEqual([{ n: 42, t: "x" }]);
  } finally {
    await database.close();
  }
});

/**
 * The sequencer's filter on a log that grew after its first batches (issue 17): PostgreSQL gives a prepared
 * statement one generic plan after five executions, made for the table as it was then — on a new database, empty:
 * a sequential scan, kept until autovacuum first analyzes the table. Every batch then read the whole log.
 */
describe.skipIf(onPglite)("the filter's plan as the log grows", () => {
  /** Five filters on the empty log, 20 000 rows, one more filter: the plans the session's statement got. */
  async function filterAfterGrowth(connection: Record<string, string>) {
    const client = postgres(await (await getPostgres()).createDatabase(), {
      max: 1, // one session: pg_prepared_statements and EXPLAIN see its statement
      onnotice: () => {},
      connection,
    });
    try {
      await migratePostgres(drizzle({ client, schema }), { migrationsFolder: MIGRATIONS_FOLDER });
      const db = postgresDb(client);
      const store = new DrizzleEventStore(db);
      const ids = [1_000_000_000_001n, 1_000_000_000_002n, 1_000_000_000_003n];
      for (let i = 0; i < 6; i++) await store.findStored(ids, []);
      await client`
        insert into events (sequence_id, previous_id, reference_id, type, user_id, payload, created_at, sequenced_at, digest)
        select g, g - 1, 1000000000000 + g, 'CREATE_ORDER', 1, '{}', now(), now(), decode(repeat('00', 32), 'hex')
        from generate_series(1, 20000) g`;
      const found = await store.findStored(ids, []);
      expect([...found.references].sort()).toEqual(ids);
      // (Statements without parameters, like the insert above, always run on their one generic plan.)
      const statements = await client<{ generic_plans: number; custom_plans: number; statement: string }[]>`
        select generic_plans::int, custom_plans::int, statement from pg_prepared_statements`;
      return statements.find((s) => s.statement.includes("reference_id = any"));
    } finally {
      await client.end({ timeout: 5 });
    }
  }

  test("the service's sessions plan each execution: no generic plan made on the empty log is ever used", async () => {
    const plans = await filterAfterGrowth({ ...CUSTOM_PLANS });
    expect(plans?.generic_plans).toBe(0);
    expect(plans?.custom_plans).toBe(7);
  });

  test("without that setting PostgreSQL would keep a generic plan from the empty log (why the setting exists)", async () => {
    const plans = await filterAfterGrowth({});
    expect(plans?.generic_plans).toBeGreaterThan(0);
  });

  test("openDatabase's pool runs with it", async () => {
    const database = await openDatabase({
      url: await (await getPostgres()).createDatabase(),
      pgliteDir: join(mkdtempSync(join(tmpdir(), "seq-unused-")), "pg"),
    });
    try {
      const [row] = rowsOf<{ mode: string }>(
        await database.db.execute(sql`select current_setting('plan_cache_mode') as mode`),
      );
      expect(row?.mode).toBe("force_custom_plan");
    } finally {
      await database.close();
    }
  });
});
