/**
 * Environment → typed configuration. Every bad value stops start-up with one line naming the variable.
 */
import { existsSync } from "node:fs";
import type { Rate } from "./adapters/http/rate-limit.ts";
import { type NatsCredentials, publicKeyOf } from "./adapters/nats/credentials.ts";
import type { Failpoint } from "./app/failpoints.ts";
import { MAX_WORKER_ID } from "./domain/ids.ts";

export type Role = "all" | "api" | "sequencer";

export type Config = {
  port: number;
  host: string;
  /** The ops listener (/metrics, /readyz with details, /healthz): off the public port, loopback by default. */
  opsPort: number;
  opsHost: string;
  /** Unset: start an embedded nats-server child. ws:// or wss:// connects over WebSocket (edge runtimes). */
  natsUrl: string | undefined;
  /**
   * How this process authenticates to an external NATS_URL (one of NATS_CREDS, NATS_USER + NATS_PASSWORD,
   * NATS_TOKEN, NATS_NKEY_SEED). Unset with the embedded broker: the service uses the per-role passwords it
   * generated under DATA_DIR.
   */
  natsCredentials: NatsCredentials | undefined;
  /** Unset: use PGlite under DATA_DIR/pg. */
  databaseUrl: string | undefined;
  dataDir: string;
  /** Unset: generated once under DATA_DIR in embedded mode; required otherwise (see auth-secret.ts). */
  authSecret: string | undefined;
  /** AUTH_MAX_TTL: the longest lifetime (exp − iat) a bearer token may claim; `token --ttl` refuses more. */
  authMaxTtlMs: number;
  /** AUTH_ISSUER: when set, tokens must carry this `iss` (and `token` sets it). */
  authIssuer: string | undefined;
  /** AUTH_AUDIENCE: when set, tokens must carry this `aud` (and `token` sets it). */
  authAudience: string | undefined;
  /** AUTH_JWKS: public keys (a JWKS file path or an https URL) for ES256 / EdDSA / RS256 tokens. */
  authJwks: string | undefined;
  /** Unset: lease a free snowflake worker id from NATS (see worker-lease.ts). */
  workerId: number | undefined;
  /** DUPLICATE_WINDOW: SEQUENCE's duplicate window (the broker drops an intake re-publish of the same referenceId). */
  duplicateWindowMs: number;
  /**
   * TRADING_DUPLICATE_WINDOW: TRADING's duplicate window. Only the sequencer publishes there, and it re-publishes
   * only what catch-up found missing after a failure, so the window needs to cover a batch still in flight then,
   * not a client's retry; nats-server holds every msg id of it (docs/performance.md, "the duplicate windows").
   */
  tradingDuplicateWindowMs: number;
  /** Replicas of the SEQUENCE and TRADING streams (and the KV bucket): 1 on one server, 3 on a cluster. */
  streamReplicas: number;
  /**
   * TRADING_MAX_AGE: TRADING drops messages older than this (unset: keeps them forever). With this or
   * TRADING_MAX_BYTES, TRADING discards its oldest messages instead of refusing a publish; the events stay in
   * PostgreSQL (GET /events). See docs/storage.md.
   */
  tradingMaxAgeMs?: number;
  /** TRADING_MAX_BYTES: TRADING keeps at most this many bytes, dropping its oldest messages (unset: unlimited). */
  tradingMaxBytes?: number;
  /**
   * INTAKE_MAX_BYTES: SEQUENCE holds at most this many bytes (unset: unlimited); when full it refuses new intake
   * (the API answers 503) rather than dropping anything not yet sequenced.
   */
  intakeMaxBytes?: number;
  /** How long an Idempotency-Key answers with the first answer (the KV bucket's TTL). */
  idempotencyWindowMs: number;
  publishTimeoutMs: number;
  batchSize: number;
  /** Most messages in one batch when a backlog is buffered (≥ batchSize): bigger batches drain faster. */
  maxBatchSize: number;
  fetchWaitMs: number;
  ackWaitMs: number;
  maxAckPending: number;
  /**
   * SEQUENCER_PREFETCH: messages the intake consumer keeps pulled ahead of the sequencer (its pull requests'
   * max_messages); two batches by default, so the next batch is already here when the current one is taken.
   */
  intakePrefetch: number;
  /** SEQUENCER_PULL_EXPIRES: lifetime of each pull request (intake-consumer.ts says why it is short). */
  pullExpiresMs: number;
  /** SEQUENCER_CATCH_UP_PAGE: events read from the log per page when republishing what TRADING lacks. */
  catchUpPageSize: number;
  /** SEQUENCER_KEEP_ALIVE: how often a batch in hand is reported as still being worked on (under ack_wait). */
  keepAliveMs: number;
  /**
   * WRITER_LEASE_TTL: a writer that makes no progress for this long (died, frozen, blocked event loop) is replaced
   * by a standby, which ends its database session (writer-lease.ts).
   */
  writerLeaseTtlMs: number;
  /** WRITER_LEASE_POLL: how often a standby tries the writer lock. */
  writerLeasePollMs: number;
  /** WRITER_LEASE_HEARTBEAT: how often the writer renews its lease (or checks it still holds the lock). */
  writerLeaseHeartbeatMs: number;
  /** NATS_RECONNECT_WAIT: the pause between reconnect attempts of the roles' NATS connections. */
  natsReconnectWaitMs: number;
  /** STATEMENT_TIMEOUT: statement_timeout of the sequencer's writer session (a stuck append fails, not hangs). */
  statementTimeoutMs: number;
  /** QUERY_TIMEOUT: statement_timeout of the shared pool (the API's lookups and the sequencer's filter reads). */
  queryTimeoutMs: number;
  bodyLimitBytes: number;
  /** OPS_BODY_LIMIT_BYTES: request body limit of the ops listener (its routes take no body). */
  opsBodyLimitBytes: number;
  /** Write requests per user (token bucket, burst = count); null = off. Per process. */
  rateLimit: Rate | null;
  /** Failed authentications (401) per client IP before that IP gets 429; null = off. Per process. */
  authFailureLimit: Rate | null;
  /** How long a request body may take to arrive (408 after). */
  bodyTimeoutMs: number;
  /** Most HTTP requests in progress at once (503 beyond); 0 = no cap. */
  maxInFlight: number;
  /** One aggregated log line of refused requests (401/403/429) per this interval at most. */
  auditIntervalMs: number;
  logLevel: "info" | "warn" | "error" | "silent";
  /** Fault injection for tests: die (SIGKILL) at this point of the FAILPOINT_AFTER-th batch that reaches it. */
  failpoint: Failpoint | undefined;
  failpointAfter: number;
  /** FAILPOINT_STALL: at the failpoint, block the event loop this long (a hung process) instead of dying. */
  failpointStallMs: number | undefined;
};

const FAILPOINTS: readonly Failpoint[] = ["after-commit", "after-publish", "mid-ack"];

export class ConfigError extends Error {
  override readonly name = "ConfigError";
}

type Env = Record<string, string | undefined>;

function integer(env: Env, name: string, fallback: number, min: number, max: number): number {
  const raw = env[name];
  if (raw === undefined || raw === "") return fallback;
  if (!/^\d+$/.test(raw) || Number(raw) < min || Number(raw) > max) {
    throw new ConfigError(`${name} must be an integer from ${min} to ${max} (got ${JSON.stringify(raw)})`);
  }
  return Number(raw);
}

/** The smallest stream byte limit accepted (1 MiB): far above any one message (BODY_LIMIT_BYTES, the intake cap). */
export const MIN_STREAM_BYTES = 1_048_576;

/**
 * A byte limit: unset or "" → undefined (no limit); else a plain whole number of bytes (no suffix: "10GB" is
 * refused, not guessed as 10^10 or 2^30·10) from MIN_STREAM_BYTES up.
 */
function byteLimit(env: Env, name: string): number | undefined {
  const raw = env[name];
  if (raw === undefined || raw === "") return undefined;
  const value = Number(raw);
  if (!/^\d+$/.test(raw) || !Number.isSafeInteger(value) || value < MIN_STREAM_BYTES) {
    throw new ConfigError(
      `${name} must be a whole number of bytes, at least ${MIN_STREAM_BYTES} (e.g. 10737418240 for 10 GiB), or unset for no limit (got ${JSON.stringify(raw)})`,
    );
  }
  return value;
}

const UNIT_MS: Record<string, number> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000 };

/** Durations like "500ms", "30s", "2m", "1h". */
export function parseDuration(raw: string): number | null {
  const match = /^(\d+)(ms|s|m|h)$/.exec(raw.trim());
  if (!match?.[1] || !match[2]) return null;
  return Number(match[1]) * (UNIT_MS[match[2]] ?? Number.NaN);
}

function duration(env: Env, name: string, fallback: string, minMs: number, maxMs: number): number {
  const raw = env[name] || fallback;
  const ms = parseDuration(raw);
  if (ms === null || ms < minMs || ms > maxMs) {
    throw new ConfigError(
      `${name} must be a duration like "500ms", "30s" or "2m" between ${minMs} ms and ${maxMs} ms (got ${JSON.stringify(raw)})`,
    );
  }
  return ms;
}

/** "<count>/<duration>" (e.g. "50/1s", "20/1m"), or "off" → null. */
function rate(env: Env, name: string, fallback: string): Rate | null {
  const raw = (env[name] || fallback).trim();
  if (raw === "off") return null;
  const match = /^(\d+)\/(\d+(?:ms|s|m|h))$/.exec(raw);
  const count = Number(match?.[1]);
  const perMs = match?.[2] ? parseDuration(match[2]) : null;
  if (
    !match ||
    !Number.isSafeInteger(count) ||
    count < 1 ||
    count > 1_000_000 ||
    !perMs ||
    perMs > 86_400_000
  ) {
    throw new ConfigError(
      `${name} must be "<count>/<duration>" like "50/1s" or "20/1m" (count 1 to 1000000, duration up to 24h), or "off" (got ${JSON.stringify(raw)})`,
    );
  }
  return { count, perMs };
}

function url(env: Env, name: string, protocols: string[]): string | undefined {
  const raw = env[name];
  if (raw === undefined || raw === "") return undefined;
  let parsed: URL;
  try {
    parsed = new URL(raw);
  } catch {
    throw new ConfigError(`${name} must be a URL (${protocols.join(", ")})`);
  }
  if (!protocols.includes(parsed.protocol)) {
    throw new ConfigError(`${name} must use one of ${protocols.join(", ")} (got ${parsed.protocol})`);
  }
  return raw;
}

/** At most one way to authenticate, complete, and never with the embedded broker (it has its own). */
function natsCredentials(env: Env, natsUrl: string | undefined): NatsCredentials | undefined {
  const given = ["NATS_CREDS", "NATS_USER", "NATS_TOKEN", "NATS_NKEY_SEED"].filter((name) => env[name]);
  if (env.NATS_PASSWORD && !env.NATS_USER) throw new ConfigError("NATS_PASSWORD is set but NATS_USER is not");
  if (given.length === 0) return undefined;
  if (given.length > 1) {
    throw new ConfigError(`set one way to authenticate to NATS, not ${given.join(" and ")}`);
  }
  if (!natsUrl) {
    throw new ConfigError(
      `${given[0]} is set but NATS_URL is not: the embedded broker uses the credentials it generates under DATA_DIR`,
    );
  }
  if (env.NATS_CREDS) {
    if (!existsSync(env.NATS_CREDS)) throw new ConfigError(`NATS_CREDS names a file that does not exist`);
    return { kind: "creds", file: env.NATS_CREDS };
  }
  if (env.NATS_USER) {
    if (!env.NATS_PASSWORD) throw new ConfigError("NATS_USER is set but NATS_PASSWORD is not");
    return { kind: "user", user: env.NATS_USER, password: env.NATS_PASSWORD };
  }
  if (env.NATS_TOKEN) return { kind: "token", token: env.NATS_TOKEN };
  const seed = env.NATS_NKEY_SEED ?? "";
  // A user seed starts with "SU"; anything else (or a typo) would only fail later as a refused connection.
  if (publicKeyOf(seed) === null || !seed.trim().startsWith("SU")) {
    throw new ConfigError("NATS_NKEY_SEED must be a user nkey seed (starts with SU)");
  }
  return { kind: "nkey", seed };
}

/**
 * Example AUTH_SECRET values shown to users (compose.yaml used to ship the first): a deployment left on one lets
 * anyone who read the docs mint admin tokens, so they are refused like a short secret.
 */
export const EXAMPLE_AUTH_SECRETS: readonly string[] = ["change-me-change-me-change-me-change-me"];

/** Shortest AUTH_SECRET accepted, in bytes (an HS256 key should be at least the hash's 32 bytes). */
export const MIN_AUTH_SECRET_BYTES = 32;

/**
 * Refuses a weak AUTH_SECRET with one line naming AUTH_SECRET (never echoing it); `source` says where it came
 * from when that is not the environment (the generated file under DATA_DIR).
 */
export function checkAuthSecret(secret: string, source = "AUTH_SECRET"): void {
  const make = "generate one with `openssl rand -base64 48`";
  if (secret.length === 0) {
    throw new ConfigError(
      `AUTH_SECRET: ${source} is empty; delete it to have a new secret generated, or write one of at least ${MIN_AUTH_SECRET_BYTES} bytes`,
    );
  }
  if (EXAMPLE_AUTH_SECRETS.includes(secret.trim())) {
    throw new ConfigError(
      `AUTH_SECRET: ${source} is the example value from the documentation, which anyone can sign tokens with; ${make}`,
    );
  }
  const bytes = new TextEncoder().encode(secret).length;
  if (bytes < MIN_AUTH_SECRET_BYTES) {
    throw new ConfigError(
      `AUTH_SECRET: ${source} must be at least ${MIN_AUTH_SECRET_BYTES} bytes, an HS256 key (got ${bytes}); ${make}`,
    );
  }
}

/** AUTH_JWKS: a path to an existing file, or an https URL (http only on loopback, for tests and sidecars). */
function jwksSource(env: Env): string | undefined {
  const raw = env.AUTH_JWKS;
  if (raw === undefined || raw === "") return undefined;
  if (!/^[A-Za-z][A-Za-z0-9+.-]*:\/\//.test(raw)) {
    if (!existsSync(raw)) throw new ConfigError("AUTH_JWKS names a file that does not exist");
    return raw;
  }
  let parsed: URL;
  try {
    parsed = new URL(raw);
  } catch {
    throw new ConfigError("AUTH_JWKS must be a JWKS file path or an https:// URL");
  }
  const loopback = ["127.0.0.1", "localhost", "[::1]"].includes(parsed.hostname);
  if (parsed.protocol !== "https:" && !(parsed.protocol === "http:" && loopback)) {
    throw new ConfigError(`AUTH_JWKS must be an https:// URL or a file path (got ${parsed.protocol})`);
  }
  return raw;
}

export function loadConfig(env: Env = process.env): Config {
  const authSecret = env.AUTH_SECRET || undefined;
  if (authSecret !== undefined) checkAuthSecret(authSecret);
  const logLevel = env.LOG_LEVEL || "info";
  if (logLevel !== "info" && logLevel !== "warn" && logLevel !== "error" && logLevel !== "silent") {
    throw new ConfigError(`LOG_LEVEL must be info, warn, error or silent (got ${JSON.stringify(logLevel)})`);
  }
  const failpoint = env.FAILPOINT || undefined;
  if (failpoint !== undefined && !FAILPOINTS.includes(failpoint as Failpoint)) {
    throw new ConfigError(
      `FAILPOINT must be one of ${FAILPOINTS.join(", ")} (got ${JSON.stringify(failpoint)})`,
    );
  }
  const batchSize = integer(env, "SEQUENCER_BATCH_SIZE", 1000, 1, 5000);
  const maxBatchSize = integer(env, "SEQUENCER_MAX_BATCH_SIZE", batchSize, 1, 20_000);
  if (maxBatchSize < batchSize) {
    throw new ConfigError(
      `SEQUENCER_MAX_BATCH_SIZE must be at least SEQUENCER_BATCH_SIZE (${batchSize}) (got ${maxBatchSize})`,
    );
  }
  const fetchWaitMs = duration(env, "SEQUENCER_FETCH_WAIT", "1s", 10, 60_000);
  const writerLeaseTtlMs = duration(env, "WRITER_LEASE_TTL", "10s", 2_000, 600_000);
  // An idle sequencer shows progress once per fetch wait: a few of them must fit in one lease.
  if (fetchWaitMs * 3 > writerLeaseTtlMs) {
    throw new ConfigError(
      `SEQUENCER_FETCH_WAIT (${fetchWaitMs} ms) must be at most a third of WRITER_LEASE_TTL (${writerLeaseTtlMs} ms)`,
    );
  }
  const ackWaitMs = duration(env, "SEQUENCER_ACK_WAIT", "10s", 1_000, 3_600_000);
  // Often enough that a batch in hand is never redelivered while it is being worked on: a third of ack_wait.
  const keepAliveMs = duration(env, "SEQUENCER_KEEP_ALIVE", `${Math.floor(ackWaitMs / 3)}ms`, 50, 3_600_000);
  if (keepAliveMs >= ackWaitMs) {
    throw new ConfigError(
      `SEQUENCER_KEEP_ALIVE (${keepAliveMs} ms) must be less than SEQUENCER_ACK_WAIT (${ackWaitMs} ms)`,
    );
  }
  const writerLeaseHeartbeatMs = duration(
    env,
    "WRITER_LEASE_HEARTBEAT",
    `${Math.min(1_000, Math.floor(writerLeaseTtlMs / 5))}ms`,
    50,
    300_000,
  );
  // A renewal that fails once must leave time for the next before the lease runs out.
  if (writerLeaseHeartbeatMs * 2 > writerLeaseTtlMs) {
    throw new ConfigError(
      `WRITER_LEASE_HEARTBEAT (${writerLeaseHeartbeatMs} ms) must be at most half of WRITER_LEASE_TTL (${writerLeaseTtlMs} ms)`,
    );
  }
  // 30 s covers a client's retry after the API's 503 (Retry-After 1–5 s) with the same Idempotency-Key; a later one
  // is filtered by the sequencer. nats-server holds every msg id of a window: at ~5k events/s NATS's usual 2 min cost
  // it ~350 MB and 50–130 ms tail spikes (docs/performance.md, "the duplicate windows").
  const duplicateWindowMs = duration(env, "DUPLICATE_WINDOW", "30s", 1_000, 7 * 24 * 3_600_000);
  const tradingDuplicateWindowMs = duration(
    env,
    "TRADING_DUPLICATE_WINDOW",
    "10s",
    1_000,
    7 * 24 * 3_600_000,
  );
  // Up to 10 years (in hours: "8760h" is a year); JetStream refuses a max age below the duplicate window.
  const tradingMaxAgeMs = env.TRADING_MAX_AGE
    ? duration(env, "TRADING_MAX_AGE", "0s", 60_000, 87_600 * 3_600_000)
    : undefined;
  if (tradingMaxAgeMs !== undefined && tradingMaxAgeMs < tradingDuplicateWindowMs) {
    throw new ConfigError(
      `TRADING_MAX_AGE (${tradingMaxAgeMs} ms) must be at least TRADING_DUPLICATE_WINDOW (${tradingDuplicateWindowMs} ms)`,
    );
  }
  const natsUrl = url(env, "NATS_URL", ["nats:", "tls:", "ws:", "wss:"]);
  return {
    port: integer(env, "PORT", 3000, 0, 65535),
    host: env.HOST || "127.0.0.1",
    opsPort: integer(env, "OPS_PORT", 9464, 0, 65535),
    opsHost: env.OPS_HOST || "127.0.0.1",
    natsUrl,
    natsCredentials: natsCredentials(env, natsUrl),
    databaseUrl: url(env, "DATABASE_URL", ["postgres:", "postgresql:"]),
    dataDir: env.DATA_DIR || "./data",
    authSecret,
    authMaxTtlMs: duration(env, "AUTH_MAX_TTL", "24h", 60_000, 30 * 24 * 3_600_000),
    authIssuer: env.AUTH_ISSUER || undefined,
    authAudience: env.AUTH_AUDIENCE || undefined,
    authJwks: jwksSource(env),
    workerId: env.WORKER_ID ? integer(env, "WORKER_ID", 0, 0, MAX_WORKER_ID) : undefined,
    duplicateWindowMs,
    tradingDuplicateWindowMs,
    streamReplicas: integer(env, "STREAM_REPLICAS", 1, 1, 5),
    tradingMaxAgeMs,
    tradingMaxBytes: byteLimit(env, "TRADING_MAX_BYTES"),
    intakeMaxBytes: byteLimit(env, "INTAKE_MAX_BYTES"),
    idempotencyWindowMs: duration(env, "IDEMPOTENCY_WINDOW", "24h", 1_000, 30 * 24 * 3_600_000),
    publishTimeoutMs: duration(env, "PUBLISH_TIMEOUT", "5s", 100, 60_000),
    batchSize,
    // Batches above batchSize only when that much is buffered; off by default (did not pay here: docs/performance.md).
    maxBatchSize,
    fetchWaitMs,
    // As long as the writer lease: a standby that took over from a frozen writer gets the messages that writer held
    // once this runs out (the sequencer keeps the messages it works on alive meanwhile).
    ackWaitMs,
    // A few batches in hand are enough to keep the pipeline fed; more only costs memory (docs/performance.md).
    maxAckPending: integer(env, "SEQUENCER_MAX_ACK_PENDING", 4_000, 1, 1_000_000),
    intakePrefetch: integer(env, "SEQUENCER_PREFETCH", batchSize * 2, 1, 1_000_000),
    // nats-server refuses a pull request that expires in under a second.
    pullExpiresMs: duration(env, "SEQUENCER_PULL_EXPIRES", "5s", 1_000, 300_000),
    catchUpPageSize: integer(env, "SEQUENCER_CATCH_UP_PAGE", 1_000, 1, 100_000),
    keepAliveMs,
    writerLeaseTtlMs,
    writerLeasePollMs: duration(env, "WRITER_LEASE_POLL", "500ms", 10, 60_000),
    writerLeaseHeartbeatMs,
    natsReconnectWaitMs: duration(env, "NATS_RECONNECT_WAIT", "500ms", 10, 60_000),
    // Far above a healthy append (milliseconds) or a slow checkpoint's stall (seconds); a statement stuck longer
    // fails and is retried instead of holding the writer (and shutdown) behind it.
    statementTimeoutMs: duration(env, "STATEMENT_TIMEOUT", "30s", 1_000, 3_600_000),
    queryTimeoutMs: duration(env, "QUERY_TIMEOUT", "10s", 500, 3_600_000),
    bodyLimitBytes: integer(env, "BODY_LIMIT_BYTES", 16_384, 256, 10_485_760),
    opsBodyLimitBytes: integer(env, "OPS_BODY_LIMIT_BYTES", 65_536, 1_024, 10_485_760),
    // 50/s with a burst of 50 per user: far above what a person or a normal client sends, and a burst like 120
    // orders at once is cut after the 50th (README, "Limits").
    rateLimit: rate(env, "RATE_LIMIT", "50/1s"),
    authFailureLimit: rate(env, "AUTH_FAILURE_LIMIT", "20/1m"),
    bodyTimeoutMs: duration(env, "BODY_TIMEOUT", "10s", 100, 600_000),
    maxInFlight: integer(env, "MAX_IN_FLIGHT", 4_096, 0, 1_000_000),
    auditIntervalMs: duration(env, "AUDIT_INTERVAL", "10s", 100, 3_600_000),
    logLevel,
    failpoint: failpoint as Failpoint | undefined,
    failpointAfter: integer(env, "FAILPOINT_AFTER", 1, 1, 1_000_000),
    failpointStallMs: env.FAILPOINT_STALL ? duration(env, "FAILPOINT_STALL", "0s", 1, 600_000) : undefined,
  };
}
