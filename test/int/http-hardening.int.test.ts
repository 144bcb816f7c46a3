/**
 * Abuse limits and hostile input against the production wiring: startService (role api) listening on 127.0.0.1,
 * with its own nats-server and PostgreSQL database, driven over real sockets (fetch, and raw TCP where a client
 * must misbehave: a trickled body, a huge chunked body, another source address).
 *
 * - RATE_LIMIT (default 50/1s per user): 120 orders at once from one user → some 429 + Retry-After, and exactly
 *   as many intake messages as 202s; many users each under the limit → all 202.
 * - AUTH_FAILURE_LIMIT (per client IP): a flood of bad tokens from 127.0.0.2 → 429 for that address (even with a
 *   valid token), while 127.0.0.1 is unaffected.
 * - Hostile input: deep nesting, duplicate keys, oversized bodies (declared and chunked), a body or a query
 *   parameter where none is taken, a repeated query parameter, a trickled body (BODY_TIMEOUT) — each a JSON 4xx,
 *   nothing published.
 * - MAX_IN_FLIGHT: past it, 503 JSON + Retry-After (health exempt).
 * - The audit: refusals as one aggregated line per AUDIT_INTERVAL naming the top offender, never a token, and
 *   counters in /metrics.
 * - /openapi references no external host, and its script is served here.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtemp, rm } from "node:fs/promises";
import { connect as connectTcp, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { jetstreamManager } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { INTAKE_STREAM } from "../../src/adapters/nats/topology.ts";
import { loadConfig } from "../../src/config.ts";
import { type RunningService, startService } from "../../src/service.ts";
import { getPostgres, type NatsServerHandle, startNats } from "../support/services.ts";
import { memoryLogger, readError, SECRET } from "./http-helpers.ts";

const SETUP_TIMEOUT = 60_000;
const TEST_TIMEOUT = 30_000;
const BODY_LIMIT = 16_384;
const BODY_TIMEOUT_MS = 1_500;
const AUDIT_INTERVAL_MS = 500;
const ORDER = JSON.stringify({ direction: "BUY", price: "100.5", quantity: "1" });

let nats: NatsServerHandle;
let databaseUrl = "";
let observer: NatsConnection;
let service: RunningService;
let capped: RunningService;
const dataDirs: string[] = [];
const log = memoryLogger();
let base = "";
let port = 0;
let nextUser = 1_000n;

async function intakeCount(): Promise<number> {
  return (await (await jetstreamManager(observer)).streams.info(INTAKE_STREAM)).state.messages;
}

async function start(extra: Record<string, string>, workerId: string): Promise<RunningService> {
  const dataDir = await mkdtemp(join(tmpdir(), "http-hardening-"));
  dataDirs.push(dataDir);
  const config = loadConfig({
    NATS_URL: nats.url,
    DATABASE_URL: databaseUrl,
    AUTH_SECRET: SECRET,
    HOST: "127.0.0.1",
    PORT: "0",
    OPS_PORT: "0",
    DATA_DIR: dataDir,
    WORKER_ID: workerId,
    BODY_LIMIT_BYTES: String(BODY_LIMIT),
    BODY_TIMEOUT: `${BODY_TIMEOUT_MS}ms`,
    AUDIT_INTERVAL: `${AUDIT_INTERVAL_MS}ms`,
    // RATE_LIMIT and AUTH_FAILURE_LIMIT at their defaults (50/1s, 20/1m).
    ...extra,
  });
  return startService(config, "api", log);
}

beforeAll(async () => {
  nats = await startNats();
  databaseUrl = await (await getPostgres()).createDatabase();
  service = await start({}, "21");
  capped = await start({ MAX_IN_FLIGHT: "3" }, "22");
  base = service.url;
  port = Number(new URL(base).port);
  observer = await connect({ servers: nats.url, timeout: 5_000 });
}, SETUP_TIMEOUT);

afterAll(async () => {
  await service?.stop();
  await capped?.stop();
  await observer?.close();
  await nats?.stop();
  for (const dir of dataDirs) await rm(dir, { recursive: true, force: true });
}, SETUP_TIMEOUT);

/** A user no other test uses, and its token. */
async function freshUser(): Promise<string> {
  nextUser += 1n;
  return (service.tokens as NonNullable<RunningService["tokens"]>).mint(nextUser);
}

function postOrder(token: string, body = ORDER, url = `${base}/orders`): Promise<Response> {
  return fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
    body,
  });
}

/** Reads with an admin token: the read routes may require one (they did not always). */
async function read(path: string): Promise<Response> {
  adminToken ||= await (service.tokens as NonNullable<RunningService["tokens"]>).mint(999n, { admin: true });
  return fetch(`${base}${path}`, { headers: { authorization: `Bearer ${adminToken}` } });
}
let adminToken = "";

async function metric(name: string, labels: string): Promise<number> {
  const text = await (await fetch(`${service.opsUrl}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(`${name}{${labels}}`));
  return line ? Number(line.split(" ").pop()) : 0;
}

// ---------------------------------------------------------------------------------------------------------------
// A raw HTTP/1.1 client: for what fetch will not do (trickle a body, pick the source address, keep sending after
// the answer), bounded in time.
// ---------------------------------------------------------------------------------------------------------------

type RawAnswer = {
  status: number;
  headers: Record<string, string>;
  body: string;
  closed: boolean;
  ms: number;
};

type RawClient = {
  socket: Socket;
  /** Resolves with the first complete answer, or rejects after `timeoutMs`. */
  answer: Promise<RawAnswer>;
  answered: () => boolean;
};

function rawClient(
  head: string,
  options: { localAddress?: string; timeoutMs?: number; targetPort?: number } = {},
): RawClient {
  const started = performance.now();
  const socket = connectTcp({
    host: "127.0.0.1",
    port: options.targetPort ?? port,
    ...(options.localAddress ? { localAddress: options.localAddress } : {}),
  });
  socket.on("error", () => {}); // a reset after the answer is expected when the server stops reading
  let received = Buffer.alloc(0);
  let done = false;
  const answer = new Promise<RawAnswer>((resolve, reject) => {
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no answer within ${options.timeoutMs ?? 10_000} ms`));
    }, options.timeoutMs ?? 10_000);
    const tryParse = (closed: boolean) => {
      const text = received.toString("latin1");
      const end = text.indexOf("\r\n\r\n");
      if (end === -1) return;
      const lines = text.slice(0, end).split("\r\n");
      const headers: Record<string, string> = {};
      for (const line of lines.slice(1)) {
        const i = line.indexOf(":");
        headers[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim();
      }
      const length = Number(headers["content-length"] ?? Number.NaN);
      const body = received.subarray(Buffer.byteLength(text.slice(0, end + 4), "latin1"));
      if (Number.isFinite(length) ? body.length < length : !closed) return;
      done = true;
      clearTimeout(timer);
      resolve({
        status: Number(lines[0]?.split(" ")[1]),
        headers,
        body: body.subarray(0, Number.isFinite(length) ? length : undefined).toString("utf8"),
        closed,
        ms: performance.now() - started,
      });
    };
    socket.on("data", (chunk: Buffer) => {
      received = Buffer.concat([received, chunk]);
      if (!done) tryParse(false);
    });
    socket.on("close", () => {
      if (!done) tryParse(true);
      if (!done) {
        clearTimeout(timer);
        reject(new Error(`connection closed without an answer: ${JSON.stringify(received.toString())}`));
      }
    });
  });
  socket.write(head);
  return { socket, answer, answered: () => done };
}

function closedSoon(socket: Socket, ms: number): Promise<boolean> {
  if (socket.destroyed || socket.readyState === "closed") return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    socket.once("close", () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

function errorOf(answer: RawAnswer): { code: string; message: string; field?: string } {
  expect(answer.headers["content-type"] ?? "").toMatch(/^application\/json/);
  return (JSON.parse(answer.body) as { error: { code: string; message: string; field?: string } }).error;
}

// ---------------------------------------------------------------------------------------------------------------

describe("RATE_LIMIT per user (default 50/1s, burst 50)", () => {
  test(
    "120 orders at once from one user → some 429 with Retry-After; intake grows by exactly the 202s",
    async () => {
      const token = await freshUser();
      const before = await intakeCount();
      const limitedBefore = await metric("http_rate_limited_total", 'limit="user"');
      const answers = await Promise.all(Array.from({ length: 120 }, () => postOrder(token)));
      const accepted = answers.filter((r) => r.status === 202);
      const limited = answers.filter((r) => r.status === 429);
      expect(accepted.length + limited.length).toBe(120);
      expect(accepted.length).toBeGreaterThanOrEqual(50);
      expect(limited.length).toBeGreaterThan(0);
      for (const res of limited) {
        const retryAfter = res.headers.get("retry-after") ?? "";
        expect(retryAfter).toMatch(/^[1-9][0-9]*$/);
        expect((await readError(res)).code).toBe("RATE_LIMITED");
      }
      for (const res of accepted) await res.arrayBuffer();
      expect(await intakeCount()).toBe(before + accepted.length);
      expect(await metric("http_rate_limited_total", 'limit="user"')).toBe(limitedBefore + limited.length);

      // The bucket refills: after Retry-After, the same user is accepted again.
      const wait = Number(limited[0]?.headers.get("retry-after"));
      await Bun.sleep(wait * 1000);
      expect((await postOrder(token)).status).toBe(202);
    },
    TEST_TIMEOUT,
  );

  test(
    "40 users × 5 orders, all at once → all 202",
    async () => {
      const tokens = await Promise.all(Array.from({ length: 40 }, () => freshUser()));
      const before = await intakeCount();
      const answers = await Promise.all(
        tokens.flatMap((token) => Array.from({ length: 5 }, () => postOrder(token))),
      );
      expect(answers.map((r) => r.status)).toEqual(Array(200).fill(202));
      expect(await intakeCount()).toBe(before + 200);
    },
    TEST_TIMEOUT,
  );

  test(
    "reads do not count: 120 GET /events at once from one (admin) token → no 429",
    async () => {
      const answers = await Promise.all(Array.from({ length: 120 }, () => read("/events?limit=1")));
      expect(answers.filter((r) => r.status === 429)).toHaveLength(0);
      expect(answers.filter((r) => r.status === 200)).toHaveLength(120);
    },
    TEST_TIMEOUT,
  );
});

describe("AUTH_FAILURE_LIMIT per client IP (default 20/1m) and the audit", () => {
  test(
    "a flood of bad tokens from 127.0.0.2 → 401 × 20, then 429 for that address; 127.0.0.1 unaffected; one audit line per interval",
    async () => {
      const badToken = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiI5In0.c2VjcmV0LXNpZ25hdHVyZS1uZXZlci1sb2dnZWQ";
      const refusedBefore = await metric("http_refused_total", 'kind="unauthenticated"');
      const authLimitedBefore = await metric("http_rate_limited_total", 'limit="auth_failures"');
      const linesBefore = log.lines.length;
      const floodStarted = performance.now();
      const statuses: number[] = [];
      // 60 requests, a few at a time, each on its own connection from 127.0.0.2.
      for (let i = 0; i < 60; i += 10) {
        const batch = await Promise.all(
          Array.from(
            { length: 10 },
            () =>
              rawClient(
                `POST /orders HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\ncontent-type: application/json\r\n` +
                  `authorization: Bearer ${badToken}\r\ncontent-length: ${ORDER.length}\r\n\r\n${ORDER}`,
                { localAddress: "127.0.0.2" },
              ).answer,
          ),
        );
        statuses.push(...batch.map((a) => a.status));
        for (const a of batch)
          if (a.status === 429) expect(a.headers["retry-after"] ?? "").toMatch(/^[1-9][0-9]*$/);
      }
      expect(statuses.filter((s) => s === 401)).toHaveLength(20);
      expect(statuses.filter((s) => s === 429)).toHaveLength(40);

      // Blocked means blocked: a valid token from that address is refused too, before it is looked at.
      const valid = await freshUser();
      const blocked = await rawClient(
        `POST /orders HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\ncontent-type: application/json\r\n` +
          `authorization: Bearer ${valid}\r\ncontent-length: ${ORDER.length}\r\n\r\n${ORDER}`,
        { localAddress: "127.0.0.2" },
      ).answer;
      expect(blocked.status).toBe(429);
      expect(errorOf(blocked).code).toBe("RATE_LIMITED");
      // Another address is not: 127.0.0.1 with a valid token is accepted.
      expect((await postOrder(await freshUser())).status).toBe(202);

      expect(await metric("http_refused_total", 'kind="unauthenticated"')).toBe(refusedBefore + 20);
      expect(await metric("http_rate_limited_total", 'limit="auth_failures"')).toBe(authLimitedBefore + 41);

      // The audit: at most one line per interval, naming 127.0.0.2 first, never the token.
      await Bun.sleep(AUDIT_INTERVAL_MS * 2.5);
      const elapsed = performance.now() - floodStarted;
      const lines = log.lines.slice(linesBefore).filter((l) => l.msg === "requests refused (aggregated)");
      expect(lines.length).toBeGreaterThanOrEqual(1);
      expect(lines.length).toBeLessThanOrEqual(Math.ceil(elapsed / AUDIT_INTERVAL_MS) + 1);
      type AuditFields = { counts: Record<string, number>; top: { offender: string; count: number }[] };
      const all = lines.map((l) => l.fields as AuditFields);
      const total = (kind: string) => all.reduce((sum, f) => sum + (f.counts[kind] ?? 0), 0);
      expect(total("unauthenticated")).toBe(20);
      expect(total("rate_limited")).toBeGreaterThanOrEqual(41);
      expect(all[0]?.top[0]?.offender).toBe("ip:127.0.0.2");
      for (const f of all) expect(f.top.length).toBeLessThanOrEqual(5);
      expect(JSON.stringify(log.lines)).not.toContain(badToken);
      expect(JSON.stringify(log.lines)).not.toContain(valid);
    },
    TEST_TIMEOUT,
  );

  test(
    "a 403 (user token on an admin route) is audited by user id",
    async () => {
      const linesBefore = log.lines.length;
      const res = await fetch(`${base}/deposits`, {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${await freshUser()}` },
        body: JSON.stringify({ userId: "1", assetId: "1", amount: "1" }),
      });
      expect(res.status).toBe(403);
      await Bun.sleep(AUDIT_INTERVAL_MS * 2.5);
      const line = log.lines.slice(linesBefore).find((l) => l.msg === "requests refused (aggregated)");
      const fields = line?.fields as { counts: Record<string, number>; top: { offender: string }[] };
      expect(fields.counts.forbidden).toBe(1);
      expect(fields.top[0]?.offender).toBe(`user:${nextUser}`);
    },
    TEST_TIMEOUT,
  );
});

describe("hostile input: every answer a JSON 4xx, nothing published", () => {
  let token = "";
  let before = 0;
  beforeAll(async () => {
    token = await freshUser();
  });

  async function refused(
    res: Response,
    status: number,
    code: string,
  ): Promise<{ message: string; field?: string }> {
    expect(res.status).toBe(status);
    const error = await readError(res);
    expect(error.code).toBe(code);
    return error;
  }

  test(
    "6 000 levels of [ → 400 INVALID_JSON (not a stack overflow)",
    async () => {
      before = await intakeCount();
      const deep = `${"[".repeat(6_000)}${"]".repeat(6_000)}`;
      const error = await refused(await postOrder(token, deep), 400, "INVALID_JSON");
      expect(error.message).toContain("nested deeper than 32");
      // 33 levels also; 32 levels is valid JSON and reaches the schema (400 INVALID_INPUT, not INVALID_JSON).
      await refused(await postOrder(token, `${"[".repeat(33)}${"]".repeat(33)}`), 400, "INVALID_JSON");
      await refused(await postOrder(token, `${"[".repeat(32)}${"]".repeat(32)}`), 400, "INVALID_INPUT");
      expect(await intakeCount()).toBe(before);
    },
    TEST_TIMEOUT,
  );

  test(
    "duplicate keys → 400 naming the key",
    async () => {
      before = await intakeCount();
      const error = await refused(
        await postOrder(token, '{"price":"-5","direction":"BUY","quantity":"1","price":"1"}'),
        400,
        "INVALID_JSON",
      );
      expect(error.field).toBe("price");
      expect(error.message).toContain('"price"');
      // The same key spelled with an escape is the same key.
      const escaped = await refused(
        await postOrder(token, '{"price":"5","direction":"BUY","quantity":"1","\\u0070rice":"1"}'),
        400,
        "INVALID_JSON",
      );
      expect(escaped.field).toBe("price");
      expect(await intakeCount()).toBe(before);
    },
    TEST_TIMEOUT,
  );

  test(
    "300 KB with Content-Length → JSON 413",
    async () => {
      before = await intakeCount();
      const body = `{"direction":"BUY","price":"1","quantity":"1","pad":"${"x".repeat(300_000)}"}`;
      const answer = await rawClient(
        `POST /orders HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\nauthorization: Bearer ${token}\r\n` +
          `content-length: ${body.length}\r\n\r\n`,
      );
      answer.socket.write(body);
      const res = await answer.answer;
      expect(res.status).toBe(413);
      expect(errorOf(res).code).toBe("PAYLOAD_TOO_LARGE");
      expect(await closedSoon(answer.socket, 2_000)).toBe(true);
      // And with fetch, as a client library sends it.
      await refused(await postOrder(token, body), 413, "PAYLOAD_TOO_LARGE");
      expect(await intakeCount()).toBe(before);
    },
    TEST_TIMEOUT,
  );

  test(
    "20 MB: declared → JSON 413 from the headers; chunked → JSON 413 after reading little more than the limit",
    async () => {
      before = await intakeCount();
      const declared = rawClient(
        `POST /orders HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\nauthorization: Bearer ${token}\r\n` +
          `content-length: ${20 * 1024 * 1024}\r\n\r\n{"direction":`,
      );
      const res = await declared.answer;
      expect(res.status).toBe(413);
      expect(errorOf(res).code).toBe("PAYLOAD_TOO_LARGE");
      declared.socket.destroy();

      const chunked = rawClient(
        `POST /orders HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\nauthorization: Bearer ${token}\r\n` +
          `transfer-encoding: chunked\r\n\r\n`,
      );
      const piece = Buffer.alloc(64 * 1024, 0x20);
      let sent = 0;
      while (!chunked.answered() && sent < 20 * 1024 * 1024 && !chunked.socket.destroyed) {
        const ok = chunked.socket.write(`${piece.length.toString(16)}\r\n`) && chunked.socket.write(piece);
        chunked.socket.write("\r\n");
        sent += piece.length;
        if (!ok) await Promise.race([new Promise((r) => chunked.socket.once("drain", r)), Bun.sleep(200)]);
      }
      const big = await chunked.answer;
      // The answer came long before the 20 MB were sent: the server stopped reading past the limit.
      expect(sent).toBeLessThan(20 * 1024 * 1024);
      expect(big.status).toBe(413);
      expect(errorOf(big).code).toBe("PAYLOAD_TOO_LARGE");
      chunked.socket.destroy();
      expect(await intakeCount()).toBe(before);
    },
    TEST_TIMEOUT,
  );

  test(
    "a body on POST /orders/:id/cancel → 400; without one → 202",
    async () => {
      before = await intakeCount();
      const res = await postOrder(token, "{}", `${base}/orders/12345/cancel`);
      const error = await refused(res, 400, "INVALID_INPUT");
      expect(error.message).toContain("no request body");
      // Chunked, too.
      const chunked = await rawClient(
        `POST /orders/12345/cancel HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\ncontent-type: application/json\r\n` +
          `authorization: Bearer ${token}\r\ntransfer-encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n`,
      ).answer;
      expect(chunked.status).toBe(400);
      expect(await intakeCount()).toBe(before);
      const ok = await fetch(`${base}/orders/12345/cancel`, {
        method: "POST",
        headers: { authorization: `Bearer ${token}` },
      });
      expect(ok.status).toBe(202);
    },
    TEST_TIMEOUT,
  );

  test(
    "?after=1&after=2 → 400; an unknown query parameter → 400 (on reads and writes)",
    async () => {
      before = await intakeCount();
      const repeated = await refused(await read("/events?after=1&after=2"), 400, "INVALID_INPUT");
      expect(repeated.field).toBe("after");
      expect(repeated.message).toContain("more than once");
      const unknown = await refused(await read("/events?after=1&befor=2"), 400, "INVALID_INPUT");
      expect(unknown.field).toBe("befor");
      await refused(await read("/events/1?x=1"), 400, "INVALID_INPUT");
      await refused(await postOrder(token, ORDER, `${base}/orders?dryRun=true`), 400, "INVALID_INPUT");
      await refused(await postOrder(token, "", `${base}/orders/12345/cancel?force=1`), 400, "INVALID_INPUT");
      expect(await intakeCount()).toBe(before);
      expect((await read("/events?after=0&limit=1")).status).toBe(200);
    },
    TEST_TIMEOUT,
  );

  test(
    `a body trickled a byte at a time → 408 JSON within BODY_TIMEOUT (${BODY_TIMEOUT_MS} ms) + margin, connection closed`,
    async () => {
      before = await intakeCount();
      // A byte every 300 ms with either framing, and a body that stalls after its first byte.
      for (const [framing, trickles] of [
        ["content-length: 60", true],
        ["transfer-encoding: chunked", true],
        ["content-length: 60", false],
      ] as const) {
        const slow = rawClient(
          `POST /orders HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\nauthorization: Bearer ${token}\r\n` +
            `${framing}\r\n\r\n${framing.startsWith("content") ? "{" : "1\r\n{\r\n"}`,
          { timeoutMs: BODY_TIMEOUT_MS + 3_000 },
        );
        const trickle = setInterval(() => {
          if (!trickles || slow.socket.destroyed) return;
          slow.socket.write(framing.startsWith("content") ? " " : "1\r\n \r\n");
        }, 300);
        try {
          const res = await slow.answer;
          expect(res.status).toBe(408);
          expect(errorOf(res).code).toBe("REQUEST_TIMEOUT");
          expect(res.ms).toBeGreaterThanOrEqual(BODY_TIMEOUT_MS - 100);
          expect(res.ms).toBeLessThan(BODY_TIMEOUT_MS + 2_000);
          expect(await closedSoon(slow.socket, 2_000)).toBe(true);
        } finally {
          clearInterval(trickle);
          slow.socket.destroy();
        }
      }
      expect(await intakeCount()).toBe(before);
    },
    TEST_TIMEOUT,
  );
});

describe("MAX_IN_FLIGHT", () => {
  test(
    "past the cap → 503 JSON + Retry-After at once; /healthz still answers; free again once requests finish",
    async () => {
      const cappedPort = Number(new URL(capped.url).port);
      const token = await (capped.tokens as NonNullable<RunningService["tokens"]>).mint(77n);
      // Three requests held in flight by bodies that never finish (they end at BODY_TIMEOUT with 408).
      const held = Array.from({ length: 3 }, () =>
        rawClient(
          `POST /orders HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\nauthorization: Bearer ${token}\r\n` +
            `content-length: 60\r\n\r\n{`,
          { targetPort: cappedPort, timeoutMs: BODY_TIMEOUT_MS + 3_000 },
        ),
      );
      await Bun.sleep(300);
      const started = performance.now();
      const refusedAnswer = await postOrder(token, ORDER, `${capped.url}/orders`);
      expect(performance.now() - started).toBeLessThan(500);
      expect(refusedAnswer.status).toBe(503);
      expect(refusedAnswer.headers.get("retry-after")).toBe("1");
      expect((await readError(refusedAnswer)).code).toBe("OVERLOADED");
      expect((await fetch(`${capped.url}/healthz`)).status).toBe(200);

      const outcomes = await Promise.all(held.map((h) => h.answer));
      expect(outcomes.map((o) => o.status)).toEqual([408, 408, 408]);
      for (const h of held) h.socket.destroy();
      expect((await postOrder(token, ORDER, `${capped.url}/orders`)).status).toBe(202);
    },
    TEST_TIMEOUT,
  );
});

describe("/openapi offline", () => {
  test("the page references no external host; its script is served here as JavaScript", async () => {
    const page = await fetch(`${base}/openapi`);
    expect(page.status).toBe(200);
    const html = await page.text();
    expect(html).not.toMatch(/https?:\/\//i);
    expect(html).not.toMatch(/src=["']\/\//);
    const src = /<script src="([^"]+)"/.exec(html)?.[1] ?? "";
    expect(src).toMatch(/^\/openapi\/assets\//);
    const asset = await fetch(`${base}${src}`);
    expect(asset.status).toBe(200);
    expect(asset.headers.get("content-type") ?? "").toMatch(/^text\/javascript/);
    const script = await asset.text();
    expect(script.length).toBeGreaterThan(100_000);
    expect(script.startsWith("(function")).toBe(true);
  });
});
