/**
 * What every role stands on: the NATS connection of each role (the embedded broker's per-role users, or the one
 * identity NATS_* gives), the streams, consumer and buckets (provisioned or checked), and the migrated database.
 * Start-up steps against dependencies that may still be coming up are retried with backoff, not fatal.
 */
import { type JetStreamClient, type JetStreamManager, jetstream, jetstreamManager } from "@nats-io/jetstream";
import { type NatsConnection, PermissionViolationError } from "@nats-io/transport-node";
import { type Database, openDatabase } from "../adapters/db/client.ts";
import { connectNats, type NatsIdentity } from "../adapters/nats/connection.ts";
import type { NatsRole } from "../adapters/nats/permissions.ts";
import { ensureBuckets, ensureTopology, type TopologyOptions } from "../adapters/nats/topology.ts";
import { retry } from "../app/retry.ts";
import { type Config, ConfigError, type Role } from "../config.ts";
import type { Logger } from "../logger.ts";
import { privateUmask, secureDataDir } from "../runtime/data-dir.ts";
import { type EmbeddedNats, startEmbeddedNats } from "../runtime/embedded-nats.ts";
import { ensureNatsServer } from "../runtime/provision-tools.ts";
import type { Lifecycle } from "./lifecycle.ts";

/** Start-up retries: about a minute in all before a dependency that does not come up stops start-up. */
const STARTUP_ATTEMPTS = 20;

/** Retries a start-up step with backoff; a refusal that configuration must fix (ConfigError) is not retried. */
export function withRetry<T>(log: Logger, what: string, step: () => Promise<T>): Promise<T> {
  return retry(step, {
    attempts: STARTUP_ATTEMPTS,
    baseMs: 200,
    capMs: 3_000,
    // A refusal that configuration must fix (e.g. missing permissions) does not get better by waiting.
    retryable: (error) => !(error instanceof ConfigError),
    onRetry: (error, attempt, delayMs) => log.warn(`${what} failed; retrying`, { attempt, delayMs, error }),
  });
}

/** One role's connection to NATS, its JetStream handles, and whether it is connected now. */
export type RoleConnection = {
  nc: NatsConnection;
  js: JetStreamClient;
  jsm: JetStreamManager;
  /** False from a disconnect until the reconnect (and once closed). */
  up(): boolean;
};

/** Watches the connection's status: connected until a disconnect, again after a reconnect. */
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

/** Connects as `identity` and keeps reconnecting for ever (a broker restart must not end the process). */
export async function connectRole(
  natsUrl: string,
  identity: NatsIdentity,
  name: string,
  config: Pick<Config, "natsReconnectWaitMs">,
  log: Logger,
): Promise<RoleConnection> {
  const nc = await connectNats(natsUrl, {
    ...identity,
    name,
    waitOnFirstConnect: true,
    // No Error object per request for async stack traces: ~6 % of the API's CPU, and p99 halved (docs/performance.md).
    noAsyncTraces: true,
    maxReconnectAttempts: -1,
    reconnectTimeWait: config.natsReconnectWaitMs,
  });
  return { nc, js: jetstream(nc), jsm: await jetstreamManager(nc), up: trackConnection(nc, log) };
}

/** True when the broker refused a request for want of permission (here or in the error's causes). */
function isPermissionError(error: unknown): boolean {
  for (let e = error, depth = 0; e instanceof Error && depth < 5; e = e.cause, depth++) {
    if (e instanceof PermissionViolationError) return true;
  }
  return false;
}

function permissionMessage(error: unknown): string {
  return (
    "the JetStream streams, consumer or buckets are missing or differ from this configuration, and these NATS " +
    "credentials may not create or change them (only the admin role may): run `sequencer provision` with the " +
    `admin credentials once (${error instanceof Error ? error.message : String(error)})`
  );
}

/** The streams and consumer a config asks for (what provisioning creates and every role checks). */
export function topologyOptions(config: Config): TopologyOptions {
  return {
    replicas: config.streamReplicas,
    duplicateWindowMs: config.duplicateWindowMs,
    tradingDuplicateWindowMs: config.tradingDuplicateWindowMs,
    ackWaitMs: config.ackWaitMs,
    maxAckPending: config.maxAckPending,
    tradingMaxAgeMs: config.tradingMaxAgeMs,
    tradingMaxBytes: config.tradingMaxBytes,
    intakeMaxBytes: config.intakeMaxBytes,
  };
}

/**
 * Creates or checks the streams, the consumer and (with `buckets`) the API's buckets. A role that may only read
 * them (every runtime role on an authorizing broker) passes when they exist as wanted; when something must be
 * created or changed it stops with one line saying who may do it, instead of retrying a refusal.
 */
export async function provisionTopology(
  connection: Pick<RoleConnection, "js" | "jsm">,
  config: Config,
  log: Logger,
  options: { buckets: boolean },
): Promise<void> {
  await withRetry(log, "JetStream provisioning", async () => {
    try {
      await ensureTopology(connection.jsm, topologyOptions(config));
      // The buckets are the API's alone: the sequencer role may not even read their info.
      if (options.buckets) {
        await ensureBuckets(connection.js, {
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
    await provisionTopology({ js: jetstream(nc), jsm: await jetstreamManager(nc) }, config, log, {
      buckets: true,
    });
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

/** The shared pool (reads; every write of the sequencer goes through its writer lease), migrated. */
export async function openMigratedDatabase(config: Config, log: Logger): Promise<Database> {
  const database = await openDatabase({
    url: config.databaseUrl,
    pgliteDir: `${config.dataDir}/pg`,
    statementTimeoutMs: config.queryTimeoutMs,
  });
  try {
    await withRetry(log, "database migration", () => database.migrate());
  } catch (error) {
    await database.close().catch(() => {});
    throw error;
  }
  return database;
}

export type Infrastructure = {
  natsUrl: string;
  embedded: EmbeddedNats | undefined;
  /** The API role's connection, when this process serves the API. */
  api: RoleConnection | undefined;
  /** The sequencer role's connection, when this process runs the sequencer. */
  sequencer: RoleConnection | undefined;
  /** Stream and consumer info (metrics, readiness, status) is allowed to every role: any connection serves. */
  info: RoleConnection;
  /** Every connection of this process is up. */
  natsUp(): boolean;
  database: Database;
};

/** The host, made ready before anything is written or started: the nats-server binary for the embedded broker. */
export type PreparedHost = { natsBin: string | undefined };

export function prepareHost(config: Config): PreparedHost {
  // DATA_DIR (the embedded broker's store and credentials, PGlite, the auth secret) is its owner's alone: what
  // exists is repaired, and what this process and its nats-server child create later gets no group/other bits.
  if (!config.natsUrl || !config.databaseUrl) {
    privateUmask();
    secureDataDir(config.dataDir);
  }
  // A machine without nats-server (and no way to install it) stops before anything is written or started.
  return { natsBin: config.natsUrl ? undefined : ensureNatsServer() };
}

/**
 * Starts (or connects to) what `role` needs, registering each part's stop with `lifecycle` as it comes up: the
 * embedded broker (DATA_DIR) unless NATS_URL is set, one connection per role, the topology, the database.
 */
export async function startInfrastructure(
  config: Config,
  role: Role,
  host: PreparedHost,
  log: Logger,
  lifecycle: Lifecycle,
): Promise<Infrastructure> {
  const serveApi = role === "all" || role === "api";
  const runSequencer = role === "all" || role === "sequencer";
  const embedded = config.natsUrl
    ? undefined
    : await startEmbeddedNats(config.dataDir, { bin: host.natsBin });
  if (embedded) lifecycle.onStop("the embedded nats-server", () => embedded.stop());
  const natsUrl = config.natsUrl ?? embedded?.url ?? "";
  // The embedded broker is this process's own: it provisions it as admin.
  if (embedded) await provisionAsAdmin(natsUrl, embedded.credentials("admin"), config, log);
  const identityOf = (natsRole: NatsRole): NatsIdentity => ({
    role: natsRole,
    credentials: embedded ? embedded.credentials(natsRole) : config.natsCredentials,
  });
  const connect = async (natsRole: "api" | "sequencer") => {
    const connection = await connectRole(
      natsUrl,
      identityOf(natsRole),
      `sequencer-${role}-${natsRole}-${process.pid}`,
      config,
      log,
    );
    lifecycle.onStop(`the ${natsRole} NATS connection`, () => connection.nc.drain());
    return connection;
  };
  const api = serveApi ? await connect("api") : undefined;
  const sequencer = runSequencer ? await connect("sequencer") : undefined;
  const connections = [api, sequencer].filter((c): c is RoleConnection => c !== undefined);
  const info = connections[0] as RoleConnection;
  if (!embedded) await provisionTopology(info, config, log, { buckets: serveApi });

  const database = await openMigratedDatabase(config, log);
  lifecycle.onStop("the database", () => database.close());
  // PGlite creates a new database's files with explicit modes that the umask does not reach.
  if (!config.databaseUrl) secureDataDir(config.dataDir);
  return {
    natsUrl,
    embedded,
    api,
    sequencer,
    info,
    natsUp: () => connections.every((c) => c.up()),
    database,
  };
}
