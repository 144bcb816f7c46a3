/**
 * executePrepared: the sequencer's per-batch statements run as prepared statements on postgres.js (parsed and
 * planned once per connection, which db.execute does not do), and give the same rows on both drivers.
 */
import { expect, test } from "bun:test";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { sql } from "drizzle-orm";
import { drizzle } from "drizzle-orm/postgres-js";
import postgres from "postgres";
import { type Db, executePrepared, openDatabase, rowsOf } from "../../src/adapters/db/client.ts";
import * as schema from "../../src/adapters/db/schema.ts";
import { getPostgres } from "../support/services.ts";

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
