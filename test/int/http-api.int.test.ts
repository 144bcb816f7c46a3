/**
 * Integration tests of the HTTP API (src/adapters/http) against a real nats-server and a real PostgreSQL.
 *
 * The app is built as in src/service.ts and driven in-process with app.handle(Request); a few tests that are
 * about what arrives on the wire (Content-Length, chunked bodies) go through a real listener on 127.0.0.1.
 * Every 4xx is also checked to have published nothing: the SEQUENCE stream's message count must not move.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { jetstreamManager } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { SignJWT } from "jose";
import { ensureTopology, INTAKE_STREAM } from "../../src/adapters/nats/topology.ts";
import { ZERO_DIGEST } from "../../src/app/log-digest.ts";
import { loadConfig } from "../../src/config.ts";
import type { SequencedEvent } from "../../src/domain/events.ts";
import { decodeSnowflake } from "../../src/domain/ids.ts";
import { createLogger } from "../../src/logger.ts";
import { type RunningService, startService } from "../../src/service.ts";
import { getPostgres, type NatsServerHandle, startNats } from "../support/services.ts";
import { chained } from "../support/stack.ts";
import {
  BASE,
  type Harness,
  jsonRequest,
  readError,
  readJson,
  SECRET,
  startHarness,
  unsignedToken,
  within,
} from "./http-helpers.ts";

const SETUP_TIMEOUT = 60_000;
const TEST_TIMEOUT = 15_000;
const BODY_LIMIT = 1024;
const USER = 9_223_372_036_854_775_807n; // max int64: the id must survive without a trip through a JS number

const validOrder = { direction: "BUY", price: "101.25", quantity: "3" };

let h: Harness;
let token: string;
/** GET /events is for reader (and admin) tokens. */
let readerToken: string;

beforeAll(async () => {
  h = await startHarness({ publishTimeoutMs: 2_000, bodyLimitBytes: BODY_LIMIT });
  token = await h.tokens.mint(USER);
  readerToken = await h.tokens.mint(1n, { role: "reader" });
}, SETUP_TIMEOUT);

afterAll(async () => {
  await h?.close();
}, SETUP_TIMEOUT);

async function handle(request: Request): Promise<Response> {
  return within(10_000, `${request.method} ${new URL(request.url).pathname}`, () => h.app.handle(request));
}

function postOrder(body: unknown, options: Parameters<typeof jsonRequest>[3] = {}) {
  return jsonRequest("POST", "/orders", body, options);
}

/** Sends a request that must be refused with `status`/`code` (and `field`), and must publish nothing. */
async function expectRefused(
  request: Request,
  status: number,
  code: string,
  field?: string,
): Promise<{ res: Response; error: { code: string; message: string; field?: string } }> {
  const before = await h.intakeCount();
  const res = await handle(request);
  const error = await readError(res);
  expect({ status: res.status, code: error.code, field: error.field }).toEqual({ status, code, field });
  expect(await h.intakeCount()).toBe(before);
  return { res, error };
}

// ---------------------------------------------------------------------------------------------------------------
// POST /orders: the happy path
// ---------------------------------------------------------------------------------------------------------------

describe("POST /orders accepted", () => {
  test(
    "202 with decimal-string ids; SEQUENCE holds the event under Nats-Msg-Id = referenceId",
    async () => {
      const before = await h.intakeCount();
      const started = Date.now();
      const res = await handle(postOrder({ direction: "SELL", price: "1.50", quantity: "3.000" }, { token }));
      expect(res.status).toBe(202);
      expect(res.headers.get("content-type") ?? "").toMatch(/^application\/json/);
      const body = (await readJson(res)) as Record<string, unknown>;
      expect(Object.keys(body).sort()).toEqual(["orderId", "referenceId"]);
      expect(body.orderId).toMatch(/^[1-9][0-9]{0,18}$/);
      expect(body.referenceId).toMatch(/^[1-9][0-9]{0,18}$/);
      const orderId = String(body.orderId);
      const referenceId = String(body.referenceId);
      expect(orderId).not.toBe(referenceId);
      // Snowflakes from worker 1, minted now.
      for (const id of [orderId, referenceId]) {
        const parts = decodeSnowflake(BigInt(id));
        expect(parts.workerId).toBe(1);
        expect(parts.timeMs).toBeGreaterThanOrEqual(started - 5);
        expect(parts.timeMs).toBeLessThanOrEqual(Date.now() + 5);
      }

      // 202 means JetStream already stored it: no waiting needed.
      expect(await h.intakeCount()).toBe(before + 1);
      const stored = await h.jsm.streams.getMessage(INTAKE_STREAM, { seq: before + 1 });
      if (!stored) throw new Error("the accepted order is not on SEQUENCE");
      expect(stored.subject).toBe("sequence.create_order");
      expect(stored.header.get("Nats-Msg-Id")).toBe(referenceId);
      const event = stored.json<Record<string, unknown>>();
      expect(event).toEqual({
        referenceId,
        type: "CREATE_ORDER",
        createdAt: expect.any(String),
        userId: USER.toString(),
        orderId,
        direction: "SELL",
        price: "1.5",
        quantity: "3",
      });
      const createdAt = Date.parse(String(event.createdAt));
      expect(new Date(createdAt).toISOString()).toBe(String(event.createdAt));
      expect(createdAt).toBeGreaterThanOrEqual(started - 5);
      expect(createdAt).toBeLessThanOrEqual(Date.now() + 5);
    },
    TEST_TIMEOUT,
  );

  test(
    "userId comes from the token's sub: two users, same body, each event carries its own user",
    async () => {
      const before = await h.intakeCount();
      const other = await h.tokens.mint(42n);
      const a = await handle(postOrder(validOrder, { token: other }));
      const b = await handle(postOrder(validOrder, { token }));
      expect([a.status, b.status]).toEqual([202, 202]);
      const ids = [
        (await readJson(a)) as { referenceId: string },
        (await readJson(b)) as { referenceId: string },
      ];
      expect(await h.intakeCount()).toBe(before + 2);
      const first = await h.jsm.streams.getMessage(INTAKE_STREAM, { seq: before + 1 });
      const second = await h.jsm.streams.getMessage(INTAKE_STREAM, { seq: before + 2 });
      expect(first?.json<{ userId: string; referenceId: string }>()).toMatchObject({
        userId: "42",
        referenceId: ids[0]?.referenceId,
      });
      expect(second?.json<{ userId: string; referenceId: string }>()).toMatchObject({
        userId: USER.toString(),
        referenceId: ids[1]?.referenceId,
      });
    },
    TEST_TIMEOUT,
  );

  test(
    "a userId in the body is refused (400, field userId), not used",
    async () => {
      await expectRefused(
        postOrder({ ...validOrder, userId: "7" }, { token }),
        400,
        "INVALID_INPUT",
        "userId",
      );
    },
    TEST_TIMEOUT,
  );

  test(
    "boundary values are accepted and canonicalised",
    async () => {
      const cases: [string, string, string, string][] = [
        // price in, quantity in, price stored, quantity stored
        ["999999999999.99999999", "0.00000001", "999999999999.99999999", "0.00000001"],
        ["0.10000000", "100", "0.1", "100"],
        ["7", "12.340", "7", "12.34"],
      ];
      for (const [price, quantity, wantPrice, wantQuantity] of cases) {
        const before = await h.intakeCount();
        const res = await handle(postOrder({ direction: "BUY", price, quantity }, { token }));
        expect({ price, status: res.status }).toEqual({ price, status: 202 });
        const stored = await h.jsm.streams.getMessage(INTAKE_STREAM, { seq: before + 1 });
        expect(stored?.json<Record<string, string>>()).toMatchObject({
          price: wantPrice,
          quantity: wantQuantity,
          direction: "BUY",
        });
      }
    },
    TEST_TIMEOUT,
  );

  test(
    "content type with a charset parameter is accepted",
    async () => {
      const res = await handle(
        postOrder(validOrder, { token, contentType: "application/json; charset=utf-8" }),
      );
      expect(res.status).toBe(202);
    },
    TEST_TIMEOUT,
  );

  test(
    "every accepted order gets fresh ids (no dedup across distinct requests)",
    async () => {
      const before = await h.intakeCount();
      const answers = await Promise.all(
        Array.from({ length: 20 }, () => handle(postOrder(validOrder, { token }))),
      );
      const bodies = await Promise.all(
        answers.map(async (res) => {
          expect(res.status).toBe(202);
          return (await readJson(res)) as { orderId: string; referenceId: string };
        }),
      );
      const all = bodies.flatMap((b) => [b.orderId, b.referenceId]);
      expect(new Set(all).size).toBe(40);
      expect(await h.intakeCount()).toBe(before + 20);
    },
    TEST_TIMEOUT,
  );
});

// ---------------------------------------------------------------------------------------------------------------
// Authentication
// ---------------------------------------------------------------------------------------------------------------

describe("POST /orders authentication", () => {
  const key = new TextEncoder().encode(SECRET);
  const now = () => Math.floor(Date.now() / 1000);

  async function signed(claims: Record<string, unknown>, secret: Uint8Array = key): Promise<string> {
    return new SignJWT(claims).setProtectedHeader({ alg: "HS256", typ: "JWT" }).sign(secret);
  }

  async function expectUnauthenticated(request: Request) {
    const { res, error } = await expectRefused(request, 401, "UNAUTHENTICATED");
    expect(res.headers.get("www-authenticate")).toBe("Bearer");
    expect(error.field).toBeUndefined();
    return error;
  }

  test(
    "missing Authorization header",
    async () => {
      const error = await expectUnauthenticated(postOrder(validOrder, {}));
      expect(error.message).toContain("missing");
    },
    TEST_TIMEOUT,
  );

  const badHeaders: [string, () => Promise<string>][] = [
    ["Basic scheme", async () => "Basic dXNlcjpwYXNz"],
    ["Basic x", async () => "Basic x"],
    ["Bearer without a token", async () => "Bearer "],
    ["lower-case bearer", async () => `bearer ${await signed({ sub: "1", exp: now() + 60 })}`],
    ["garbage token", async () => "Bearer not-a-jwt"],
    ["garbage three-part token", async () => "Bearer aaa.bbb.ccc"],
    ["token with characters outside base64url", async () => "Bearer a+b/c=.d.e"],
    [
      "token signed with another secret",
      async () =>
        `Bearer ${await signed({ sub: "1", exp: now() + 60 }, new TextEncoder().encode("y".repeat(40)))}`,
    ],
    [
      "expired token (mint with negative ttl)",
      async () => `Bearer ${await h.tokens.mint(1n, { ttlSeconds: -60 })}`,
    ],
    [
      "expired token (jose, exp in the past)",
      async () =>
        `Bearer ${await new SignJWT({})
          .setProtectedHeader({ alg: "HS256" })
          .setSubject("1")
          .setExpirationTime(now() - 10)
          .sign(key)}`,
    ],
    ["token without exp", async () => `Bearer ${await signed({ sub: "1" })}`],
    ["token without sub", async () => `Bearer ${await signed({ exp: now() + 60 })}`],
    [
      "token not yet valid (nbf in the future)",
      async () => `Bearer ${await signed({ sub: "1", exp: now() + 600, nbf: now() + 300 })}`,
    ],
    ["alg none", async () => `Bearer ${unsignedToken({ sub: "1", exp: now() + 60 })}`],
    [
      "alg none with a forged signature part",
      async () => {
        const real = await signed({ sub: "1", exp: now() + 60 });
        const signature = real.split(".")[2] ?? "";
        return `Bearer ${unsignedToken({ sub: "1", exp: now() + 60 })}${signature}`;
      },
    ],
    [
      "HS512 with the right secret (only HS256 is allowed)",
      async () =>
        `Bearer ${await new SignJWT({ sub: "1", exp: now() + 60 }).setProtectedHeader({ alg: "HS512" }).sign(key)}`,
    ],
    ["sub not digits", async () => `Bearer ${await signed({ sub: "alice", exp: now() + 60 })}`],
    ["sub zero", async () => `Bearer ${await signed({ sub: "0", exp: now() + 60 })}`],
    ["sub negative", async () => `Bearer ${await signed({ sub: "-5", exp: now() + 60 })}`],
    ["sub with leading zero", async () => `Bearer ${await signed({ sub: "012", exp: now() + 60 })}`],
    [
      "sub above int64",
      async () => `Bearer ${await signed({ sub: "9223372036854775808", exp: now() + 60 })}`,
    ],
    ["sub as a number", async () => `Bearer ${await signed({ sub: 12, exp: now() + 60 })}`],
    [
      "tampered payload (sub swapped after signing)",
      async () => {
        const [header, , signature] = (await signed({ sub: "1", exp: now() + 60 })).split(".");
        const payload = Buffer.from(JSON.stringify({ sub: "2", exp: now() + 60 })).toString("base64url");
        return `Bearer ${header}.${payload}.${signature}`;
      },
    ],
  ];

  for (const [name, header] of badHeaders) {
    test(
      name,
      async () => {
        await expectUnauthenticated(postOrder(validOrder, { authorization: await header() }));
      },
      TEST_TIMEOUT,
    );
  }

  test(
    "auth is checked before body validation: a schema-invalid body without a token is 401",
    async () => {
      await expectUnauthenticated(postOrder({ direction: "HOLD", price: 1, foo: true }, {}));
      await expectUnauthenticated(postOrder({}, { authorization: "Basic x" }));
      await expectUnauthenticated(postOrder({ ...validOrder, price: "abc" }, {}));
    },
    TEST_TIMEOUT,
  );

  test(
    "a token minted by the TokenService with a short ttl is accepted (control)",
    async () => {
      const res = await handle(postOrder(validOrder, { token: await h.tokens.mint(5n, { ttlSeconds: 30 }) }));
      expect(res.status).toBe(202);
    },
    TEST_TIMEOUT,
  );
});

// ---------------------------------------------------------------------------------------------------------------
// Body validation
// ---------------------------------------------------------------------------------------------------------------

describe("POST /orders validation", () => {
  const badDecimals: unknown[] = [
    1.5,
    15,
    null,
    true,
    ["1"],
    { value: "1" },
    "",
    "abc",
    "-1",
    "0",
    "0.0",
    "0.00000000",
    "1e5",
    "1E5",
    "0x1A",
    "NaN",
    "Infinity",
    "-Infinity",
    "+1",
    " 1",
    "1 ",
    "1.",
    ".5",
    "01",
    "1,5",
    "1.123456789", // 9 decimal places
    "0.000000001",
    "1234567890123", // 13 integer digits
    "1234567890123.5",
    "9".repeat(100),
    "١٢", // Arabic-Indic digits
  ];

  for (const field of ["price", "quantity"] as const) {
    for (const value of badDecimals) {
      test(
        `${field} = ${JSON.stringify(value)} → 400 naming ${field}`,
        async () => {
          const { error } = await expectRefused(
            postOrder({ ...validOrder, [field]: value }, { token }),
            400,
            "INVALID_INPUT",
            field,
          );
          expect(error.message).toContain(field);
        },
        TEST_TIMEOUT,
      );
    }
  }

  for (const direction of ["HOLD", "buy", "sell", "Buy", "", 1, null]) {
    test(
      `direction = ${JSON.stringify(direction)} → 400 naming direction`,
      async () => {
        await expectRefused(
          postOrder({ ...validOrder, direction }, { token }),
          400,
          "INVALID_INPUT",
          "direction",
        );
      },
      TEST_TIMEOUT,
    );
  }

  for (const missing of ["price", "quantity"] as const) {
    test(
      `missing ${missing} → 400 naming it`,
      async () => {
        const body: Record<string, string> = { ...validOrder };
        delete body[missing];
        await expectRefused(postOrder(body, { token }), 400, "INVALID_INPUT", missing);
      },
      TEST_TIMEOUT,
    );
  }

  test(
    "missing direction → 400 naming it",
    async () => {
      await expectRefused(
        postOrder({ price: "1", quantity: "1" }, { token }),
        400,
        "INVALID_INPUT",
        "direction",
      );
    },
    TEST_TIMEOUT,
  );

  test(
    "unknown extra field → 400 naming it",
    async () => {
      const { error } = await expectRefused(
        postOrder({ ...validOrder, foo: 1 }, { token }),
        400,
        "INVALID_INPUT",
        "foo",
      );
      expect(error.message).toContain("foo");
    },
    TEST_TIMEOUT,
  );

  test(
    "a body that is not an object (or is empty) → 400 INVALID_INPUT",
    async () => {
      // The field named for these is whatever the first schema error says (today "price"), so it is not pinned.
      for (const body of [[validOrder], "BUY", 42, null]) {
        const before = await h.intakeCount();
        const res = await handle(postOrder(body, { token }));
        expect({ body, status: res.status, code: (await readError(res)).code }).toEqual({
          body,
          status: 400,
          code: "INVALID_INPUT",
        });
        expect(await h.intakeCount()).toBe(before);
      }
      const before = await h.intakeCount();
      const empty = await handle(
        new Request(`${BASE}/orders`, {
          method: "POST",
          headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
        }),
      );
      expect({ status: empty.status, code: (await readError(empty)).code }).toEqual({
        status: 400,
        code: "INVALID_INPUT",
      });
      expect(await h.intakeCount()).toBe(before);
    },
    TEST_TIMEOUT,
  );

  test(
    "invalid JSON → 400 INVALID_JSON",
    async () => {
      for (const raw of ["{", '{"direction":"BUY",', "{direction:'BUY'}", "not json"]) {
        await expectRefused(postOrder(raw, { token, raw: true }), 400, "INVALID_JSON");
      }
      // Parsing happens before the auth step, so malformed JSON without a token is a 400, not a 401.
      await expectRefused(postOrder("{", { raw: true }), 400, "INVALID_JSON");
    },
    TEST_TIMEOUT,
  );

  test(
    'a value that cannot be shown as text (an object with a "toString" member) → 400 naming the field, never a 500',
    async () => {
      // Found by the fuzz test: Elysia's validation error formats the value with a template literal, which throws.
      const bodies: [string, string][] = [
        ['{"direction":"BUY","price":"1","quantity":{"toString":1}}', "quantity"],
        ['{"quantity":[{"toString":[]}]}', "quantity"],
        ['{"direction":"BUY","price":[1,{"a":{"toString":"x"}}],"quantity":"1"}', "price"],
      ];
      for (const [raw, field] of bodies) {
        const { error } = await expectRefused(
          postOrder(raw, { token, raw: true }),
          400,
          "INVALID_INPUT",
          field,
        );
        expect(error.message).toStartWith(`${field}: `);
      }
      // A "toString" key where a string is expected at the top level is an unknown field, refused as such.
      await expectRefused(
        postOrder('{"direction":"BUY","price":"1","quantity":"1","toString":1}', { token, raw: true }),
        400,
        "INVALID_INPUT",
        "toString",
      );
    },
    TEST_TIMEOUT,
  );

  test(
    "wrong content type → 415, also without a token (the guard runs first)",
    async () => {
      const body = JSON.stringify(validOrder);
      for (const contentType of [
        "text/plain",
        "application/x-www-form-urlencoded",
        "application/jsonx",
        "json",
      ]) {
        await expectRefused(
          postOrder(body, { token, raw: true, contentType }),
          415,
          "UNSUPPORTED_MEDIA_TYPE",
        );
        await expectRefused(postOrder(body, { raw: true, contentType }), 415, "UNSUPPORTED_MEDIA_TYPE");
      }
    },
    TEST_TIMEOUT,
  );

  test(
    "body over the limit → 413, also without a token; exactly at the limit is accepted",
    async () => {
      const padded = (bytes: number) => {
        const json = JSON.stringify(validOrder);
        return `${json.slice(0, -1)}${" ".repeat(bytes - json.length)}}`;
      };
      expect(padded(2000).length).toBe(2000);
      const { error } = await expectRefused(
        postOrder(padded(2000), { token, raw: true }),
        413,
        "PAYLOAD_TOO_LARGE",
      );
      expect(error.message).toContain(String(BODY_LIMIT));
      await expectRefused(postOrder(padded(BODY_LIMIT + 1), { token, raw: true }), 413, "PAYLOAD_TOO_LARGE");
      await expectRefused(postOrder(padded(2000), { raw: true }), 413, "PAYLOAD_TOO_LARGE");

      const before = await h.intakeCount();
      const res = await handle(postOrder(padded(BODY_LIMIT), { token, raw: true }));
      expect(res.status).toBe(202);
      expect(await h.intakeCount()).toBe(before + 1);
    },
    TEST_TIMEOUT,
  );

  test(
    "unknown routes and methods → 404 NOT_FOUND as JSON",
    async () => {
      for (const [method, path] of [
        ["GET", "/nope"],
        ["GET", "/orders"],
        ["DELETE", "/orders"],
        ["POST", "/order"],
        ["POST", "/events"],
      ] as const) {
        const before = await h.intakeCount();
        const res = await handle(
          new Request(`${BASE}${path}`, { method, headers: { authorization: `Bearer ${token}` } }),
        );
        const error = await readError(res);
        expect({ method, path, status: res.status, code: error.code }).toEqual({
          method,
          path,
          status: 404,
          code: "NOT_FOUND",
        });
        expect(await h.intakeCount()).toBe(before);
      }
    },
    TEST_TIMEOUT,
  );
});

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
// GET /events
// ---------------------------------------------------------------------------------------------------------------

describe("GET /events", () => {
  const get = (query: string) =>
    handle(new Request(`${BASE}/events${query}`, { headers: { authorization: `Bearer ${readerToken}` } }));

  function sequenced(n: number): SequencedEvent {
    const at = new Date(Date.UTC(2026, 0, 2, 3, 4, 5, n)).toISOString();
    return {
      sequenceId: BigInt(n),
      previousId: BigInt(n - 1),
      referenceId: 1_000_000_000_000n + BigInt(n),
      type: "CREATE_ORDER",
      createdAt: at,
      sequencedAt: at,
      userId: BigInt(100 + n),
      orderId: 2_000_000_000_000n + BigInt(n),
      direction: n % 2 === 0 ? "SELL" : "BUY",
      price: `${n}.25`,
      quantity: String(n),
    };
  }

  const stored = chained([1, 2, 3, 4, 5].map(sequenced));
  const payload = (n: number) => stored[n - 1]?.payload ?? "";

  test(
    "empty log → {events: [], next: null}",
    async () => {
      const res = await get("");
      expect(res.status).toBe(200);
      expect(res.headers.get("content-type") ?? "").toMatch(/^application\/json/);
      expect(await readJson(res)).toEqual({ events: [], next: null });
      const after = await get("?after=0&limit=1000");
      expect(await readJson(after)).toEqual({ events: [], next: null });
    },
    TEST_TIMEOUT,
  );

  for (const [query, field] of [
    ["?after=-1", "after"],
    ["?after=abc", "after"],
    ["?after=1.5", "after"],
    ["?after=01", "after"],
    ["?after=", "after"],
    ["?after=%201", "after"],
    ["?after=12345678901234567890", "after"], // 20 digits
    ["?limit=0", "limit"],
    ["?limit=1001", "limit"],
    ["?limit=x", "limit"],
    ["?limit=-1", "limit"],
    ["?limit=10.5", "limit"],
    ["?limit=", "limit"],
    ["?after=1&limit=0", "limit"],
    ["?foo=1", "foo"],
  ] as const) {
    test(
      `invalid query ${query} → 400 naming ${field}`,
      async () => {
        const res = await get(query);
        const error = await readError(res);
        expect({ status: res.status, code: error.code, field: error.field }).toEqual({
          status: 400,
          code: "INVALID_INPUT",
          field,
        });
      },
      TEST_TIMEOUT,
    );
  }

  test(
    "keyset paging over stored events: after/limit/next, in order, payloads verbatim",
    async () => {
      // Inserted out of id order (1, 4, 5, 2, 3 in one batch; an append must start right after the head): the
      // read order must come from sequenceId, not insertion.
      await h.store.append(
        [stored[0], stored[3], stored[4], stored[1], stored[2]].filter((s) => s !== undefined),
        [],
        ZERO_DIGEST,
      );

      const all = await get("");
      expect(all.status).toBe(200);
      const allText = await all.text();
      expect(allText).toBe(`{"events":[${[1, 2, 3, 4, 5].map(payload).join(",")}],"next":"5"}`);
      const parsed = JSON.parse(allText) as { events: Record<string, string>[]; next: string };
      expect(parsed.events.map((e) => e.sequenceId)).toEqual(["1", "2", "3", "4", "5"]);
      expect(parsed.events[0]).toEqual({
        sequenceId: "1",
        previousId: "0",
        referenceId: "1000000000001",
        type: "CREATE_ORDER",
        createdAt: "2026-01-02T03:04:05.001Z",
        sequencedAt: "2026-01-02T03:04:05.001Z",
        userId: "101",
        orderId: "2000000000001",
        direction: "BUY",
        price: "1.25",
        quantity: "1",
      });

      // Walk the log two at a time by following `next`.
      const pages: string[][] = [];
      let cursor = "0";
      for (let i = 0; i < 10; i++) {
        const res = await get(`?after=${cursor}&limit=2`);
        expect(res.status).toBe(200);
        const page = (await readJson(res)) as { events: { sequenceId: string }[]; next: string | null };
        if (page.events.length === 0) {
          expect(page.next).toBeNull();
          break;
        }
        expect(page.next).toBe(page.events[page.events.length - 1]?.sequenceId ?? "missing");
        pages.push(page.events.map((e) => e.sequenceId));
        cursor = page.next ?? "";
      }
      expect(pages).toEqual([["1", "2"], ["3", "4"], ["5"]]);

      // Arbitrary starting points and limits.
      expect(await (await get("?after=3")).text()).toBe(
        `{"events":[${payload(4)},${payload(5)}],"next":"5"}`,
      );
      expect(await (await get("?limit=1")).text()).toBe(`{"events":[${payload(1)}],"next":"1"}`);
      expect(await (await get("?after=4&limit=1000")).text()).toBe(`{"events":[${payload(5)}],"next":"5"}`);
      expect(await readJson(await get("?after=5"))).toEqual({ events: [], next: null });
      expect(await readJson(await get("?after=9223372036854775807"))).toEqual({ events: [], next: null });
    },
    TEST_TIMEOUT,
  );

  test(
    "after above int64 but within the 19-digit pattern → 400",
    async () => {
      const res = await get("?after=9999999999999999999");
      const error = await readError(res);
      expect({ status: res.status, code: error.code, field: error.field }).toEqual({
        status: 400,
        code: "INVALID_INPUT",
        field: "after",
      });
    },
    TEST_TIMEOUT,
  );
});

// ---------------------------------------------------------------------------------------------------------------
// Ops
// ---------------------------------------------------------------------------------------------------------------

describe("ops endpoints", () => {
  test(
    "GET /healthz → 200 {status: ok}",
    async () => {
      const res = await handle(new Request(`${BASE}/healthz`));
      expect(res.status).toBe(200);
      expect(await readJson(res)).toEqual({ status: "ok" });
    },
    TEST_TIMEOUT,
  );

  test(
    "GET /readyz reflects the readiness function",
    async () => {
      h.setReadiness({ nats: { ok: true }, database: { ok: true } });
      // The public port says only ready or not (details are on the ops listener: read-access.int.test.ts).
      let res = await handle(new Request(`${BASE}/readyz`));
      expect(res.status).toBe(200);
      expect(await readJson(res)).toEqual({ status: "ready" });

      h.setReadiness({ nats: { ok: false, detail: "disconnected" }, database: { ok: true } });
      res = await handle(new Request(`${BASE}/readyz`));
      expect(res.status).toBe(503);
      expect(await readJson(res)).toEqual({ status: "not ready" });

      // A readiness check backed by the real dependencies.
      h.setReadiness(async () => {
        const checks: Record<string, { ok: boolean; detail?: string }> = {
          nats: { ok: !h.nc.isClosed() },
        };
        try {
          await h.database.ping();
          checks.database = { ok: true };
        } catch (error) {
          checks.database = { ok: false, detail: String(error) };
        }
        return checks;
      });
      res = await handle(new Request(`${BASE}/readyz`));
      expect(res.status).toBe(200);
      expect(await readJson(res)).toEqual({ status: "ready" });
    },
    TEST_TIMEOUT,
  );

  test(
    "a readiness function that throws → 500 INTERNAL without details",
    async () => {
      h.setReadiness(async () => {
        throw new Error("secret detail");
      });
      const res = await handle(new Request(`${BASE}/readyz`));
      const error = await readError(res);
      expect({ status: res.status, code: error.code }).toEqual({ status: 500, code: "INTERNAL" });
      expect(error.message).not.toContain("secret");
      h.setReadiness({ nats: { ok: true } });
    },
    TEST_TIMEOUT,
  );
});

// ---------------------------------------------------------------------------------------------------------------
// NATS unavailable: its own nats-server, so stopping it affects no other test
// ---------------------------------------------------------------------------------------------------------------

describe("NATS unavailable", () => {
  const PUBLISH_TIMEOUT_MS = 1_000;
  let down: Harness;
  let downToken: string;

  beforeAll(async () => {
    down = await startHarness({ publishTimeoutMs: PUBLISH_TIMEOUT_MS });
    downToken = await down.tokens.mint(77n);
  }, SETUP_TIMEOUT);

  afterAll(async () => {
    await down?.close();
  }, SETUP_TIMEOUT);

  async function post(): Promise<{ res: Response; elapsedMs: number }> {
    const started = performance.now();
    const res = await within(5_000, "POST /orders", () =>
      down.app.handle(postOrder(validOrder, { token: downToken })),
    );
    return { res, elapsedMs: performance.now() - started };
  }

  async function expectUnavailable(maxMs: number): Promise<void> {
    const { res, elapsedMs } = await post();
    const error = await readError(res);
    expect({ status: res.status, code: error.code }).toEqual({ status: 503, code: "UNAVAILABLE" });
    expect(res.headers.get("retry-after")).toBe("1");
    expect(elapsedMs).toBeLessThan(maxMs);
  }

  test(
    "control: accepted while the server is up",
    async () => {
      const { res } = await post();
      expect(res.status).toBe(202);
      expect(await down.intakeCount()).toBe(1);
    },
    TEST_TIMEOUT,
  );

  test(
    "SEQUENCE stream missing → 503 quickly (no stream answers), 202 again once it is back",
    async () => {
      await down.jsm.streams.delete(INTAKE_STREAM);
      await expectUnavailable(PUBLISH_TIMEOUT_MS + 1_500);
      // Recreate through the same code path the service uses.
      await ensureTopology(down.jsm, { duplicateWindowMs: 120_000, ackWaitMs: 30_000, maxAckPending: 1_000 });
      const { res } = await post();
      expect(res.status).toBe(202);
      expect(await down.intakeCount()).toBe(1);
    },
    TEST_TIMEOUT,
  );

  test(
    "the broker drops a republish with the same Nats-Msg-Id (the dedup the intake relies on)",
    async () => {
      const info = await down.jsm.streams.info(INTAKE_STREAM);
      const last = await down.jsm.streams.getMessage(INTAKE_STREAM, { seq: info.state.last_seq });
      if (!last) throw new Error("no message");
      const ack = await down.js.publish(last.subject, last.data, {
        msgID: last.header.get("Nats-Msg-Id"),
        expect: { streamName: INTAKE_STREAM },
      });
      expect(ack.duplicate).toBe(true);
      expect(await down.intakeCount()).toBe(info.state.messages);
    },
    TEST_TIMEOUT,
  );

  test(
    "server stopped → 503 UNAVAILABLE with Retry-After within the publish timeout, never 202",
    async () => {
      await down.nats.stop();
      for (let i = 0; i < 3; i++) await expectUnavailable(PUBLISH_TIMEOUT_MS + 1_500);
      // Concurrent requests fail the same way, each within the bound.
      const answers = await Promise.all(Array.from({ length: 5 }, () => post()));
      for (const { res, elapsedMs } of answers) {
        expect(res.status).toBe(503);
        expect(res.headers.get("retry-after")).toBe("1");
        expect((await readError(res)).code).toBe("UNAVAILABLE");
        expect(elapsedMs).toBeLessThan(PUBLISH_TIMEOUT_MS + 1_500);
      }
      // The failure is logged as a warning with its cause, not as an unhandled error.
      expect(down.log.lines.some((l) => l.level === "warn" && l.msg === "dependency unavailable")).toBe(true);
      expect(down.log.lines.some((l) => l.level === "error")).toBe(false);
    },
    TEST_TIMEOUT,
  );

  test(
    "validation and auth still answer 4xx while NATS is down (they never touch it)",
    async () => {
      const bad = await down.app.handle(postOrder({ ...validOrder, price: "0" }, { token: downToken }));
      expect(bad.status).toBe(400);
      const unauth = await down.app.handle(postOrder(validOrder, {}));
      expect(unauth.status).toBe(401);
      const health = await down.app.handle(new Request(`${BASE}/healthz`));
      expect(health.status).toBe(200);
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
    dataDir = await mkdtemp(join(tmpdir(), "http-api-int-"));
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
