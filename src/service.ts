import { hostname } from "node:os";
/**
 * Composition root: builds the adapters for the requested role, wires them into the use cases, starts them,
 * and stops them in reverse order. The only file that knows every concrete class.
 */
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { type Database, openDatabase } from "./adapters/db/client.ts";
import { DrizzleEventStore } from "./adapters/db/event-store.ts";
import { InProcessWriterLease, PostgresWriterLease, type WriterLease } from "./adapters/db/writer-lease.ts";
import { createHttpApp, createOpsApp } from "./adapters/http/app.ts";
import type { ReadinessCheck } from "./adapters/http/ops.ts";
import { Metrics } from "./adapters/metrics.ts";
import { connectNats } from "./adapters/nats/connection.ts";
import { KvIdempotencyStore } from "./adapters/nats/idempotency-kv.ts";
import { JetStreamIntakeSource } from "./adapters/nats/intake-consumer.ts";
import { JetStreamIntakeLookup } from "./adapters/nats/intake-lookup.ts";
import { JetStreamIntakePublisher } from "./adapters/nats/intake-publisher.ts";
import {
  ensureTopology,
  INTAKE_STREAM,
  SEQUENCER_CONSUMER,
  TRADING_STREAM,
} from "./adapters/nats/topology.ts";
import { JetStreamTradingLog } from "./adapters/nats/trading-publisher.ts";
import { WorkerLease } from "./adapters/nats/worker-lease.ts";
import { TokenService } from "./app/auth.ts";
import { backoffDelay, sleep } from "./app/backoff.ts";
import { IntakeService } from "./app/intake.ts";
import { type LeadershipState, type LeaderTerm, runWhileLeader } from "./app/leadership.ts";
import { type FailpointHook, Sequencer } from "./app/sequencer.ts";
import type { Config, Role } from "./config.ts";
import { SnowflakeGenerator } from "./domain/ids.ts";
import type { Logger } from "./logger.ts";
import { resolveAuthSecret } from "./runtime/auth-secret.ts";
import { type EmbeddedNats, startEmbeddedNats } from "./runtime/embedded-nats.ts";
import { serveHttp } from "./runtime/http-server.ts";

export type RunningService = {
  /** Base URL of the HTTP server (the API, or just /healthz and /readyz for the sequencer role). */
  url: string;
  natsUrl: string;
  /** The embedded server's WebSocket URL, when this process started one. */
  natsWsUrl: string | undefined;
  database: Database;
  tokens: TokenService | undefined;
  /** Whether this process currently holds the writer lock, and its sequencer while it does. */
  leadership: LeadershipState;
  stop(): Promise<void>;
};

/** Start-up steps against dependencies that may still be coming up are retried with backoff, not fatal. */
async function withRetry<T>(log: Logger, what: string, step: () => Promise<T>, attempts = 20): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await step();
    } catch (error) {
      if (attempt + 1 >= attempts) throw error;
      const delayMs = backoffDelay(attempt, 200, 3_000);
      log.warn(`${what} failed; retrying`, { attempt, delayMs, error });
      await sleep(delayMs);
    }
  }
}

function trackConnection(nc: NatsConnection, log: Logger): () => boolean {
  let connected = true;
  (async () => {
    for await (const status of nc.status()) {
      if (status.type === "disconnect") connected = false;
      if (status.type === "reconnect") connected = true;
      if (status.type === "disconnect" || status.type === "reconnect") log.warn(`nats ${status.type}`);
    }
  })().catch((error) => log.error("nats status watcher stopped", { error }));
  return () => connected && !nc.isClosed();
}

/** FAILPOINT: die abruptly (SIGKILL, no cleanup) at a named point, as a crash would. Tests only. */
function failpointHook(config: Config, log: Logger): FailpointHook | undefined {
  const { failpoint, failpointAfter } = config;
  if (!failpoint) return undefined;
  let reached = 0;
  return (point, head) => {
    if (point !== failpoint || ++reached < failpointAfter) return;
    log.error("FAILPOINT reached: killing this process", {
      failpoint,
      batch: reached,
      head: head.toString(),
    });
    process.kill(process.pid, "SIGKILL");
  };
}

export async function startService(config: Config, role: Role, log: Logger): Promise<RunningService> {
  const serveApi = role === "all" || role === "api";
  const runSequencer = role === "all" || role === "sequencer";
  // First, so that a machine without nats-server (and no way to install it) stops before anything is started.
  const embedded: EmbeddedNats | undefined = config.natsUrl
    ? undefined
    : await startEmbeddedNats(config.dataDir);
  const tokens = serveApi ? new TokenService(resolveAuthSecret(config)) : undefined;
  const natsUrl = config.natsUrl ?? embedded?.url ?? "";
  const nc = await connectNats(natsUrl, {
    name: `sequencer-${role}-${process.pid}`,
    waitOnFirstConnect: true,
    // No Error object per request for async stack traces: ~6 % of the API's CPU, and p99 halved (docs/performance.md).
    noAsyncTraces: true,
    maxReconnectAttempts: -1,
    reconnectTimeWait: 500,
  });
  const natsUp = trackConnection(nc, log);
  const jsm = await jetstreamManager(nc);
  const js = jetstream(nc);
  await withRetry(log, "JetStream provisioning", () =>
    ensureTopology(jsm, {
      replicas: config.streamReplicas,
      duplicateWindowMs: config.duplicateWindowMs,
      ackWaitMs: config.ackWaitMs,
      maxAckPending: config.maxAckPending,
    }),
  );

  const database = await openDatabase({ url: config.databaseUrl, pgliteDir: `${config.dataDir}/pg` });
  await withRetry(log, "database migration", () => database.migrate());
  const store = new DrizzleEventStore(database.db);

  const abort = new AbortController();
  const leadership: LeadershipState = { leader: false, term: undefined };
  let lease: WriterLease | undefined;
  let sequencerDone: Promise<void> = Promise.resolve();
  if (runSequencer) {
    const writerLease: WriterLease = config.databaseUrl
      ? new PostgresWriterLease(config.databaseUrl, log.child({ component: "writer-lock" }))
      : new InProcessWriterLease(database.db);
    lease = writerLease;
    const trading = new JetStreamTradingLog(nc, js, jsm, config.publishTimeoutMs);
    const sequencerLog = log.child({ component: "sequencer" });
    const startTerm = async (): Promise<LeaderTerm> => {
      const source = await JetStreamIntakeSource.open(js, config.batchSize * 2);
      const sequencer = new Sequencer(
        source,
        // Writes on the writer's fenced session; the duplicate filter reads on the pool, so that the next batch's
        // filter runs while the current batch commits.
        new DrizzleEventStore(writerLease.db, writerLease.fence, database.db),
        trading,
        {
          batchSize: config.batchSize,
          maxBatchSize: config.maxBatchSize,
          fetchWaitMs: config.fetchWaitMs,
          catchUpPageSize: 1000,
          keepAliveMs: Math.max(250, Math.floor(config.ackWaitMs / 3)),
        },
        sequencerLog,
        undefined,
        failpointHook(config, sequencerLog),
        metrics,
      );
      return { sequencer, close: () => source.close() };
    };
    sequencerDone = runWhileLeader(writerLease, startTerm, abort.signal, sequencerLog, leadership);
  }

  const metrics = new Metrics({
    intakeLag: async () => {
      const info = await jsm.consumers.info(INTAKE_STREAM, SEQUENCER_CONSUMER);
      return { pending: info.num_pending, ackPending: info.num_ack_pending };
    },
    tradingHead: async () => BigInt((await jsm.streams.info(TRADING_STREAM)).state.last_seq),
    databaseHead: async () => (await store.head()).sequenceId,
    ...(runSequencer ? { isLeader: () => leadership.leader } : {}),
  });

  const readiness: ReadinessCheck = async () => {
    const checks: Record<string, { ok: boolean; detail?: string }> = { nats: { ok: natsUp() } };
    try {
      await database.ping();
      checks.database = { ok: true };
    } catch (error) {
      checks.database = { ok: false, detail: error instanceof Error ? error.message : String(error) };
    }
    if (workerLease) {
      checks.workerId = { ok: workerLease.isHeld(), detail: `leased worker id ${workerLease.workerId}` };
    }
    if (runSequencer) {
      checks.leader = {
        ok: leadership.leader,
        detail: leadership.leader ? "holds the writer lock" : "standby",
      };
      const status = leadership.term?.sequencer.status();
      checks.sequencer = status
        ? { ok: status.tradingInSync, detail: status.lastError ?? `head ${status.head}` }
        : { ok: false, detail: "not sequencing" };
    }
    return checks;
  };

  // Snowflake worker id: given (WORKER_ID), or leased so that concurrent API replicas can never share one.
  const workerLease =
    tokens && config.workerId === undefined
      ? await withRetry(log, "worker id lease", () =>
          WorkerLease.claim(
            js,
            { ttlMs: 15_000, replicas: config.streamReplicas, holder: `${hostname()}:${process.pid}` },
            log.child({ component: "worker-lease" }),
          ),
        )
      : undefined;
  const workerId = config.workerId ?? workerLease?.workerId ?? 0;
  const canMint = () => natsUp() && (workerLease?.isHeld() ?? true);
  if (tokens) log.info("snowflake worker id", { workerId, leased: workerLease !== undefined });

  const httpLog = log.child({ component: "http" });
  // The API role serves everything; the sequencer-only role serves just /healthz and /readyz.
  const app = tokens
    ? createHttpApp({
        intake: new IntakeService(
          new SnowflakeGenerator(workerId),
          new JetStreamIntakePublisher(js, config.publishTimeoutMs, canMint, (seconds) =>
            metrics.publishSeconds.observe(seconds),
          ),
          await withRetry(log, "idempotency bucket", () =>
            KvIdempotencyStore.open(js, config.idempotencyWindowMs, config.streamReplicas),
          ),
          store,
        ),
        pending: new JetStreamIntakeLookup(js, jsm),
        tokens,
        store,
        readiness,
        bodyLimitBytes: config.bodyLimitBytes,
        metrics,
        log: httpLog,
      })
    : createOpsApp(readiness, metrics, httpLog);
  // Bun's own cap sits well above the app's limit: the app answers 413 as JSON; Bun only cuts off abuse.
  const server = serveHttp(app, {
    port: config.port,
    hostname: config.host,
    maxRequestBodySize: config.bodyLimitBytes * 4 + 65_536,
  });
  const url = `http://${config.host}:${server.port}`;
  const stopHttp = () => server.stop();

  let stopping: Promise<void> | undefined;
  const stop = () => {
    stopping ??= (async () => {
      await stopHttp(); // no new requests
      await workerLease?.release();
      abort.abort(); // the sequencer finishes its step; an unacked batch is handed back for the next one
      await sequencerDone;
      await lease?.close().catch((error) => log.warn("writer lock close failed", { error }));
      await nc.drain().catch((error) => log.warn("nats drain failed", { error }));
      await database.close().catch((error) => log.warn("database close failed", { error }));
      await embedded?.stop();
    })();
    return stopping;
  };

  return { url, natsUrl, natsWsUrl: embedded?.wsUrl, database, tokens, leadership, stop };
}
