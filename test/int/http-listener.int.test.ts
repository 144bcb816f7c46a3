/**
 * The HTTP API over a real socket on 127.0.0.1, against a real nats-server and a real PostgreSQL: what the body
 * guard sees is what a client puts on the wire (Content-Length, chunked bodies, content types), first for the app
 * listening by itself, then for the production wiring, startService(role "api"), with its own nats-server and
 * database. Every refusal is also checked to have published nothing.
 */

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { jetstreamManager } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { INTAKE_STREAM } from "../../src/adapters/nats/topology.ts";
import { loadConfig } from "../../src/config.ts";
import { decodeSnowflake } from "../../src/domain/ids.ts";
import { createLogger } from "../../src/logger.ts";
import { type RunningService, startService } from "../../src/service.ts";
import { getPostgres, type NatsServerHandle, startNats } from "../support/services.ts";
import { within } from "../support/wait.ts";
import { type Harness, readError, SECRET, startHarness, validOrder } from "./http-helpers.ts";

const SETUP_TIMEOUT = 60_000;
const TEST_TIMEOUT = 15_000;
const BODY_LIMIT = 1024;

let h: Harness;
let token: string;

beforeAll(async () => {
  h = await startHarness({ bodyLimitBytes: BODY_LIMIT });
  token = await h.tokens.mint(9_223_372_036_854_775_807n);
}, SETUP_TIMEOUT);

afterAll(async () => {
  await h?.close();
}, SETUP_TIMEOUT);

// ---------------------------------------------------------------------------------------------------------------
// Over a real loopback listener: what the body guard sees is what a client puts on the wire
// ---------------------------------------------------------------------------------------------------------------

describe("over a real HTTP listener on 127.0.0.1", () => {
  let base = "";
  let listening = false;

  beforeAll(async () => {
    // The same app, now also listening — without Bun's own maxRequestBodySize, so the app's guard must hold by
    // itself (createHttpApp documents that it answers 413/415 before any parsing).
    const port = h.app.listen({ port: 0, hostname: "127.0.0.1" }).server?.port;
    if (!port) throw new Error("the app did not start listening");
    listening = true;
    base = `http://127.0.0.1:${port}`;
  }, SETUP_TIMEOUT);

  afterAll(async () => {
    if (listening) await h.app.stop();
  }, SETUP_TIMEOUT);

  async function send(path: string, init: RequestInit): Promise<Response> {
    return within(10_000, `${init.method} ${path}`, () => fetch(`${base}${path}`, init));
  }

  test(
    "a valid order over HTTP → 202",
    async () => {
      const res = await send("/orders", {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
        body: JSON.stringify(validOrder),
      });
      expect(res.status).toBe(202);
    },
    TEST_TIMEOUT,
  );

  test(
    "Content-Length over the limit → 413 JSON, nothing published",
    async () => {
      const before = await h.intakeCount();
      const res = await send("/orders", {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
        body: `{"direction":"BUY","price":"1","quantity":"1"${" ".repeat(2000)}}`,
      });
      expect(res.status).toBe(413);
      expect((await readError(res)).code).toBe("PAYLOAD_TOO_LARGE");
      expect(await h.intakeCount()).toBe(before);
    },
    TEST_TIMEOUT,
  );

  /** A body sent with Transfer-Encoding: chunked (no Content-Length), in two pieces. */
  function chunked(text: string): ReadableStream<Uint8Array> {
    const bytes = new TextEncoder().encode(text);
    return new ReadableStream({
      start(controller) {
        controller.enqueue(bytes.slice(0, 100));
        controller.enqueue(bytes.slice(100));
        controller.close();
      },
    });
  }

  test(
    "chunked text/plain → 415 JSON, nothing published",
    async () => {
      const before = await h.intakeCount();
      const res = await send("/orders", {
        method: "POST",
        headers: { "content-type": "text/plain", authorization: `Bearer ${token}` },
        body: chunked(JSON.stringify(validOrder)),
      });
      expect(res.status).toBe(415);
      expect((await readError(res)).code).toBe("UNSUPPORTED_MEDIA_TYPE");
      expect(await h.intakeCount()).toBe(before);
    },
    TEST_TIMEOUT,
  );

  test(
    "chunked body over the limit → 413",
    async () => {
      const before = await h.intakeCount();
      const res = await send("/orders", {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
        body: chunked(`{"direction":"BUY","price":"1","quantity":"1"${" ".repeat(2000)}}`),
      });
      const status = res.status;
      await res.body?.cancel();
      expect(await h.intakeCount()).toBe(before);
      expect(status).toBe(413);
    },
    TEST_TIMEOUT,
  );

  test(
    "text/plain → 415 JSON, nothing published",
    async () => {
      const before = await h.intakeCount();
      const res = await send("/orders", {
        method: "POST",
        headers: { "content-type": "text/plain", authorization: `Bearer ${token}` },
        body: JSON.stringify(validOrder),
      });
      expect(res.status).toBe(415);
      expect((await readError(res)).code).toBe("UNSUPPORTED_MEDIA_TYPE");
      expect(await h.intakeCount()).toBe(before);
    },
    TEST_TIMEOUT,
  );

  test(
    "GET /healthz over HTTP",
    async () => {
      const res = await send("/healthz", { method: "GET" });
      expect(res.status).toBe(200);
      expect(await res.json()).toEqual({ status: "ok" });
    },
    TEST_TIMEOUT,
  );
});
// ---------------------------------------------------------------------------------------------------------------
// The production wiring: startService(role "api") listening on 127.0.0.1, with its own nats-server and database
// ---------------------------------------------------------------------------------------------------------------

describe("startService (role api) over HTTP", () => {
  let nats: NatsServerHandle;
  let service: RunningService;
  let observer: NatsConnection;
  let dataDir = "";
  let base = "";
  let serviceToken = "";

  const intakeCount = async () =>
    (await (await jetstreamManager(observer)).streams.info(INTAKE_STREAM)).state.messages;

  beforeAll(async () => {
    nats = await startNats();
    dataDir = await mkdtemp(join(tmpdir(), "http-listener-int-"));
    const config = loadConfig({
      NATS_URL: nats.url,
      DATABASE_URL: await (await getPostgres()).createDatabase(),
      AUTH_SECRET: SECRET,
      HOST: "127.0.0.1",
      PORT: "0",
      OPS_PORT: "0",
      DATA_DIR: dataDir,
      WORKER_ID: "3",
      PUBLISH_TIMEOUT: "2s",
      BODY_LIMIT_BYTES: "1024",
    });
    service = await startService(config, "api", createLogger({}, "silent"));
    if (!service.url || !service.tokens) throw new Error("the api role did not serve HTTP");
    base = service.url;
    serviceToken = await service.tokens.mint(11n);
    observer = await connect({ servers: nats.url, timeout: 5_000 });
  }, SETUP_TIMEOUT);

  afterAll(async () => {
    await service?.stop();
    await observer?.close();
    await nats?.stop();
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  }, SETUP_TIMEOUT);

  const send = (path: string, init: RequestInit = {}) =>
    within(10_000, `${init.method ?? "GET"} ${path}`, () => fetch(`${base}${path}`, init));

  const oversized = `{"direction":"BUY","price":"1","quantity":"1"${" ".repeat(2000)}}`;

  test(
    "listens on loopback; valid order → 202 and it is on SEQUENCE with the token's user",
    async () => {
      expect(new URL(base).hostname).toBe("127.0.0.1");
      const before = await intakeCount();
      const res = await send("/orders", {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${serviceToken}` },
        body: JSON.stringify({ direction: "SELL", price: "2.50", quantity: "1" }),
      });
      expect(res.status).toBe(202);
      const body = (await res.json()) as { referenceId: string; orderId: string };
      expect(decodeSnowflake(BigInt(body.orderId)).workerId).toBe(3);
      expect(await intakeCount()).toBe(before + 1);
      const stored = await (await jetstreamManager(observer)).streams.getMessage(INTAKE_STREAM, {
        seq: before + 1,
      });
      expect(stored?.header.get("Nats-Msg-Id")).toBe(body.referenceId);
      expect(stored?.json<Record<string, string>>()).toMatchObject({ userId: "11", price: "2.5" });
    },
    TEST_TIMEOUT,
  );

  test(
    "Content-Length over BODY_LIMIT_BYTES → 413, nothing published",
    async () => {
      const before = await intakeCount();
      const res = await send("/orders", {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${serviceToken}` },
        body: oversized,
      });
      expect(res.status).toBe(413);
      await res.body?.cancel();
      expect(await intakeCount()).toBe(before);
    },
    TEST_TIMEOUT,
  );

  test(
    "Content-Length over BODY_LIMIT_BYTES → 413 with the JSON error body",
    async () => {
      const res = await send("/orders", {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${serviceToken}` },
        body: oversized,
      });
      expect(res.status).toBe(413);
      expect((await readError(res)).code).toBe("PAYLOAD_TOO_LARGE");
    },
    TEST_TIMEOUT,
  );

  test(
    "chunked body over BODY_LIMIT_BYTES → 413, nothing published",
    async () => {
      const before = await intakeCount();
      const res = await send("/orders", {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${serviceToken}` },
        body: new Blob([oversized]).stream(),
      });
      expect(res.status).toBe(413);
      await res.body?.cancel();
      expect(await intakeCount()).toBe(before);
    },
    TEST_TIMEOUT,
  );

  test(
    "chunked body over BODY_LIMIT_BYTES → 413 with the JSON error body",
    async () => {
      const res = await send("/orders", {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${serviceToken}` },
        body: new Blob([oversized]).stream(),
      });
      expect(res.status).toBe(413);
      expect((await readError(res)).code).toBe("PAYLOAD_TOO_LARGE");
    },
    TEST_TIMEOUT,
  );

  test(
    "GET /healthz, /readyz (nats and database up), /events (empty)",
    async () => {
      const health = await send("/healthz");
      expect(health.status).toBe(200);
      expect(await health.json()).toEqual({ status: "ok" });
      const ready = await send("/readyz");
      expect(ready.status).toBe(200);
      expect(await ready.json()).toEqual({ status: "ready" });
      const details = await fetch(`${service.opsUrl}/readyz`);
      expect(await details.json()).toEqual({
        status: "ready",
        checks: { nats: { ok: true }, database: { ok: true }, intake: { ok: true } },
      });
      const reader = {
        headers: { authorization: `Bearer ${await service.tokens?.mint(1n, { role: "reader" })}` },
      };
      const events = await send("/events?limit=10", reader);
      expect(events.status).toBe(200);
      expect(await events.json()).toEqual({ events: [], next: null });
    },
    TEST_TIMEOUT,
  );

  test(
    "errors over the wire keep their JSON shape and headers",
    async () => {
      const unauth = await send("/orders", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(validOrder),
      });
      expect(unauth.status).toBe(401);
      expect(unauth.headers.get("www-authenticate")).toBe("Bearer");
      expect((await readError(unauth)).code).toBe("UNAUTHENTICATED");
      const missing = await send("/nope");
      expect(missing.status).toBe(404);
      expect((await readError(missing)).code).toBe("NOT_FOUND");
      const badQuery = await send("/events?limit=0", {
        headers: { authorization: `Bearer ${await service.tokens?.mint(1n, { role: "reader" })}` },
      });
      expect(badQuery.status).toBe(400);
      expect(await readError(badQuery)).toMatchObject({ code: "INVALID_INPUT", field: "limit" });
    },
    TEST_TIMEOUT,
  );
});
