/**
 * Warms the bench's fresh PostgreSQL cluster's WAL before any phase: writes about `mb` MB of WAL (a scratch table
 * created and dropped) and checkpoints, so that the checkpoint recycles those segments for future use.
 *
 * Why: a fresh cluster has no WAL segments to recycle, so every 16 MB of WAL the committing backend creates a new
 * segment and fills it with zeroes (wal_init_zero) before its commit returns — at the sequencer's ~6 MB/s of WAL
 * in the tail, every ~3 s. Those commits took 50–120 ms (2–4 per 10 s, sequencer_transaction_duration_seconds),
 * which alone put accept→TRADING p99 over 25 ms in most tail rows (docs/performance.md, "Session 2026-12-01").
 * A database that has been running recycles segments at each checkpoint (sized by the previous checkpoint's
 * distance, within min_wal_size..max_wal_size) and creates them only rarely. Durability is untouched: fsync,
 * synchronous_commit and full_page_writes keep their defaults, and no setting changes.
 */
import postgres from "postgres";

/** WAL written per scratch row (1 000 characters of payload plus tuple and record overhead), measured ~1.06 KB. */
const WAL_BYTES_PER_ROW = 1_060;

export type WalWarmup = { mb: number; seconds: number; segments: number };

export async function warmWal(adminUrl: string, mb: number): Promise<WalWarmup> {
  const started = performance.now();
  const sql = postgres(adminUrl, { max: 1, onnotice: () => {} });
  try {
    const rows = Math.ceil((mb * 1024 * 1024) / WAL_BYTES_PER_ROW);
    await sql`drop table if exists bench_wal_warmup`;
    await sql`create table bench_wal_warmup as select repeat('x', 1000) as x from generate_series(1, ${rows}::int)`;
    await sql`drop table bench_wal_warmup`;
    await sql`checkpoint`;
    const [row] = await sql<{ n: number }[]>`select count(*)::int as n from pg_ls_waldir()`;
    return { mb, seconds: (performance.now() - started) / 1000, segments: row?.n ?? 0 };
  } finally {
    await sql.end();
  }
}
