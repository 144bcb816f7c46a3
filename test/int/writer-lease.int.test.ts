/**
 * Single writer on a real PostgreSQL: one lease holder at a time, a standby takes over when the holder goes,
 * a write without the lock is refused inside its own transaction, and two writers that bypass the lease still
 * cannot fork the sequence (primary key; previous_id = sequence_id - 1 by check).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import postgres from "postgres";
import { type Database, openDatabase } from "../../src/adapters/db/client.ts";
import { DrizzleEventStore } from "../../src/adapters/db/event-store.ts";
import {
  LeadershipLostError,
  PostgresWriterLease,
  type WriterLeaseOptions,
} from "../../src/adapters/db/writer-lease.ts";
import type { SequencedEvent } from "../../src/domain/events.ts";
import { EMPTY_HEAD, type Head } from "../../src/domain/sequencing.ts";
import { getPostgres, onPglite } from "../support/services.ts";
import { chained, makeOrder, quietLogger } from "../support/stack.ts";
import { waitFor } from "../support/wait.ts";

function sequenced(sequenceId: bigint): SequencedEvent {
  return { ...makeOrder(), sequenceId, previousId: sequenceId - 1n, sequencedAt: new Date().toISOString() };
}

/** Appends `count` new events after `head` (their digests chained from its), as a sequencer numbering from it. */
function appendAfter(store: DrizzleEventStore, head: Head, count = 1): Promise<void> {
  const events = Array.from({ length: count }, (_, i) => sequenced(head.sequenceId + 1n + BigInt(i)));
  return store.append(chained(events, head.digest), [], head.digest);
}

describe("writer lease", () => {
  let url: string;
  let database: Database;
  let admin: postgres.Sql;
  const leases: PostgresWriterLease[] = [];
  const lease = (options: Partial<WriterLeaseOptions> = {}) => {
    const created = new PostgresWriterLease(url, quietLogger, { pollMs: 100, heartbeatMs: 200, ...options });
    leases.push(created);
    return created;
  };

  beforeAll(async () => {
    url = await (await getPostgres()).createDatabase();
    database = await openDatabase({ url, pgliteDir: "" });
    await database.migrate();
    admin = postgres(url, { max: 1, onnotice: () => {} });
  });

  afterAll(async () => {
    for (const l of leases) await l.close().catch(() => {});
    await admin.end();
    await database.close();
  });

  // Both need per-connection sessions (on PGlite every client shares one, so every client "holds" the lock).
  test.skipIf(onPglite)(
    "one holder at a time; a standby takes over within a second of release (needs real PostgreSQL sessions)",
    async () => {
      const a = lease();
      const b = lease();
      expect(await a.acquire(AbortSignal.timeout(5_000))).toBe(true);
      const standby = AbortSignal.timeout(600);
      expect(await b.acquire(standby)).toBe(false); // gave up while a held it
      expect(b.isHeld()).toBe(false);

      const takeover = b.acquire(AbortSignal.timeout(5_000));
      const released = Date.now();
      await a.release();
      expect(await takeover).toBe(true);
      expect(Date.now() - released).toBeLessThan(1_000);
      expect(b.isHeld()).toBe(true);

      // The old holder's fence now refuses to write, inside the transaction.
      const refused = appendAfter(new DrizzleEventStore(a.db, a.fence), EMPTY_HEAD);
      await expect(refused).rejects.toBeInstanceOf(LeadershipLostError);
      const writer = new DrizzleEventStore(b.db, b.fence);
      await appendAfter(writer, EMPTY_HEAD);
      expect((await writer.head()).sequenceId).toBe(1n);
      await b.release();
    },
  );

  test.skipIf(onPglite)(
    "losing the lock's connection aborts `lost` and the reconnected session cannot write (needs real PostgreSQL sessions)",
    async () => {
      const holder = lease();
      expect(await holder.acquire(AbortSignal.timeout(5_000))).toBe(true);
      const head = await new DrizzleEventStore(database.db).head();
      await admin`select pg_terminate_backend(pid) from pg_stat_activity
      where application_name = 'sequencer-writer' and pid <> pg_backend_pid()`;
      await waitFor("lost signal", async () => holder.lost.aborted, 5_000);
      expect(holder.isHeld()).toBe(false);
      expect(holder.lost.reason).toBeInstanceOf(LeadershipLostError);
      // postgres.js reconnects this client to a new session, which does not hold the lock: the fence refuses.
      const store = new DrizzleEventStore(holder.db, holder.fence);
      await expect(appendAfter(store, head)).rejects.toBeInstanceOf(LeadershipLostError);
      expect((await new DrizzleEventStore(database.db).head()).sequenceId).toBe(head.sequenceId);
      // It can become the writer again once it re-acquires (with a fresh handle, as each sequencer term takes).
      expect(await holder.acquire(AbortSignal.timeout(5_000))).toBe(true);
      await appendAfter(new DrizzleEventStore(holder.db, holder.fence), head);
      await holder.release();
    },
  );

  test.skipIf(onPglite)(
    "a holder that keeps showing progress keeps the lease past several TTLs; one that stops is replaced within its TTL and steps down by itself (needs real PostgreSQL sessions)",
    async () => {
      const ttlMs = 1_500;
      const a = lease({ ttlMs });
      const b = lease({ ttlMs });
      expect(await a.acquire(AbortSignal.timeout(5_000))).toBe(true);
      const aStore = new DrizzleEventStore(a.db, a.fence);
      const head = await new DrizzleEventStore(database.db).head();
      // Progress for three TTLs: the standby never gets in.
      const progress = setInterval(() => a.alive(), 100);
      const standby = b.acquire(AbortSignal.timeout(20_000));
      await Bun.sleep(3 * ttlMs);
      expect(a.isHeld()).toBe(true);
      expect(b.isHeld()).toBe(false);
      expect(b.describe()).toContain("standby; the writer is");
      // Progress stops (a stuck loop): the standby holds the lease within the TTL plus a poll or two.
      clearInterval(progress);
      const stoppedAt = Date.now();
      expect(await standby).toBe(true);
      const takeoverMs = Date.now() - stoppedAt;
      expect(takeoverMs).toBeLessThan(ttlMs + 1_500);
      // The old holder steps down by itself within a heartbeat (its own clock, or its session found gone).
      await waitFor("the old holder to step down", async () => a.lost.aborted, 2_000);
      expect(a.isHeld()).toBe(false);
      // The old holder's handle of that term writes nothing: its session was ended.
      await expect(appendAfter(aStore, head)).rejects.toBeDefined();
      await expect(appendAfter(new DrizzleEventStore(a.db, a.fence), head)).rejects.toBeInstanceOf(
        LeadershipLostError,
      );
      expect((await new DrizzleEventStore(database.db).head()).sequenceId).toBe(head.sequenceId);
      expect(b.describe()).toMatch(/^holds the writer lease \(term \d+\)$/);
      await b.release();
    },
    30_000,
  );

  test.skipIf(onPglite)(
    "a frozen holder (its session open, its lease run out) has its session ended by the standby, which takes over (needs real PostgreSQL sessions)",
    async () => {
      // A session that took the lock and wrote its lease row, then went silent: what a SIGSTOPped writer leaves.
      const frozen = postgres(url, { max: 1, onnotice: () => {} });
      const [row] = await frozen<{ pid: number }[]>`
        select pg_advisory_lock(${0x5351}, 1), pg_backend_pid() as pid`;
      await frozen`insert into writer_lease (name, holder, backend_pid, term, renewed_at, expires_at)
        values ('sequencer', 'frozen:1', pg_backend_pid(), 41, now(), now() + interval '1 second')
        on conflict (name) do update set holder = excluded.holder, backend_pid = excluded.backend_pid,
          term = excluded.term, renewed_at = excluded.renewed_at, expires_at = excluded.expires_at`;
      const b = lease({ ttlMs: 5_000 });
      const t = Date.now();
      expect(await b.acquire(AbortSignal.timeout(10_000))).toBe(true);
      expect(Date.now() - t).toBeLessThan(3_000);
      expect(b.describe()).toBe("holds the writer lease (term 42)");
      // The frozen session is gone (with anything it had in flight).
      const [alive] = await admin<{ n: number }[]>`
        select count(*)::int as n from pg_stat_activity where pid = ${row?.pid ?? 0}`;
      expect(alive?.n).toBe(0);
      await b.release();
      await frozen.end({ timeout: 1 }).catch(() => {});
    },
    30_000,
  );

  test.skipIf(onPglite)(
    "a lock holder that keeps no lease row (an older writer) is replaced after one TTL (needs real PostgreSQL sessions)",
    async () => {
      const legacy = postgres(url, { max: 1, onnotice: () => {} });
      await legacy`select pg_advisory_lock(${0x5351}, 1)`;
      await admin`update writer_lease set backend_pid = 0, expires_at = now() + interval '1 hour'`;
      const b = lease({ ttlMs: 2_000 });
      const t = Date.now();
      expect(await b.acquire(AbortSignal.timeout(10_000))).toBe(true);
      const waitedMs = Date.now() - t;
      expect(waitedMs).toBeGreaterThanOrEqual(2_000);
      expect(waitedMs).toBeLessThan(5_000);
      await b.release();
      await legacy.end({ timeout: 1 }).catch(() => {});
    },
    30_000,
  );

  test("two writers forced past the lease cannot fork the sequence", async () => {
    const store = new DrizzleEventStore(database.db);
    const head = await store.head();
    const first = new DrizzleEventStore(database.db);
    const second = new DrizzleEventStore(database.db);
    // Both computed the same next number from the same head, with different events.
    const results = await Promise.allSettled([appendAfter(first, head, 2), appendAfter(second, head)]);
    expect(results.filter((r) => r.status === "fulfilled")).toHaveLength(1);
    expect(results.filter((r) => r.status === "rejected")).toHaveLength(1);
    const records = await store.readAfter(0n, 1000);
    expect(records.map((r) => r.sequenceId)).toEqual(records.map((_, i) => BigInt(i + 1)));
    // The loser retrying on top of the new head succeeds: contention costs a retry, never a fork.
    const loserHead = await store.head();
    await appendAfter(second, loserHead);
    expect((await store.head()).sequenceId).toBe(loserHead.sequenceId + 1n);
  });
});
