/**
 * Builds the API role through the same builder as src/service.ts (src/composition/api-role.ts: the publisher that
 * refuses while disconnected, the idempotency store, the lookup, the HTTP app), against test-owned dependencies: a
 * throwaway nats-server (JetStream) and a fresh PostgreSQL database. Only readiness is the test's (setReadiness).
 * Requests are driven in-process through app.handle, and what the API published is read back from SEQUENCE.
 */
import { expect } from "bun:test";
import type { JetStreamClient, JetStreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import type { Database } from "../../src/adapters/db/client.ts";
import { DrizzleEventStore } from "../../src/adapters/db/event-store.ts";
import type { createHttpApp, HttpLimits } from "../../src/adapters/http/app.ts";
import type { ReadinessCheck } from "../../src/adapters/http/ops.ts";
import { Metrics } from "../../src/adapters/metrics.ts";
import { JetStreamIntakePublisher } from "../../src/adapters/nats/intake-publisher.ts";
import { INTAKE_STREAM } from "../../src/adapters/nats/topology.ts";
import { TokenService } from "../../src/app/auth.ts";
import { openApiRole } from "../../src/composition/api-role.ts";
import {
  connectRole,
  openMigratedDatabase,
  provisionTopology,
} from "../../src/composition/infrastructure.ts";
import type { Config } from "../../src/config.ts";
import type { Logger } from "../../src/logger.ts";
import { getPostgres, type NatsServerHandle, startNats } from "../support/services.ts";
import { type Stack, stackConfig } from "../support/stack.ts";
import { within } from "../support/wait.ts";

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
  /** What the API role was built with. */
  config: Config;
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
    const config = stackConfig(nats.url, await (await getPostgres()).createDatabase(), {
      maxAckPending: 1_000,
      idempotencyWindowMs: 60_000,
      workerId: 1,
      publishTimeoutMs: options.publishTimeoutMs ?? 2_000,
      bodyLimitBytes: options.bodyLimitBytes ?? 16_384,
      natsReconnectWaitMs: 250,
      ...HARNESS_LIMITS,
      ...options.limits,
    });
    const log = memoryLogger();
    const connection = await connectRole(nats.url, {}, "http-api-int-test", config, log);
    cleanups.push(() => connection.nc.close());
    const { nc, js, jsm } = connection;
    await provisionTopology(connection, config, log, { buckets: true });
    const database = await openMigratedDatabase(config, log);
    cleanups.push(() => database.close());
    const store = new DrizzleEventStore(database.db);

    const tokens = new TokenService(SECRET);
    const metrics = new Metrics();
    const api = await openApiRole({ config, connection, tokens, store, metrics, log });
    cleanups.push(() => api.stop());
    let readiness: () => Promise<Checks> = async () => ({ nats: { ok: true }, database: { ok: true } });
    const app = api.app(() => readiness());

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
      config,
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

/** The harness's own connections and database as a Stack, so that a sequencer numbers what its API accepts. */
export function harnessStack(h: Harness): Stack {
  return {
    nc: h.nc,
    js: h.js,
    jsm: h.jsm,
    database: h.database,
    store: h.store,
    intake: new JetStreamIntakePublisher(h.nc, 5_000),
    config: h.config,
    close: async () => {},
  };
}

/** An order body POST /orders accepts. */
export const validOrder = { direction: "BUY", price: "101.25", quantity: "3" };
/** Bodies POST /deposits and POST /transfers accept (admin routes). */
export const deposit = { userId: "5", assetId: "6", amount: "100.50" };
export const transfer = { fromUserId: "5", toUserId: "7", assetId: "6", amount: "12.25" };

export function postOrder(body: unknown, options: Parameters<typeof jsonRequest>[3] = {}): Request {
  return jsonRequest("POST", "/orders", body, options);
}

/** A request as a client sends it: a JSON body or none, a token (or a raw Authorization), an Idempotency-Key. */
export function request(
  method: string,
  path: string,
  body: unknown,
  options: { token?: string; key?: string; authorization?: string } = {},
): Request {
  const req =
    body === undefined
      ? new Request(`${BASE}${path}`, {
          method,
          headers:
            options.authorization !== undefined
              ? { authorization: options.authorization }
              : options.token
                ? { authorization: `Bearer ${options.token}` }
                : {},
        })
      : jsonRequest(method, path, body, {
          ...(options.token === undefined ? {} : { token: options.token }),
          ...(options.authorization === undefined ? {} : { authorization: options.authorization }),
        });
  if (options.key !== undefined) req.headers.set("idempotency-key", options.key);
  return req;
}

let keyCounter = 0;
/** A fresh Idempotency-Key, unique within the run. */
export const freshKey = (label = "k") => `${label}-${Date.now().toString(36)}-${++keyCounter}`;

/** Asserts an ISO-8601 UTC timestamp (as the API writes them) within a minute of now. */
export function expectRecentIso(value: string | undefined): void {
  expect(typeof value).toBe("string");
  const time = Date.parse(value ?? "");
  expect(new Date(time).toISOString()).toBe(value ?? "");
  expect(Math.abs(Date.now() - time)).toBeLessThan(60_000);
}

/** A message on SEQUENCE: its subject, Nats-Msg-Id, JSON body and stream position. */
export type StoredIntake = {
  subject: string;
  msgId: string | undefined;
  body: Record<string, string>;
  seq: number;
};

/**
 * The in-process request helpers the HTTP tests share, bound to the harness a test file starts in beforeAll (so
 * `harness` is a getter: the harness does not exist yet when the file is loaded).
 */
export function harnessRequests(harness: () => Harness) {
  /** Drives one request through `app` (the harness's by default); fails if it does not answer within 10 s. */
  function handle(
    req: Request,
    app: { handle(r: Request): Promise<Response> } = harness().app,
  ): Promise<Response> {
    return within(10_000, `${req.method} ${new URL(req.url).pathname}`, () => app.handle(req));
  }

  async function intakeAt(seq: number): Promise<StoredIntake> {
    const msg = await harness().jsm.streams.getMessage(INTAKE_STREAM, { seq });
    if (!msg) throw new Error(`no SEQUENCE message at ${seq}`);
    return { subject: msg.subject, msgId: msg.header.get("Nats-Msg-Id"), body: msg.json(), seq };
  }

  /** Sends a request that must be refused with `status`/`code` (and `field`), and must publish nothing. */
  async function expectRefused(
    req: Request,
    status: number,
    code: string,
    field?: string,
  ): Promise<{ res: Response; error: ErrorBody["error"] }> {
    const before = await harness().intakeCount();
    const res = await handle(req);
    const error = await readError(res);
    expect({ status: res.status, code: error.code, field: error.field }).toEqual({ status, code, field });
    expect(await harness().intakeCount()).toBe(before);
    return { res, error };
  }

  /** Sends an accepted request: 202, exactly one new SEQUENCE message; returns the answer and that message. */
  async function expectAccepted(
    req: Request,
  ): Promise<{ answer: Record<string, string>; stored: StoredIntake }> {
    const before = await harness().intakeCount();
    const res = await handle(req);
    const text = await res.text();
    expect({ status: res.status, text }).toEqual({ status: 202, text: expect.any(String) });
    expect(res.headers.get("content-type") ?? "").toMatch(/^application\/json/);
    const answer = JSON.parse(text) as Record<string, string>;
    expect(await harness().intakeCount()).toBe(before + 1);
    const stored = await intakeAt(before + 1);
    expect(stored.msgId).toBe(answer.referenceId);
    expect(stored.body.referenceId).toBe(answer.referenceId);
    return { answer, stored };
  }

  return { handle, intakeAt, expectRefused, expectAccepted };
}
