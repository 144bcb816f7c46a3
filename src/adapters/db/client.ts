/**
 * One Drizzle database over either driver: postgres.js when DATABASE_URL is set, PGlite (embedded, in-process
 * Postgres stored under DATA_DIR/pg) otherwise. Everything above this file sees only `Db`.
 */
import { mkdirSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { PGlite } from "@electric-sql/pglite";
import { type SQL, sql } from "drizzle-orm";
import { type PgDatabase, PgDialect, type PgQueryResultHKT } from "drizzle-orm/pg-core";
import { drizzle as drizzlePglite } from "drizzle-orm/pglite";
import { migrate as migratePglite } from "drizzle-orm/pglite/migrator";
import { drizzle as drizzlePostgres } from "drizzle-orm/postgres-js";
import { migrate as migratePostgres } from "drizzle-orm/postgres-js/migrator";
import postgres from "postgres";
import * as schema from "./schema.ts";

export type Db = PgDatabase<PgQueryResultHKT, typeof schema>;

const dialect = new PgDialect();

/**
 * `db.execute` for a statement run over and over (the sequencer's filter and append): as a prepared statement, so
 * PostgreSQL parses it once per connection instead of on every batch — that cut PostgreSQL's CPU per small batch
 * from ~0.62 to ~0.24 ms (docs/performance.md). It is still planned per execution (CUSTOM_PLANS). postgres.js keeps it per connection by its text;
 * PGlite ignores the name. The text must not depend on the data (values go in parameters), or the per-connection
 * cache would grow with it.
 */
export function executePrepared(db: Db, name: string, query: SQL): Promise<unknown> {
  return db._.session.prepareQuery(dialect.sqlToQuery(query), undefined, name, false).execute();
}

/** Rows of a raw `db.execute`: postgres.js returns the rows array, PGlite returns { rows }. */
export function rowsOf<T>(result: unknown): T[] {
  return (Array.isArray(result) ? result : ((result as { rows?: unknown[] }).rows ?? [])) as T[];
}

export type Database = {
  readonly db: Db;
  readonly kind: "postgres" | "pglite";
  /** Applies the generated migrations (drizzle/), serialized across processes by an advisory lock. */
  migrate(): Promise<void>;
  ping(): Promise<void>;
  close(): Promise<void>;
};

export const MIGRATIONS_FOLDER = fileURLToPath(new URL("../../../drizzle", import.meta.url));
/** Arbitrary constant shared by every process of this service: the advisory lock key for migrations. */
const MIGRATION_LOCK_KEY = 7_201_911_270_001n;

export async function openDatabase(options: {
  url: string | undefined;
  pgliteDir: string;
  /**
   * statement_timeout of the pool's sessions (QUERY_TIMEOUT): a lookup stuck behind a lock or a failing disk
   * fails instead of holding its request, and its connection, forever. Migrations run on a session without it.
   */
  statementTimeoutMs?: number;
}): Promise<Database> {
  return options.url ? openPostgres(options.url, options.statementTimeoutMs) : openPglite(options.pgliteDir);
}

/**
 * Session settings for every connection that runs the sequencer's and the API's repeated statements: plan each
 * execution for its own parameters. postgres.js prepares every statement, and PostgreSQL switches a prepared
 * statement to one generic plan after five executions. On a new database that happens while `events` is still
 * tiny, so the generic plan of the filter (`reference_id = any($1)`) is a sequential scan, kept until autovacuum
 * first analyzes the table (a minute or more): meanwhile every batch reads the whole table. Measured (issue 17):
 * under a closed loop the sequencer fell to 2.4–4.9k events/s with PostgreSQL at 130–200 µs of CPU per event and
 * the filter in 92 % of samples of pg_stat_activity; with custom plans 28–36 µs. Planning each execution costs a
 * few tens of µs per batch; parsing is still saved (docs/performance.md, "Second wave").
 */
export const CUSTOM_PLANS = { plan_cache_mode: "force_custom_plan" } as const;

/** A Drizzle database over a postgres.js client the caller opened (and closes). */
export function postgresDb(client: postgres.Sql): Db {
  return drizzlePostgres({ client, schema }) as unknown as Db;
}

function openPostgres(url: string, statementTimeoutMs: number | undefined): Database {
  const client = postgres(url, {
    max: 10,
    onnotice: () => {}, // "relation already exists, skipping" from idempotent DDL is not news
    connect_timeout: 10,
    connection: {
      ...(statementTimeoutMs === undefined ? {} : { statement_timeout: statementTimeoutMs }),
      ...CUSTOM_PLANS,
    },
  });
  const db = postgresDb(client);
  return {
    db,
    kind: "postgres",
    async migrate() {
      // One session of its own, without the pool's statement_timeout (building an index on a large table takes
      // as long as it takes), holding a session-level advisory lock: a second process blocks here until the
      // first has finished, then finds every migration applied.
      const session = postgres(url, { max: 1, onnotice: () => {}, connect_timeout: 10 });
      try {
        await session`select pg_advisory_lock(${MIGRATION_LOCK_KEY.toString()}::bigint)`;
        await migratePostgres(drizzlePostgres({ client: session, schema }), {
          migrationsFolder: MIGRATIONS_FOLDER,
        });
      } finally {
        // Ending the session releases the lock too.
        await session.end({ timeout: 5 });
      }
    },
    async ping() {
      await db.execute(sql`select 1`);
    },
    async close() {
      await client.end({ timeout: 5 });
    },
  };
}

async function openPglite(dir: string): Promise<Database> {
  mkdirSync(dir, { recursive: true });
  const client = new PGlite(dir);
  await client.waitReady;
  const db = drizzlePglite({ client, schema }) as unknown as Db;
  return {
    db,
    kind: "pglite",
    async migrate() {
      // PGlite lives inside this process and its directory cannot be opened by another one: no lock needed.
      await migratePglite(drizzlePglite({ client, schema }), { migrationsFolder: MIGRATIONS_FOLDER });
    },
    async ping() {
      await db.execute(sql`select 1`);
    },
    async close() {
      await client.close();
    },
  };
}
