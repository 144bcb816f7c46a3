/**
 * Builds the HTTP application the way src/service.ts does, but against test-owned dependencies: a throwaway
 * nats-server (JetStream) and a fresh PostgreSQL database. Requests are driven in-process through app.handle,
 * and what the API published is read back from the SEQUENCE stream.
 */
import { expect } from "bun:test";
import { type JetStreamClient, type JetStreamManager, jetstream, jetstreamManager } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { type Database, openDatabase } from "../../src/adapters/db/client.ts";
import { DrizzleEventStore } from "../../src/adapters/db/event-store.ts";
import { createHttpApp, type HttpLimits } from "../../src/adapters/http/app.ts";
import type { ReadinessCheck } from "../../src/adapters/http/ops.ts";
import { Metrics } from "../../src/adapters/metrics.ts";
import { KvIdempotencyStore } from "../../src/adapters/nats/idempotency-kv.ts";
import { JetStreamIntakeLookup } from "../../src/adapters/nats/intake-lookup.ts";
import { JetStreamIntakePublisher } from "../../src/adapters/nats/intake-publisher.ts";
import { ensureTopology, INTAKE_STREAM } from "../../src/adapters/nats/topology.ts";
import { TokenService } from "../../src/app/auth.ts";
import { IntakeService } from "../../src/app/intake.ts";
import { SnowflakeGenerator } from "../../src/domain/ids.ts";
import type { Logger } from "../../src/logger.ts";
import { getPostgres, type NatsServerHandle, startNats } from "../support/services.ts";
import type { Stack } from "../support/stack.ts";

export const SECRET = "x".repeat(40);
export const BASE = "http://localhost";

export type Checks = Awaited<ReturnType<ReadinessCheck>>;

/** Collects what the app logs instead of writing to stderr, so a test can look at it if it wants. */
export type MemoryLogger = Logger & { lines: { level: string; msg: string; fields?: unknown }[] };

export function memoryLogger(): MemoryLogger {
  const lines: MemoryLogger["lines"] = [];
  const make = (): MemoryLogger => ({
    lines,
    info: (msg, fields) => lines.push({ level: "info", msg, fields }),
    warn: (msg, fields) => lines.push({ level: "warn", msg, fields }),
    error: (msg, fields) => lines.push({ level: "error", msg, fields }),
    child: () => make(),
  });
  return make();
}

export type Harness = {
  app: ReturnType<typeof createHttpApp>;
  metrics: Metrics;
  nats: NatsServerHandle;
  nc: NatsConnection;
  jsm: JetStreamManager;
  js: JetStreamClient;
  database: Database;
  store: DrizzleEventStore;
  tokens: TokenService;
  log: MemoryLogger;
  /** What GET /readyz reports; tests replace it. */
  setReadiness(checks: Checks | (() => Promise<Checks>)): void;
  /** Messages currently stored on SEQUENCE. */
  intakeCount(): Promise<number>;
  close(): Promise<void>;
};

/**
 * RATE_LIMIT and AUTH_FAILURE_LIMIT off unless a test asks: the tests on this harness are about other things and
 * send many requests as one user (and, in-process, from no address). http-hardening turns them on.
 */
export const HARNESS_LIMITS: HttpLimits = {
  rateLimit: null,
  authFailureLimit: null,
  bodyTimeoutMs: 10_000,
  auditIntervalMs: 10_000,
};

export async function startHarness(
  options: { publishTimeoutMs?: number; bodyLimitBytes?: number; limits?: Partial<HttpLimits> } = {},
): Promise<Harness> {
  const nats = await startNats();
  const cleanups: (() => Promise<unknown>)[] = [() => nats.stop()];
  const close = async () => {
    for (const cleanup of cleanups.reverse()) await cleanup().catch(() => {});
  };
  try {
    const nc = await connect({
      servers: nats.url,
      name: "http-api-int-test",
      timeout: 5_000,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 250,
    });
    cleanups.push(() => nc.close());
    const jsm = await jetstreamManager(nc);
    const js = jetstream(nc);
    await ensureTopology(jsm, { duplicateWindowMs: 120_000, ackWaitMs: 30_000, maxAckPending: 1_000 });

    const pg = await getPostgres();
    const database = await openDatabase({
      url: await pg.createDatabase(),
      pgliteDir: "/nonexistent/unused-by-postgres",
    });
    cleanups.push(() => database.close());
    await database.migrate();
    const store = new DrizzleEventStore(database.db);

    const tokens = new TokenService(SECRET);
    const intake = new IntakeService(
      new SnowflakeGenerator(1),
      new JetStreamIntakePublisher(js, options.publishTimeoutMs ?? 2_000),
      await KvIdempotencyStore.open(js, 60_000),
      store,
    );
    let readiness: () => Promise<Checks> = async () => ({ nats: { ok: true }, database: { ok: true } });
    const log = memoryLogger();
    const metrics = new Metrics();
    const app = createHttpApp({
      intake,
      tokens,
      store,
      pending: new JetStreamIntakeLookup(jsm),
      metrics,
      readiness: () => readiness(),
      bodyLimitBytes: options.bodyLimitBytes ?? 16_384,
      limits: { ...HARNESS_LIMITS, ...options.limits },
      log,
    });

    return {
      app,
      metrics,
      nats,
      nc,
      jsm,
      js,
      database,
      store,
      tokens,
      log,
      setReadiness(checks) {
        readiness = typeof checks === "function" ? checks : async () => checks;
      },
      async intakeCount() {
        return (await jsm.streams.info(INTAKE_STREAM)).state.messages;
      },
      close,
    };
  } catch (error) {
    await close();
    throw error;
  }
}

/**
 * A request as a real client sends it. A Request built in-process carries no Content-Length (Bun adds it only on
 * the wire), and the app's body guard reads that header, so it is set here from the UTF-8 byte length.
 */
export function jsonRequest(
  method: string,
  path: string,
  body: unknown,
  options: { token?: string; authorization?: string; contentType?: string; raw?: boolean } = {},
): Request {
  const text = options.raw ? String(body) : JSON.stringify(body);
  const headers: Record<string, string> = {
    "content-type": options.contentType ?? "application/json",
    "content-length": String(new TextEncoder().encode(text).byteLength),
  };
  const authorization = options.authorization ?? (options.token ? `Bearer ${options.token}` : undefined);
  if (authorization !== undefined) headers.authorization = authorization;
  return new Request(`${BASE}${path}`, { method, headers, body: text });
}

export type ErrorBody = { error: { code: string; message: string; field?: string } };

export async function readJson(res: Response): Promise<unknown> {
  const text = await res.text();
  try {
    return JSON.parse(text);
  } catch {
    throw new Error(`response ${res.status} is not JSON: ${JSON.stringify(text.slice(0, 300))}`);
  }
}

export async function readError(res: Response): Promise<ErrorBody["error"]> {
  expect(res.headers.get("content-type") ?? "").toMatch(/^application\/json/);
  const body = (await readJson(res)) as ErrorBody;
  expect(typeof body.error?.code).toBe("string");
  expect(typeof body.error?.message).toBe("string");
  expect(Object.keys(body)).toEqual(["error"]);
  return body.error;
}

function base64url(value: unknown): string {
  return Buffer.from(JSON.stringify(value)).toString("base64url");
}

/** An unsigned JWT: {"alg":"none"} header, the claims, and an empty signature. */
export function unsignedToken(claims: Record<string, unknown>): string {
  return `${base64url({ alg: "none", typ: "JWT" })}.${base64url(claims)}.`;
}

/** Runs `fn` and fails if it does not settle within `ms`. */
export async function within<T>(ms: number, what: string, fn: () => Promise<T>): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not finish within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([fn(), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** The harness's own connections and database as a Stack, so that a sequencer numbers what its API accepts. */
export function harnessStack(h: Harness): Stack {
  return {
    nc: h.nc,
    js: h.js,
    jsm: h.jsm,
    database: h.database,
    store: h.store,
    intake: new JetStreamIntakePublisher(h.js, 5_000),
    close: async () => {},
  };
}
