/**
 * Snowflake worker ids must never be used by two live processes at once. With WORKER_ID set, that is the
 * operator's promise (one id per replica, as in compose.yaml). With WORKER_ID unset, each API process leases an
 * id: a key in a JetStream KV bucket (WORKERS) whose entries expire after `ttlMs` unless refreshed; it claims the
 * first free id from a random start (create-if-absent is atomic), and refuses to start when none is free.
 * The lease is refreshed with compare-and-set every ttl/3. A process that cannot refresh stops minting ids
 * (the API answers 503) well before the key can expire and be claimed by someone else.
 */
import type { JetStreamClient } from "@nats-io/jetstream";
import { type KV, Kvm } from "@nats-io/kv";
import { MAX_WORKER_ID } from "../../domain/ids.ts";
import type { Logger } from "../../logger.ts";
import { isKeyTaken } from "./kv-conflict.ts";

export const WORKERS_BUCKET = "WORKERS";
/** How long a worker id lease lives unless refreshed (the WORKERS bucket's TTL). */
export const WORKER_LEASE_TTL_MS = 15_000;

export class WorkerIdTakenError extends Error {
  override readonly name = "WorkerIdTakenError";
}

export class WorkerLease {
  private revision = 0;
  private lastRefresh = 0;
  private timer: ReturnType<typeof setInterval> | undefined;

  private constructor(
    private readonly kv: KV,
    readonly workerId: number,
    private readonly ttlMs: number,
    private readonly log: Logger,
    private readonly holder: string,
  ) {}

  static async claim(
    js: JetStreamClient,
    options: { ttlMs: number; replicas: number; holder: string },
    log: Logger,
  ): Promise<WorkerLease> {
    const kv = await new Kvm(js).create(WORKERS_BUCKET, {
      ttl: options.ttlMs,
      history: 1,
      replicas: options.replicas,
    });
    const start = Math.floor(Math.random() * (MAX_WORKER_ID + 1));
    const candidates = Array.from({ length: MAX_WORKER_ID + 1 }, (_, i) => (start + i) % (MAX_WORKER_ID + 1));
    for (const id of candidates) {
      try {
        const revision = await kv.create(String(id), options.holder);
        const lease = new WorkerLease(kv, id, options.ttlMs, log, options.holder);
        lease.revision = revision;
        lease.lastRefresh = Date.now();
        lease.timer = setInterval(() => void lease.refresh(), Math.max(200, Math.floor(options.ttlMs / 3)));
        return lease;
      } catch (error) {
        // An id taken by a live process: try the next one. Anything else is a real failure.
        if (!isKeyTaken(error)) throw error;
      }
    }
    throw new WorkerIdTakenError(
      "all 1024 worker ids are leased by live processes; set WORKER_ID explicitly",
    );
  }

  /** True while the lease is certainly still ours: refreshed within two thirds of its TTL. */
  isHeld(): boolean {
    return this.timer !== undefined && Date.now() - this.lastRefresh < (this.ttlMs * 2) / 3;
  }

  private async refresh(): Promise<void> {
    const key = String(this.workerId);
    try {
      this.revision = await this.kv.update(key, this.holder, this.revision);
      this.lastRefresh = Date.now();
      return;
    } catch (error) {
      this.log.warn("worker id lease refresh failed; checking the lease", { workerId: this.workerId, error });
    }
    // The update can fail with the lease still ours (a timed-out update that was stored after all) or gone (it
    // expired while NATS was unreachable). Read it: adopt our own entry, take the id back if it is free, and
    // stay without a lease (no minting, /readyz false) only if another process now holds it.
    try {
      const entry = await this.kv.get(key);
      if (entry && entry.operation === "PUT" && entry.string() === this.holder) {
        this.revision = await this.kv.update(key, this.holder, entry.revision);
      } else if (entry?.operation !== "PUT") {
        this.revision = await this.kv.create(key, this.holder);
      } else {
        this.log.error("worker id now leased by another process; minting stays stopped", {
          workerId: this.workerId,
          holder: entry.string(),
        });
        return;
      }
      this.lastRefresh = Date.now();
      this.log.info("worker id lease recovered", { workerId: this.workerId });
    } catch (error) {
      this.log.error("worker id lease refresh failed; minting stops until it succeeds", {
        workerId: this.workerId,
        error,
      });
    }
  }

  async release(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    await this.kv.delete(String(this.workerId), { previousSeq: this.revision }).catch(() => {});
  }
}
