import { hostname } from "node:os";
/**
 * Composition root: builds the adapters for the requested role, wires them into the use cases, starts them,
 * and stops them in reverse order. The only file that knows every concrete class.
 */
import { type JetStreamClient, type JetStreamManager, jetstream, jetstreamManager } from "@nats-io/jetstream";
import { type NatsConnection, PermissionViolationError } from "@nats-io/transport-node";
import { type Database, openDatabase } from "./adapters/db/client.ts";
import { DrizzleEventStore } from "./adapters/db/event-store.ts";
import {
  InProcessWriterLease,
  PostgresWriterLease,
  readWriterLease,
  type WriterLease,
} from "./adapters/db/writer-lease.ts";
import { createHealthApp, createHttpApp, createOpsApp } from "./adapters/http/app.ts";
import type { ReadinessCheck } from "./adapters/http/ops.ts";
import { StatusSampler } from "./adapters/http/status-page.ts";
import { Metrics } from "./adapters/metrics.ts";
import { connectNats, type NatsIdentity } from "./adapters/nats/connection.ts";
import { KvIdempotencyStore } from "./adapters/nats/idempotency-kv.ts";
import { JetStreamIntakeSource } from "./adapters/nats/intake-consumer.ts";
import { JetStreamIntakeLookup } from "./adapters/nats/intake-lookup.ts";
import { JetStreamIntakePublisher } from "./adapters/nats/intake-publisher.ts";
import type { NatsRole } from "./adapters/nats/permissions.ts";
import {
  ensureBuckets,
  ensureTopology,
  INTAKE_STREAM,
  SEQUENCER_CONSUMER,
  TRADING_STREAM,
} from "./adapters/nats/topology.ts";
import { JetStreamTradingLog } from "./adapters/nats/trading-publisher.ts";
import { WORKER_LEASE_TTL_MS, WorkerLease } from "./adapters/nats/worker-lease.ts";
import type { TokenService } from "./app/auth.ts";
import { backoffDelay, sleep } from "./app/backoff.ts";
import { IntakeService } from "./app/intake.ts";
import { type LeadershipState, type LeaderTerm, runWhileLeader } from "./app/leadership.ts";
import { type FailpointHook, Sequencer } from "./app/sequencer.ts";
import { type Config, ConfigError, type Role } from "./config.ts";
import { SnowflakeGenerator } from "./domain/ids.ts";
import type { Logger } from "./logger.ts";
import { createTokenService } from "./runtime/auth-keys.ts";
import { privateUmask, secureDataDir } from "./runtime/data-dir.ts";
import { type EmbeddedNats, startEmbeddedNats } from "./runtime/embedded-nats.ts";
import { serveHttp } from "./runtime/http-server.ts";
import { ensureNatsServer } from "./runtime/provision-tools.ts";

export type RunningService = {
  /** Base URL of the HTTP server (the API, or just /healthz and /readyz for the sequencer role). */
  url: string;
  /** Base URL of the ops listener: /metrics, /readyz with details, /healthz. */
  opsUrl: string;
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
      // A refusal that configuration must fix (e.g. missing permissions) does not get better by waiting.
      if (error instanceof ConfigError || attempt + 1 >= attempts) throw error;
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

/** True when the broker refused a request for want of permission (here or in the error's causes). */
function isPermissionError(error: unknown): boolean {
  for (let e = error, depth = 0; e instanceof Error && depth < 5; e = e.cause, depth++) {
    if (e instanceof PermissionViolationError) return true;
  }
  return false;
}

/**
 * Creates or checks the streams, the consumer and the buckets. A role that may only read them (every runtime
 * role on an authorizing broker) passes when they exist as wanted; when something must be created or changed it
 * stops with one line saying who may do it, instead of retrying a refusal.
 */
async function provision(
  js: JetStreamClient,
  jsm: JetStreamManager,
  config: Config,
  log: Logger,
  buckets: boolean,
) {
  await withRetry(log, "JetStream provisioning", async () => {
    try {
      await ensureTopology(jsm, {
        replicas: config.streamReplicas,
        duplicateWindowMs: config.duplicateWindowMs,
        ackWaitMs: config.ackWaitMs,
        maxAckPending: config.maxAckPending,
        tradingMaxAgeMs: config.tradingMaxAgeMs,
        tradingMaxBytes: config.tradingMaxBytes,
        intakeMaxBytes: config.intakeMaxBytes,
      });
      // The buckets are the API's alone: the sequencer role may not even read their info.
      if (buckets) {
        await ensureBuckets(js, {
          idempotencyWindowMs: config.idempotencyWindowMs,
          replicas: config.streamReplicas,
        });
      }
    } catch (error) {
      if (isPermissionError(error)) throw new ConfigError(permissionMessage(error));
      throw error;
    }
  });
}

/** Provisions everything as the admin role, on a connection closed right after. */
async function provisionAsAdmin(
  natsUrl: string,
  credentials: NatsIdentity["credentials"],
  config: Config,
  log: Logger,
): Promise<void> {
  const nc = await connectNats(natsUrl, {
    credentials,
    role: "admin",
    name: `sequencer-provision-${process.pid}`,
  });
  try {
    await provision(jetstream(nc), await jetstreamManager(nc), config, log, true);
  } finally {
    await nc.close();
  }
}

/** `sequencer provision`: creates the topology on an external broker, as the admin role, and returns. */
export async function provisionBroker(config: Config, log: Logger): Promise<void> {
  if (!config.natsUrl) {
    throw new ConfigError(
      "provision sets up an external broker (NATS_URL); the embedded one provisions itself",
    );
  }
  await provisionAsAdmin(config.natsUrl, config.natsCredentials, config, log);
}

function permissionMessage(error: unknown): string {
  return (
    "the JetStream streams, consumer or buckets are missing or differ from this configuration, and these NATS " +
    "credentials may not create or change them (only the admin role may): run `sequencer provision` with the " +
    `admin credentials once (${error instanceof Error ? error.message : String(error)})`
  );
}

/**
 * FAILPOINT: die abruptly (SIGKILL, no cleanup) at a named point, as a crash would — or, with FAILPOINT_STALL,
 * block the event loop that long there, once, as a hung process would. Tests only.
 */
function failpointHook(config: Config, log: Logger): FailpointHook | undefined {
  const { failpoint, failpointAfter, failpointStallMs } = config;
  if (!failpoint) return undefined;
  let reached = 0;
  return (point, head) => {
    if (point !== failpoint || ++reached < failpointAfter) return;
    if (failpointStallMs !== undefined) {
      if (reached !== failpointAfter) return;
      log.error("FAILPOINT reached: blocking the event loop", { failpoint, ms: failpointStallMs });
      const until = Date.now() + failpointStallMs;
      while (Date.now() < until) {
        // Busy on purpose: no timer, no I/O, no heartbeat runs meanwhile.
      }
      log.error("FAILPOINT: event loop free again", { failpoint, head: head.toString() });
      return;
    }
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
  // DATA_DIR (the embedded broker's store and credentials, PGlite, the auth secret) is its owner's alone: what
  // exists is repaired, and what this process and its nats-server child create later gets no group/other bits.
  const usesDataDir = !config.natsUrl || !config.databaseUrl;
  if (usesDataDir) {
    privateUmask();
    secureDataDir(config.dataDir);
  }
  // A machine without nats-server (and no way to install it) stops before anything is written or started.
  const natsBin = config.natsUrl ? undefined : ensureNatsServer();
  // Before anything is started: a weak or empty AUTH_SECRET (or a bad AUTH_JWKS file) stops start-up at once.
  const tokens = serveApi ? createTokenService(config) : undefined;
  const embedded: EmbeddedNats | undefined = config.natsUrl
    ? undefined
    : await startEmbeddedNats(config.dataDir, { bin: natsBin });
  const natsUrl = config.natsUrl ?? embedded?.url ?? "";
  // Each role connects as itself: the embedded broker's per-role users, or the one identity NATS_* gives.
  const identityOf = (natsRole: NatsRole): NatsIdentity => ({
    role: natsRole,
    credentials: embedded ? embedded.credentials(natsRole) : config.natsCredentials,
  });
  const connectAs = (natsRole: "api" | "sequencer") =>
    connectNats(natsUrl, {
      ...identityOf(natsRole),
      name: `sequencer-${role}-${natsRole}-${process.pid}`,
      waitOnFirstConnect: true,
      // No Error object per request for async stack traces: ~6 % of the API's CPU, and p99 halved (docs/performance.md).
      noAsyncTraces: true,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 500,
    });
  // The embedded broker is this process's own: it provisions it as admin.
  if (embedded) await provisionAsAdmin(natsUrl, embedded.credentials("admin"), config, log);
  const apiNc = serveApi ? await connectAs("api") : undefined;
  const sequencerNc = runSequencer ? await connectAs("sequencer") : undefined;
  const connections = [apiNc, sequencerNc].filter((c): c is NatsConnection => c !== undefined);
  const nc = connections[0] as NatsConnection;
  const upChecks = connections.map((c) => trackConnection(c, log));
  const natsUp = () => upChecks.every((up) => up());
  const apiUp = apiNc ? (upChecks[0] as () => boolean) : natsUp;
  // Stream and consumer info (metrics, readiness) is allowed to every role: any connection serves.
  const jsm = await jetstreamManager(nc);
  const js = jetstream(nc);
  if (!embedded) {
    await provision(js, jsm, config, log, serveApi).catch(async (error: unknown) => {
      for (const c of connections) await c.close().catch(() => {});
      throw error;
    });
  }

  const database = await openDatabase({
    url: config.databaseUrl,
    pgliteDir: `${config.dataDir}/pg`,
    statementTimeoutMs: config.queryTimeoutMs,
  });
  await withRetry(log, "database migration", () => database.migrate());
  // PGlite creates a new database's files with explicit modes that the umask does not reach.
  if (!config.databaseUrl) secureDataDir(config.dataDir);
  const store = new DrizzleEventStore(database.db);

  const abort = new AbortController();
  const leadership: LeadershipState = { leader: false, term: undefined };
  let lease: WriterLease | undefined;
  let sequencerDone: Promise<void> = Promise.resolve();
  if (runSequencer) {
    const writerLease: WriterLease = config.databaseUrl
      ? new PostgresWriterLease(config.databaseUrl, log.child({ component: "writer-lock" }), {
          ttlMs: config.writerLeaseTtlMs,
          pollMs: 500,
          heartbeatMs: Math.min(1_000, Math.floor(config.writerLeaseTtlMs / 5)),
          statementTimeoutMs: config.statementTimeoutMs,
          holder: `${hostname()}:${process.pid}`,
        })
      : new InProcessWriterLease(database.db);
    lease = writerLease;
    const seqNc = sequencerNc as NatsConnection;
    // The sequencer's own connection (the same one as `nc` when this process runs no API).
    const seqJs = seqNc === nc ? js : jetstream(seqNc);
    const seqJsm = seqNc === nc ? jsm : await jetstreamManager(seqNc);
    const trading = new JetStreamTradingLog(seqNc, seqJs, seqJsm, config.publishTimeoutMs);
    const sequencerLog = log.child({ component: "sequencer" });
    const startTerm = async (): Promise<LeaderTerm> => {
      const source = await JetStreamIntakeSource.open(seqJs, config.batchSize * 2, {
        onRedelivered: () => metrics.redelivered(),
      });
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
          alive: () => writerLease.alive(),
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
    if (intakePublisher) {
      const full = intakePublisher.fullness();
      checks.intake = full === null ? { ok: true } : { ok: false, detail: full };
    }
    if (workerLease) {
      checks.workerId = { ok: workerLease.isHeld(), detail: `leased worker id ${workerLease.workerId}` };
    }
    if (runSequencer) {
      checks.leader = { ok: leadership.leader, detail: lease?.describe() ?? "standby" };
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
  const canMint = () => apiUp() && (workerLease?.isHeld() ?? true);
  if (tokens) log.info("snowflake worker id", { workerId, leased: workerLease !== undefined });

  const intakePublisher = tokens
    ? new JetStreamIntakePublisher(js, config.publishTimeoutMs, canMint, (seconds) =>
        metrics.publishSeconds.observe(seconds),
      )
    : undefined;
  const httpLog = log.child({ component: "http" });
  // The API role serves everything; the sequencer-only role serves just /healthz and /readyz.
  const app =
    tokens && intakePublisher
      ? createHttpApp({
          intake: new IntakeService(
            new SnowflakeGenerator(workerId),
            intakePublisher,
            await withRetry(log, "idempotency bucket", () =>
              KvIdempotencyStore.open(js, config.idempotencyWindowMs, config.streamReplicas),
            ),
            store,
          ),
          pending: new JetStreamIntakeLookup(jsm),
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
          log: httpLog,
        })
      : createHealthApp(readiness, metrics, httpLog);
  // No Bun body cap here: Bun's own 413 has an empty body; the app answers every oversized body as JSON itself,
  // from the declared length or after reading at most BODY_LIMIT_BYTES of a chunked one (http-server.ts).
  const server = serveHttp(app, {
    port: config.port,
    hostname: config.host,
    maxInFlight: config.maxInFlight,
    onOverload: () => metrics.overloaded(),
    idleTimeoutSeconds: Math.min(255, Math.ceil(config.bodyTimeoutMs / 1000) + 5),
  });
  const url = `http://${config.host}:${server.port}`;
  // Metrics and readiness details, off the public port (loopback unless OPS_HOST says otherwise).
  const status = new StatusSampler(
    {
      intake: async () => {
        const [consumer, stream] = await Promise.all([
          jsm.consumers.info(INTAKE_STREAM, SEQUENCER_CONSUMER),
          jsm.streams.info(INTAKE_STREAM),
        ]);
        return {
          pending: consumer.num_pending,
          ackPending: consumer.num_ack_pending,
          redeliveredUnacked: consumer.num_redelivered,
          stored: stream.state.last_seq,
        };
      },
      databaseHead: async () => (await store.head()).sequenceId,
      tradingHead: async () => BigInt((await jsm.streams.info(TRADING_STREAM)).state.last_seq),
      writer: () => readWriterLease(database.db),
      readiness,
      ...(serveApi ? { accepted: () => metrics.accepted() } : {}),
      ...(runSequencer
        ? {
            sequencer: async () => ({
              leader: leadership.leader,
              lease: lease?.describe() ?? "standby",
              error: leadership.term?.sequencer.status().lastError ?? null,
              redelivered: await metrics.redeliveries(),
            }),
          }
        : {}),
    },
    httpLog,
  );
  const opsServer = serveHttp(createOpsApp(readiness, metrics, httpLog, status), {
    port: config.opsPort,
    hostname: config.opsHost,
    maxRequestBodySize: 65_536,
  });
  const opsUrl = `http://${config.opsHost}:${opsServer.port}`;
  const stopHttp = async () => {
    status.stop();
    await server.stop();
    await opsServer.stop();
  };

  let stopping: Promise<void> | undefined;
  const stop = () => {
    stopping ??= (async () => {
      await stopHttp(); // no new requests
      await workerLease?.release();
      abort.abort(); // the sequencer finishes its step; an unacked batch is handed back for the next one
      await sequencerDone;
      await lease?.close().catch((error) => log.warn("writer lock close failed", { error }));
      for (const c of connections) await c.drain().catch((error) => log.warn("nats drain failed", { error }));
      await database.close().catch((error) => log.warn("database close failed", { error }));
      await embedded?.stop();
    })();
    return stopping;
  };

  return { url, opsUrl, natsUrl, natsWsUrl: embedded?.wsUrl, database, tokens, leadership, stop };
}
