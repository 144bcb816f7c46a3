/**
 * Single writer: only the process holding a Postgres advisory lock may sequence.
 *
 * The lock lives on a dedicated one-connection client, and every write of the sequencer goes through that same
 * connection. Each append statement checks, in pg_locks, that its own session holds the lock (the fence):
 * if the connection was lost, the lock went with it, and a reconnected session fails the check — no write can
 * happen without the lock, whatever the timing. A heartbeat notices a lost lock within a second or so, so a
 * leader that lost it stops at once; a standby polls and takes over as soon as the lock is free.
 *
 * PGlite runs inside this process and its directory cannot be opened twice, so there the lease is trivial.
 */
import { sql } from "drizzle-orm";
import { drizzle } from "drizzle-orm/postgres-js";
import postgres from "postgres";
import { sleep } from "../../app/backoff.ts";
import type { Logger } from "../../logger.ts";
import { type Db, rowsOf } from "./client.ts";
import type { WriteFence } from "./event-store.ts";
import * as schema from "./schema.ts";

/** The two-int advisory lock key: "SQ" and 1. Shows in pg_locks as classid/objid with objsubid = 2. */
const LOCK_CLASS = 0x5351;
const LOCK_OBJECT = 1;

export class LeadershipLostError extends Error {
  override readonly name = "LeadershipLostError";
}

export interface WriterLease {
  /** Waits (as a standby) until this process is the single writer. False if the signal aborted first. */
  acquire(signal: AbortSignal): Promise<boolean>;
  /** The database handle every sequencer write must use, and the fence to run inside each write. */
  readonly db: Db;
  readonly fence: WriteFence | undefined;
  /** Aborts when the lease is lost; a fresh signal after each acquire. */
  readonly lost: AbortSignal;
  isHeld(): boolean;
  /** Gives the lock up (another process may take it); acquire may be called again. */
  release(): Promise<void>;
  close(): Promise<void>;
}

/** True when this session holds the writer lock: the fence every write statement carries. */
const LOCK_HELD = sql`exists(
  select 1 from pg_locks
  where locktype = 'advisory' and classid = ${LOCK_CLASS} and objid = ${LOCK_OBJECT} and objsubid = 2
    and pid = pg_backend_pid() and granted
)`;
const HOLDS_LOCK = sql`select ${LOCK_HELD} as held`;

function firstRow(result: unknown): Record<string, unknown> | undefined {
  return rowsOf<Record<string, unknown>>(result)[0];
}

export class PostgresWriterLease implements WriterLease {
  private client!: postgres.Sql;
  private current!: Db;
  /** Set when the session failed: the next acquire starts a new client (postgres.js keeps growing its backoff). */
  private stale = false;
  private held = false;
  private lostController = new AbortController();
  private heartbeat: ReturnType<typeof setInterval> | undefined;
  private checking = false;

  constructor(
    private readonly url: string,
    private readonly log: Logger,
    private readonly options = { pollMs: 500, heartbeatMs: 1_000 },
  ) {
    this.connect();
  }

  /** One connection, never recycled by the pool: the lock is tied to this session's life. */
  private connect(): void {
    this.client = postgres(this.url, {
      max: 1,
      idle_timeout: 0,
      max_lifetime: 0,
      // Short: after its session is terminated, the client's reconnect has been seen to stall until this timer
      // fired (10 s, in the fault suite), and meanwhile the sequencer neither writes nor hands over. A failed
      // connect is retried on a fresh client (acquire), so a slow network costs retries, not the lease.
      connect_timeout: 3,
      onnotice: () => {},
      connection: { application_name: "sequencer-writer" },
    });
    this.current = drizzle({ client: this.client, schema }) as unknown as Db;
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

  async acquire(signal: AbortSignal): Promise<boolean> {
    let announced = false;
    for (let attempt = 0; !signal.aborted; attempt++) {
      if (this.stale) {
        const old = this.client;
        this.connect();
        this.stale = false;
        old.end({ timeout: 0 }).catch(() => {});
      }
      try {
        const row = firstRow(
          await this.db.execute(sql`select pg_try_advisory_lock(${LOCK_CLASS}, ${LOCK_OBJECT}) as locked`),
        );
        if (row?.locked === true) {
          this.held = true;
          this.lostController = new AbortController();
          this.heartbeat = setInterval(() => void this.check(), this.options.heartbeatMs);
          return true;
        }
        if (!announced) this.log.info("another sequencer holds the writer lock; standing by");
        announced = true;
        await sleep(this.options.pollMs, signal);
      } catch (error) {
        this.stale = true;
        this.log.warn("writer lock: database unavailable; retrying", { error });
        await sleep(Math.min(5_000, 250 * 2 ** Math.min(attempt, 5)), signal);
      }
    }
    return false;
  }

  private async check(): Promise<void> {
    if (this.checking || !this.held) return;
    this.checking = true;
    try {
      if (firstRow(await this.db.execute(HOLDS_LOCK))?.held !== true)
        this.markLost("the writer lock is gone");
    } catch (error) {
      this.markLost(`the writer lock's connection failed: ${error instanceof Error ? error.message : error}`);
    } finally {
      this.checking = false;
    }
  }

  private markLost(reason: string): void {
    if (!this.held) return;
    this.held = false;
    this.stale = true;
    clearInterval(this.heartbeat);
    this.log.error("lost the writer lock; stopping writes", { reason });
    this.lostController.abort(new LeadershipLostError(reason));
  }

  async release(): Promise<void> {
    clearInterval(this.heartbeat);
    this.held = false;
    // pg_advisory_unlock_all: the lock may have been taken more than once on this session.
    await this.db
      .execute(sql`select pg_advisory_unlock_all()`)
      .catch((error) => this.log.warn("writer lock: unlock failed (the session end releases it)", { error }));
  }

  async close(): Promise<void> {
    await this.release();
    await this.client.end({ timeout: 5 });
  }
}

/** PGlite: one process owns the database directory, so it is always the single writer. */
export class InProcessWriterLease implements WriterLease {
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

  async release(): Promise<void> {
    this.held = false;
  }

  async close(): Promise<void> {
    this.held = false;
  }
}
