/**
 * Single writer: only the process holding the writer lease may sequence — and a writer that stops making progress
 * is replaced.
 *
 * Mutual exclusion is a Postgres advisory lock on a dedicated one-connection client (the writer session), and
 * every write of the sequencer goes through that same connection. Each append statement checks, in pg_locks, that
 * its own session holds the lock (the fence): if the session was lost or ended, the lock went with it, and a
 * reconnected session fails the check — no write can happen without the lock, whatever the timing.
 *
 * A lock alone is not liveness: a frozen process (SIGSTOP, a paused VM) or a blocked event loop keeps its session,
 * and so the lock, forever. So the holder also keeps a lease row (`writer_lease`) whose expiry is set by the
 * database's clock and renewed only while the sequencing loop reports progress (alive()). A standby that finds the
 * row expired ends the holder's session with pg_terminate_backend — which rolls back whatever it had in flight and
 * frees the lock — and takes the lock itself. The old writer, when it runs again, finds its session gone: its
 * writes are refused by the fence, and its own clock tells it the lease ran out (it steps down before even asking
 * the database). TRADING needs nothing more: each publish expects the stream's last sequence to be its
 * predecessor's, so a late publish of the old writer can never land out of order.
 *
 * Renewals and checks run on a second connection (the monitor), so they never queue behind an append.
 *
 * PGlite runs inside this process and its directory cannot be opened twice, so there the lease is trivial.
 */
import { sql } from "drizzle-orm";
import { drizzle } from "drizzle-orm/postgres-js";
import postgres from "postgres";
import { backoffDelay } from "../../app/backoff.ts";
import type { WriterLease } from "../../app/ports.ts";
import { sleep } from "../../app/sleep.ts";
import type { WriterReading } from "../../app/status.ts";
import type { Logger } from "../../logger.ts";
import { CUSTOM_PLANS, type Db, rowsOf } from "./client.ts";
import * as schema from "./schema.ts";
import type { WriteFence } from "./write-fence.ts";

/** The two-int advisory lock key: "SQ" and 1. Shows in pg_locks as classid/objid with objsubid = 2. */
const LOCK_CLASS = 0x5351;
const LOCK_OBJECT = 1;
/** The lease row's key (one writer per database). */
const LEASE_NAME = "sequencer";

export class LeadershipLostError extends Error {
  override readonly name = "LeadershipLostError";
}

/**
 * The writer lease as composition sees it (src/service.ts): the app's port, plus the session the sequencer's event
 * store must write on and the fence each of its writes runs. The use cases never see these two.
 */
export interface DatabaseWriterLease extends WriterLease {
  /** The database handle every sequencer write must use: a new one after the lease was lost and taken again. */
  readonly db: Db;
  /** The check each write statement runs (undefined: nothing to check, as with the embedded database). */
  readonly fence: WriteFence | undefined;
  /** Holds the lease now (as far as this process knows). */
  isHeld(): boolean;
}

export type WriterLeaseOptions = {
  /** How long the lease lasts after the last renewal (WRITER_LEASE_TTL): the takeover time of a hung writer. */
  ttlMs: number;
  /** How often a standby tries the lock (and looks whether the holder's lease ran out). */
  pollMs: number;
  /** How often the holder renews (when the loop made progress) or checks that it still holds the lock. */
  heartbeatMs: number;
  /** statement_timeout of the writer session (STATEMENT_TIMEOUT): a stuck append fails instead of waiting. */
  statementTimeoutMs: number;
  /** Who this process is, in the lease row and the logs: `<host>:<pid>`. */
  holder: string;
};

const LOCK_HELD_BY = (pid: unknown) => sql`exists(
  select 1 from pg_locks
  where locktype = 'advisory' and classid = ${LOCK_CLASS} and objid = ${LOCK_OBJECT} and objsubid = 2
    and pid = ${pid} and granted
)`;

/** True when this session holds the writer lock: the fence every write statement carries. */
const LOCK_HELD = LOCK_HELD_BY(sql`pg_backend_pid()`);

function firstRow(result: unknown): Record<string, unknown> | undefined {
  return rowsOf<Record<string, unknown>>(result)[0];
}

/** The lease row and the lock's holder, as a standby sees them. */
type Holder = {
  lockPid: number | null;
  leasePid: number | null;
  holder: string | null;
  term: string | null;
  expired: boolean;
  silentMs: number | null;
};

export class PostgresWriterLease implements DatabaseWriterLease {
  /** The writer session: the lock, and every write of this term. */
  private client!: postgres.Sql;
  private current!: Db;
  /** Renewals, checks and a standby's look at the holder: never queued behind an append. */
  private readonly monitor: postgres.Sql;
  private readonly monitorDb: Db;
  private held = false;
  private term = 0n;
  private sessionPid = 0;
  private lostController = new AbortController();
  private heartbeat: ReturnType<typeof setInterval> | undefined;
  private checking = false;
  /** performance.now() at the last alive(), and when the last successful renewal was sent. */
  private lastAlive = 0;
  private renewedAt = 0;
  /** A standby's view: since when (its own clock) the lock's holder has not matched the lease row. */
  private mismatchSince: number | undefined;
  private seen = "standby";
  private readonly options: WriterLeaseOptions;

  constructor(
    private readonly url: string,
    private readonly log: Logger,
    options: Partial<WriterLeaseOptions> = {},
  ) {
    this.options = {
      ttlMs: 10_000,
      pollMs: 500,
      heartbeatMs: 1_000,
      statementTimeoutMs: 30_000,
      holder: `pid ${process.pid}`,
      ...options,
    };
    this.connect();
    this.monitor = postgres(this.url, {
      max: 1,
      // A check that cannot answer within the lease is worthless: fail it and let the next one try.
      connect_timeout: 3,
      onnotice: () => {},
      connection: {
        // Carries the holder's name: the status page lists every sequencer standing by from these sessions.
        application_name: monitorApplicationName(this.options.holder),
        statement_timeout: Math.max(1_000, Math.floor(this.options.ttlMs / 2)),
      },
    });
    this.monitorDb = drizzle({ client: this.monitor, schema }) as unknown as Db;
  }

  /** One connection, never recycled by the pool: the lock is tied to this session's life. */
  private connect(): void {
    this.client = postgres(this.url, {
      max: 1,
      idle_timeout: 0,
      max_lifetime: 0,
      // Short: a connect that hangs costs the lease nothing but time, and a failed one is retried on a fresh client
      // (acquire). (postgres.js 3.4.9 also stalled a reconnect until this timer after a terminated session;
      // patches/postgres@3.4.9.patch fixes that.)
      connect_timeout: 3,
      onnotice: () => {},
      connection: {
        application_name: "sequencer-writer",
        statement_timeout: this.options.statementTimeoutMs,
        // The append runs here: its check of the row before the batch must not keep a plan made on an empty log.
        ...CUSTOM_PLANS,
      },
    });
    this.current = drizzle({ client: this.client, schema }) as unknown as Db;
  }

  /** Ends the writer session at once (its in-flight statements are rolled back, the lock is freed). */
  private dropSession(): void {
    const old = this.client;
    this.connect();
    old.end({ timeout: 0 }).catch(() => {});
  }

  /** The handle for this term's writes; a new one after the lease was lost and taken again. */
  get db(): Db {
    return this.current;
  }

  readonly fence: WriteFence = {
    holds: LOCK_HELD,
    refused: () => {
      this.markLost("the write statement's session does not hold the writer lock");
      return new LeadershipLostError("this process no longer holds the writer lock; refusing to write");
    },
  };

  get lost(): AbortSignal {
    return this.lostController.signal;
  }

  isHeld(): boolean {
    return this.held;
  }

  alive(): void {
    this.lastAlive = performance.now();
  }

  describe(): string {
    return this.held ? `holds the writer lease (term ${this.term})` : this.seen;
  }

  async acquire(signal: AbortSignal): Promise<boolean> {
    let announced = false;
    for (let attempt = 0; !signal.aborted; attempt++) {
      try {
        const locked = firstRow(
          await this.db.execute(sql`select pg_try_advisory_lock(${LOCK_CLASS}, ${LOCK_OBJECT}) as locked`),
        );
        if (locked?.locked === true) {
          await this.claim();
          return true;
        }
        if (!announced) this.log.info("another sequencer holds the writer lock; standing by");
        announced = true;
        // Taken over from a hung holder: try the lock again at once.
        if (await this.replaceIfHung()) continue;
        attempt = -1;
        await sleep(this.options.pollMs, signal);
      } catch (error) {
        this.dropSession(); // a fresh client: postgres.js keeps growing its own reconnect backoff
        this.log.warn("writer lock: database unavailable; retrying", { error });
        await sleep(backoffDelay(attempt, 250, 5_000), signal);
      }
    }
    return false;
  }

  /** Writes this session into the lease row (a new term) and starts renewing it. */
  private async claim(): Promise<void> {
    const sent = performance.now();
    const ttl = this.options.ttlMs;
    const row = firstRow(
      await this.db.execute(sql`
        insert into writer_lease (name, holder, backend_pid, term, renewed_at, expires_at)
        values (${LEASE_NAME}, ${this.options.holder}, pg_backend_pid(), 1, now(),
                now() + ${ttl} * interval '1 millisecond')
        on conflict (name) do update set
          holder = excluded.holder, backend_pid = excluded.backend_pid, term = writer_lease.term + 1,
          renewed_at = excluded.renewed_at, expires_at = excluded.expires_at
        returning term::text as term, backend_pid`),
    );
    this.term = BigInt(String(row?.term ?? 0));
    this.sessionPid = Number(row?.backend_pid ?? 0);
    this.held = true;
    this.renewedAt = sent;
    this.lastAlive = sent;
    this.mismatchSince = undefined;
    this.lostController = new AbortController();
    this.heartbeat = setInterval(() => void this.tick(), this.options.heartbeatMs);
    this.log.info("took the writer lease", { term: this.term.toString(), sessionPid: this.sessionPid });
  }

  /**
   * A standby's look at the holder: when its lease ran out (by the database's clock) — or the lock's holder has
   * not been the lease row's session for a whole TTL (an older writer, or one that died between lock and row) —
   * its session is ended, which frees the lock. True when it was.
   */
  private async replaceIfHung(): Promise<boolean> {
    const row = firstRow(
      await this.monitorDb.execute(sql`
        select l.pid as lock_pid, w.backend_pid as lease_pid, w.holder, w.term::text as term,
          coalesce(w.expires_at < now(), false) as expired,
          (extract(epoch from now() - w.renewed_at) * 1000)::bigint::text as silent_ms
        from pg_locks l left join writer_lease w on w.name = ${LEASE_NAME}
        where l.locktype = 'advisory' and l.classid = ${LOCK_CLASS} and l.objid = ${LOCK_OBJECT}
          and l.objsubid = 2 and l.granted`),
    );
    if (!row) return true; // the lock was just freed: try it again now
    const seen: Holder = {
      lockPid: Number(row.lock_pid),
      leasePid: row.lease_pid === null ? null : Number(row.lease_pid),
      holder: (row.holder as string | null) ?? null,
      term: (row.term as string | null) ?? null,
      expired: row.expired === true,
      silentMs: row.silent_ms === null ? null : Number(row.silent_ms),
    };
    this.seen = `standby; the writer is ${seen.holder ?? "unknown"} (term ${seen.term ?? "?"})`;
    const now = performance.now();
    let why: string | undefined;
    if (seen.leasePid === seen.lockPid) {
      this.mismatchSince = undefined;
      if (seen.expired) why = `its lease ran out (last renewed ${seen.silentMs} ms ago)`;
    } else {
      this.mismatchSince ??= now;
      if (now - this.mismatchSince > this.options.ttlMs) {
        why = `the lock's session (pid ${seen.lockPid}) has kept no lease for ${this.options.ttlMs} ms`;
      }
    }
    if (why === undefined) return false;
    this.log.warn("the writer made no progress: ending its database session and taking over", {
      writer: seen.holder,
      term: seen.term,
      sessionPid: seen.lockPid,
      reason: why,
    });
    try {
      // With a timeout, pg_terminate_backend waits until the session is gone (and its lock with it).
      await this.monitorDb.execute(sql`select pg_terminate_backend(${seen.lockPid}::int, 5000::bigint)`);
    } catch (error) {
      this.log.error(
        "cannot end the hung writer's session: every sequencer must connect as the same database role (or one " +
          "with pg_signal_backend)",
        { error },
      );
      return false;
    }
    this.mismatchSince = undefined;
    return true;
  }

  /**
   * The holder's heartbeat: renews the lease when the loop made progress since the last renewal, otherwise only
   * checks that the lock is still this session's. Steps down when the lease ran out by this process's own clock
   * (it was frozen, or the loop stopped): a standby may already have taken over.
   */
  private async tick(): Promise<void> {
    if (this.checking || !this.held) return;
    const now = performance.now();
    if (now - this.renewedAt > this.options.ttlMs) {
      this.markLost(`the lease was not renewed for ${Math.round(now - this.renewedAt)} ms (no progress)`);
      return;
    }
    this.checking = true;
    const renew = this.lastAlive > this.renewedAt;
    try {
      const holds = LOCK_HELD_BY(this.sessionPid);
      const row = firstRow(
        renew
          ? await this.monitorDb.execute(sql`
              update writer_lease
              set renewed_at = now(), expires_at = now() + ${this.options.ttlMs} * interval '1 millisecond'
              where name = ${LEASE_NAME} and term = ${this.term.toString()}::bigint
                and backend_pid = ${this.sessionPid} and ${holds}
              returning true as held`)
          : await this.monitorDb.execute(sql`select ${holds} as held`),
      );
      if (row?.held !== true)
        this.markLost("the writer lock or lease is gone (taken over, or the session ended)");
      else if (renew) this.renewedAt = now;
    } catch (error) {
      // The database did not answer: the lease may still hold until it runs out; the next tick tries again.
      this.log.warn("writer lease: renewal failed", { error });
    } finally {
      this.checking = false;
    }
  }

  private markLost(reason: string): void {
    if (!this.held) return;
    this.held = false;
    clearInterval(this.heartbeat);
    this.log.error("lost the writer lease; stopping writes", { reason, term: this.term.toString() });
    // End the session now: whatever it still runs is rolled back and the lock is free for a standby.
    this.dropSession();
    this.lostController.abort(new LeadershipLostError(reason));
  }

  async release(): Promise<void> {
    clearInterval(this.heartbeat);
    const wasHeld = this.held;
    this.held = false;
    if (!wasHeld) return;
    // Expire the row first (a standby need not wait for it), then free the lock: unlock_all, since the lock may
    // have been taken more than once on this session.
    await this.db
      .execute(sql`update writer_lease set expires_at = now()
        where name = ${LEASE_NAME} and term = ${this.term.toString()}::bigint and backend_pid = pg_backend_pid()`)
      .catch((error) =>
        this.log.warn("writer lease: could not expire the row (it runs out by itself)", { error }),
      );
    await this.db
      .execute(sql`select pg_advisory_unlock_all()`)
      .catch((error) => this.log.warn("writer lock: unlock failed (the session end releases it)", { error }));
  }

  async close(): Promise<void> {
    await this.release();
    await this.client.end({ timeout: 5 });
    await this.monitor.end({ timeout: 5 });
  }
}

/** PGlite: one process owns the database directory, so it is always the single writer. */
export class InProcessWriterLease implements DatabaseWriterLease {
  readonly fence = undefined;
  readonly lost = new AbortController().signal;
  private held = false;

  constructor(readonly db: Db) {}

  async acquire(): Promise<boolean> {
    this.held = true;
    return true;
  }

  isHeld(): boolean {
    return this.held;
  }

  alive(): void {}

  describe(): string {
    return this.held ? "holds the writer lease (embedded database)" : "standby";
  }

  async release(): Promise<void> {
    this.held = false;
  }

  async close(): Promise<void> {
    this.held = false;
  }
}

/**
 * The writer_lease row, for the status page of any role (an API process knows no lease of its own): who writes,
 * which term, and whether the lease is live by the database's clock. None with the embedded database.
 */
export async function readWriterLease(db: Db): Promise<WriterReading | null> {
  const rows = await db
    .select({
      holder: schema.writerLease.holder,
      term: schema.writerLease.term,
      live: sql<boolean>`${schema.writerLease.expiresAt} > now()`,
    })
    .from(schema.writerLease)
    .limit(1);
  const row = rows[0];
  if (!row) return null;
  // Every sequencer process keeps one lease monitor session open while it runs, leader or standby. Sessions of
  // another database role show no application_name here, which is one more reason every sequencer must connect
  // as the same role (the takeover needs it already).
  const sessions = rowsOf<{ name: string }>(
    await db.execute(sql`select application_name as name from pg_stat_activity
      where application_name like ${`${MONITOR_PREFIX}%`} order by backend_start, pid`),
  );
  return { ...row, sequencers: sessions.map((s) => s.name.slice(MONITOR_PREFIX.length)) };
}

/** The lease monitor sessions' application_name: this prefix, then the holder (host:pid). */
const MONITOR_PREFIX = "sequencer-lease ";

/** PostgreSQL keeps at most 63 bytes of an application_name; a longer holder is cut (the page shows what is left). */
function monitorApplicationName(holder: string): string {
  return `${MONITOR_PREFIX}${holder}`.slice(0, 63);
}
