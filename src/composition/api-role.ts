/**
 * The API role: the snowflake worker id (given, or leased so that concurrent replicas never share one), the intake
 * publisher (refusing at once while this role's NATS connection is down or its worker id lease is lost), the
 * idempotency store, the pending-intake lookup, and the HTTP application over them. Production (src/service.ts)
 * and the HTTP integration tests (test/int/http-helpers.ts) both build it here.
 */
import { hostname } from "node:os";
import type { DrizzleEventStore } from "../adapters/db/event-store.ts";
import { createHttpApp } from "../adapters/http/app.ts";
import type { ReadinessCheck } from "../adapters/http/ops.ts";
import type { Metrics } from "../adapters/metrics.ts";
import { KvIdempotencyStore } from "../adapters/nats/idempotency-kv.ts";
import { JetStreamIntakeLookup } from "../adapters/nats/intake-lookup.ts";
import { JetStreamIntakePublisher } from "../adapters/nats/intake-publisher.ts";
import { WORKER_LEASE_TTL_MS, WorkerLease } from "../adapters/nats/worker-lease.ts";
import type { TokenService } from "../app/auth.ts";
import { IntakeService } from "../app/intake.ts";
import type { Config } from "../config.ts";
import { SnowflakeGenerator } from "../domain/ids.ts";
import type { Logger } from "../logger.ts";
import { type RoleConnection, withRetry } from "./infrastructure.ts";

/** What the API role reads from the configuration. */
export type ApiConfig = Pick<
  Config,
  | "workerId"
  | "publishTimeoutMs"
  | "idempotencyWindowMs"
  | "streamReplicas"
  | "bodyLimitBytes"
  | "rateLimit"
  | "authFailureLimit"
  | "bodyTimeoutMs"
  | "auditIntervalMs"
>;

export type ApiRoleDeps = {
  config: ApiConfig;
  /** The API role's own NATS connection: intake is refused at once while it is down. */
  connection: RoleConnection;
  tokens: TokenService;
  /** The log's reads on the shared pool (the idempotency fallback, GET /events, /references). */
  store: DrizzleEventStore;
  metrics: Metrics;
  log: Logger;
};

export type ApiRole = {
  publisher: JetStreamIntakePublisher;
  /** The leased worker id; undefined when WORKER_ID gave one. */
  workerLease: WorkerLease | undefined;
  workerId: number;
  /** The HTTP application; `readiness` (GET /readyz) reads this role's state, so it is built after the role. */
  app(readiness: ReadinessCheck): ReturnType<typeof createHttpApp>;
  /** Gives the leased worker id back. */
  stop(): Promise<void>;
};

export async function openApiRole(deps: ApiRoleDeps): Promise<ApiRole> {
  const { config, connection, tokens, store, metrics, log } = deps;
  const workerLease =
    config.workerId === undefined
      ? await withRetry(log, "worker id lease", () =>
          WorkerLease.claim(
            connection.js,
            {
              ttlMs: WORKER_LEASE_TTL_MS,
              replicas: config.streamReplicas,
              holder: `${hostname()}:${process.pid}`,
            },
            log.child({ component: "worker-lease" }),
          ),
        )
      : undefined;
  const workerId = config.workerId ?? workerLease?.workerId ?? 0;
  log.info("snowflake worker id", { workerId, leased: workerLease !== undefined });
  const canMint = () => connection.up() && (workerLease?.isHeld() ?? true);
  const publisher = new JetStreamIntakePublisher(connection.nc, config.publishTimeoutMs, canMint, (seconds) =>
    metrics.publishSeconds.observe(seconds),
  );
  const idempotency = await withRetry(log, "idempotency bucket", () =>
    KvIdempotencyStore.open(connection.js, config.idempotencyWindowMs, config.streamReplicas),
  );
  const intake = new IntakeService(new SnowflakeGenerator(workerId), publisher, idempotency, store);
  return {
    publisher,
    workerLease,
    workerId,
    app: (readiness) =>
      createHttpApp({
        intake,
        pending: new JetStreamIntakeLookup(connection.jsm),
        tokens,
        store,
        readiness,
        bodyLimitBytes: config.bodyLimitBytes,
        limits: {
          rateLimit: config.rateLimit,
          authFailureLimit: config.authFailureLimit,
          bodyTimeoutMs: config.bodyTimeoutMs,
          auditIntervalMs: config.auditIntervalMs,
        },
        metrics,
        log: log.child({ component: "http" }),
      }),
    stop: async () => {
      await workerLease?.release();
    },
  };
}
