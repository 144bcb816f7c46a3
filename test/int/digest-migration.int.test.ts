/**
 * drizzle/0001_digest_chain.sql on a log written before it (PostgreSQL and PGlite): the backfill gives every
 * existing row the digest the sequencer would have computed (the JS chain), the column ends NOT NULL, and the
 * sequencer's append continues the chain from the backfilled head.
 */
import { describe, expect, test } from "bun:test";
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PGlite } from "@electric-sql/pglite";
import { sql } from "drizzle-orm";
import { drizzle as drizzlePglite } from "drizzle-orm/pglite";
import { migrate as migratePglite } from "drizzle-orm/pglite/migrator";
import { drizzle as drizzlePostgres } from "drizzle-orm/postgres-js";
import { migrate as migratePostgres } from "drizzle-orm/postgres-js/migrator";
import postgres from "postgres";
import { openDatabase, rowsOf } from "../../src/adapters/db/client.ts";
import { DrizzleEventStore } from "../../src/adapters/db/event-store.ts";
import { chainDigests, ZERO_DIGEST } from "../../src/app/log-digest.ts";
import { chained, DATABASE_BACKENDS, makeOrder } from "../support/stack.ts";

const DRIZZLE = join(import.meta.dir, "../../drizzle");

/** A migrations folder holding only the first migration: the schema before the digest chain. */
function firstMigrationOnly(): string {
  const dir = mkdtempSync(join(tmpdir(), "migrations-0000-"));
  mkdirSync(join(dir, "meta"));
  const journal = JSON.parse(readFileSync(join(DRIZZLE, "meta/_journal.json"), "utf8")) as {
    entries: { tag: string }[];
  };
  const first = journal.entries[0];
  if (first?.tag !== "0000_init") throw new Error("unexpected journal");
  writeFileSync(join(dir, "meta/_journal.json"), JSON.stringify({ ...journal, entries: [first] }));
  copyFileSync(join(DRIZZLE, "0000_init.sql"), join(dir, "0000_init.sql"));
  return dir;
}

/** Rows as the sequencer stored them before the chain existed: raw SQL against the old schema. */
function oldRows(count: number, skip?: number): { sequenceId: number; payload: string }[] {
  const rows: { sequenceId: number; payload: string }[] = [];
  for (let n = 1; n <= count; n++) {
    if (n === skip) continue;
    // Non-ASCII on purpose: the chain hashes the UTF-8 bytes (convert_to in SQL, Buffer in JS).
    rows.push({ sequenceId: n, payload: JSON.stringify({ sequenceId: String(n), note: `é ✓ 😀 ${n}` }) });
  }
  return rows;
}

const insertOld = (row: { sequenceId: number; payload: string }, referenceId: number) => sql`
  insert into events (sequence_id, previous_id, reference_id, type, user_id, payload, created_at, sequenced_at)
  values (${row.sequenceId}, ${row.sequenceId - 1}, ${referenceId}, 'CREATE_ORDER', 1, ${row.payload}, now(), now())`;

/** Applies 0000 only, inserts the rows, closes; returns how to open the database again (with every migration). */
async function oldDatabase(
  backend: string,
  url: string | undefined,
  rows: { sequenceId: number; payload: string }[],
): Promise<() => ReturnType<typeof openDatabase>> {
  const folder = firstMigrationOnly();
  if (backend === "PostgreSQL" && url) {
    const client = postgres(url, { max: 1, onnotice: () => {} });
    const db = drizzlePostgres({ client });
    await migratePostgres(db, { migrationsFolder: folder });
    for (const [i, row] of rows.entries()) await db.execute(insertOld(row, 1000 + i));
    await client.end();
    return () => openDatabase({ url, pgliteDir: "" });
  }
  const pgliteDir = join(mkdtempSync(join(tmpdir(), "digest-migration-")), "pg");
  mkdirSync(pgliteDir, { recursive: true });
  const client = new PGlite(pgliteDir);
  await client.waitReady;
  const db = drizzlePglite({ client });
  await migratePglite(db, { migrationsFolder: folder });
  for (const [i, row] of rows.entries()) await db.execute(insertOld(row, 1000 + i));
  await client.close();
  return () => openDatabase({ url: undefined, pgliteDir });
}

describe.each(DATABASE_BACKENDS)("the digest migration on %s", (backend, databaseUrl) => {
  test("backfills the chain over the existing rows in sequence order, then the column is NOT NULL", async () => {
    const rows = oldRows(40);
    const reopen = await oldDatabase(backend, await databaseUrl(), rows);
    const database = await reopen();
    try {
      await database.migrate();
      const stored = rowsOf<{ digest: string }>(
        await database.db.execute(
          sql`select encode(digest, 'hex') as digest from events order by sequence_id`,
        ),
      ).map((r) => r.digest);
      expect(stored).toEqual(
        chainDigests(
          ZERO_DIGEST,
          rows.map((r) => r.payload),
        ),
      );
      const [notNull] = rowsOf<{ is_nullable: string }>(
        await database.db.execute(
          sql`select is_nullable from information_schema.columns where table_name = 'events' and column_name = 'digest'`,
        ),
      );
      expect(notNull?.is_nullable).toBe("NO");

      // The store reads the backfilled head, and an append chained from it continues the log.
      const store = new DrizzleEventStore(database.db);
      const head = await store.head();
      expect(head).toMatchObject({ sequenceId: 40n, digest: stored[39] });
      const event = {
        ...makeOrder(),
        sequenceId: 41n,
        previousId: 40n,
        sequencedAt: new Date().toISOString(),
      };
      await store.append(chained([event], head.digest), [], head.digest);
      expect((await store.head()).sequenceId).toBe(41n);
    } finally {
      await database.close();
    }
  });

  test("refuses to migrate a log with a hole (it cannot be chained past it)", async () => {
    const reopen = await oldDatabase(backend, await databaseUrl(), oldRows(6, 4));
    const database = await reopen();
    try {
      const refused = await database.migrate().then(
        () => null,
        (error: unknown) => error,
      );
      // Rows 5 and 6 keep a NULL digest, so SET NOT NULL fails and the whole migration rolls back.
      expect(refused).toBeInstanceOf(Error);
      expect(JSON.stringify(refused, Object.getOwnPropertyNames(refused))).toContain("null values");
    } finally {
      await database.close().catch(() => {});
    }
  });
});
