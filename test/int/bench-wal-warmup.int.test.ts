/**
 * The bench's WAL warm-up (tools/bench/wal-warmup.ts) on a real PostgreSQL: it writes about the WAL it was asked
 * for, checkpoints so the segments are kept to be recycled, and leaves nothing behind in the database.
 */
import { describe, expect, test } from "bun:test";
import postgres from "postgres";
import { warmWal } from "../../tools/bench/wal-warmup.ts";
import { getPostgres, onPglite } from "../support/services.ts";

describe.skipIf(onPglite)("bench WAL warm-up", () => {
  test("writes ~N MB of WAL, keeps the segments after its checkpoint, and drops its scratch table", async () => {
    const url = await (await getPostgres()).createDatabase();
    const sql = postgres(url, { max: 1, onnotice: () => {} });
    try {
      const [before] = await sql<{ lsn: string }[]>`select pg_current_wal_lsn()::text as lsn`;
      const warmed = await warmWal(url, 48);
      const [after] = await sql<{ bytes: string }[]>`
          select pg_wal_lsn_diff(pg_current_wal_lsn(), ${before?.lsn ?? "0/0"}::pg_lsn)::bigint::text as bytes`;
      const mb = Number(after?.bytes) / (1024 * 1024);
      expect(mb).toBeGreaterThan(40); // about what was asked (48 MB), not a token amount
      expect(mb).toBeLessThan(120);
      // 48 MB is three 16 MB segments: after the checkpoint they stay in pg_wal, renamed for reuse.
      expect(warmed.segments).toBeGreaterThanOrEqual(3);
      const [left] = await sql<{ n: number }[]>`
          select count(*)::int as n from pg_class where relname = 'bench_wal_warmup'`;
      expect(left?.n).toBe(0);
    } finally {
      await sql.end();
    }
  }, 60_000);
});
