/**
 * Environment → typed configuration. Every bad value stops start-up with one line naming the variable.
 */
import type { Failpoint } from "./app/sequencer.ts";
import { MAX_WORKER_ID } from "./domain/ids.ts";

export type Role = "all" | "api" | "sequencer";

export type Config = {
  port: number;
  host: string;
  /** Unset: start an embedded nats-server child. ws:// or wss:// connects over WebSocket (edge runtimes). */
  natsUrl: string | undefined;
  /** Unset: use PGlite under DATA_DIR/pg. */
  databaseUrl: string | undefined;
  dataDir: string;
  /** Unset: generated once under DATA_DIR in embedded mode; required otherwise (see auth-secret.ts). */
  authSecret: string | undefined;
  /** Unset: lease a free snowflake worker id from NATS (see worker-lease.ts). */
  workerId: number | undefined;
  duplicateWindowMs: number;
  /** Replicas of the SEQUENCE and TRADING streams (and the KV bucket): 1 on one server, 3 on a cluster. */
  streamReplicas: number;
  /** How long an Idempotency-Key answers with the first answer (the KV bucket's TTL). */
  idempotencyWindowMs: number;
  publishTimeoutMs: number;
  batchSize: number;
  /** Most messages in one batch when a backlog is buffered (≥ batchSize): bigger batches drain faster. */
  maxBatchSize: number;
  fetchWaitMs: number;
  ackWaitMs: number;
  maxAckPending: number;
  bodyLimitBytes: number;
  logLevel: "info" | "warn" | "error" | "silent";
  /** Fault injection for tests: die (SIGKILL) at this point of the FAILPOINT_AFTER-th batch that reaches it. */
  failpoint: Failpoint | undefined;
  failpointAfter: number;
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

export function loadConfig(env: Env = process.env): Config {
  const authSecret = env.AUTH_SECRET || undefined;
  if (authSecret !== undefined && authSecret.length < 32) {
    throw new ConfigError("AUTH_SECRET must be at least 32 characters (an HS256 key)");
  }
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
  return {
    port: integer(env, "PORT", 3000, 0, 65535),
    host: env.HOST || "127.0.0.1",
    natsUrl: url(env, "NATS_URL", ["nats:", "tls:", "ws:", "wss:"]),
    databaseUrl: url(env, "DATABASE_URL", ["postgres:", "postgresql:"]),
    dataDir: env.DATA_DIR || "./data",
    authSecret,
    workerId: env.WORKER_ID ? integer(env, "WORKER_ID", 0, 0, MAX_WORKER_ID) : undefined,
    duplicateWindowMs: duration(env, "DUPLICATE_WINDOW", "2m", 1_000, 7 * 24 * 3_600_000),
    streamReplicas: integer(env, "STREAM_REPLICAS", 1, 1, 5),
    idempotencyWindowMs: duration(env, "IDEMPOTENCY_WINDOW", "24h", 1_000, 30 * 24 * 3_600_000),
    publishTimeoutMs: duration(env, "PUBLISH_TIMEOUT", "5s", 100, 60_000),
    batchSize,
    // Batches above batchSize only when that much is buffered; off by default (did not pay here: docs/performance.md).
    maxBatchSize,
    fetchWaitMs: duration(env, "SEQUENCER_FETCH_WAIT", "1s", 10, 60_000),
    ackWaitMs: duration(env, "SEQUENCER_ACK_WAIT", "30s", 1_000, 3_600_000),
    // A few batches in hand are enough to keep the pipeline fed; more only costs memory (docs/performance.md).
    maxAckPending: integer(env, "SEQUENCER_MAX_ACK_PENDING", 4_000, 1, 1_000_000),
    bodyLimitBytes: integer(env, "BODY_LIMIT_BYTES", 16_384, 256, 10_485_760),
    logLevel,
    failpoint: failpoint as Failpoint | undefined,
    failpointAfter: integer(env, "FAILPOINT_AFTER", 1, 1, 1_000_000),
  };
}
