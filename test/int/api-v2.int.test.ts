/**
 * The second half of the HTTP API against a real nats-server and a real PostgreSQL, driven in-process with
 * app.handle(Request): POST /orders/:orderId/cancel, the admin routes POST /deposits and /transfers,
 * Idempotency-Key (replays, conflicts, per-user scope, concurrency, half-finished first attempts, publish
 * failures), GET /events/:sequenceId and GET /references/:referenceId (unknown, pending, sequenced).
 *
 * Every refusal is also checked to have published nothing: the SEQUENCE stream's message count must not move.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { Kvm } from "@nats-io/kv";
import { createHttpApp } from "../../src/adapters/http/app.ts";
import { Metrics } from "../../src/adapters/metrics.ts";
import { IDEMPOTENCY_BUCKET, KvIdempotencyStore } from "../../src/adapters/nats/idempotency-kv.ts";
import { JetStreamIntakeLookup } from "../../src/adapters/nats/intake-lookup.ts";
import { type IntakePublisher, JetStreamIntakePublisher } from "../../src/adapters/nats/intake-publisher.ts";
import { INTAKE_STREAM } from "../../src/adapters/nats/topology.ts";
import { IntakeService } from "../../src/app/intake.ts";
import {
  type CreateOrder,
  encodeIntakeEvent,
  type Intake,
  type IntakeEvent,
} from "../../src/domain/events.ts";
import { SnowflakeGenerator } from "../../src/domain/ids.ts";
import { type RunningSequencer, runSequencer, type Stack, waitFor } from "../support/stack.ts";
import {
  BASE,
  HARNESS_LIMITS,
  type Harness,
  jsonRequest,
  readError,
  readJson,
  startHarness,
  within,
} from "./http-helpers.ts";

const SETUP_TIMEOUT = 60_000;
const TEST_TIMEOUT = 20_000;

const USER = 1001n;
const OTHER_USER = 1002n;
const ADMIN = 1n;
const OTHER_ADMIN = 2n;

const deposit = { userId: "5", assetId: "6", amount: "100.50" };
const transfer = { fromUserId: "5", toUserId: "7", assetId: "6", amount: "12.25" };
const order = { direction: "BUY", price: "10.5", quantity: "2" };

type Options = { token?: string; key?: string; authorization?: string };

/** A request as a client sends it, optionally with an Idempotency-Key header. */
function request(method: string, path: string, body: unknown, options: Options = {}): Request {
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
const freshKey = (label = "k") => `${label}-${Date.now().toString(36)}-${++keyCounter}`;

// ---------------------------------------------------------------------------------------------------------------
// Main harness
// ---------------------------------------------------------------------------------------------------------------

let h: Harness;
let userToken: string;
let otherUserToken: string;
let adminToken: string;
let otherAdminToken: string;

beforeAll(async () => {
  h = await startHarness();
  userToken = await h.tokens.mint(USER);
  otherUserToken = await h.tokens.mint(OTHER_USER);
  adminToken = await h.tokens.mint(ADMIN, { admin: true });
  otherAdminToken = await h.tokens.mint(OTHER_ADMIN, { admin: true });
}, SETUP_TIMEOUT);

afterAll(async () => {
  await h?.close();
}, SETUP_TIMEOUT);

async function handle(
  req: Request,
  app: { handle(r: Request): Promise<Response> } = h.app,
): Promise<Response> {
  return within(10_000, `${req.method} ${new URL(req.url).pathname}`, () => app.handle(req));
}

type Stored = { subject: string; msgId: string | undefined; body: Record<string, string>; seq: number };

async function intakeAt(seq: number): Promise<Stored> {
  const msg = await h.jsm.streams.getMessage(INTAKE_STREAM, { seq });
  if (!msg) throw new Error(`no SEQUENCE message at ${seq}`);
  return { subject: msg.subject, msgId: msg.header.get("Nats-Msg-Id"), body: msg.json(), seq };
}

/** Sends a request that must be refused with status/code/field and must publish nothing. */
async function expectRefused(req: Request, status: number, code: string, field?: string) {
  const before = await h.intakeCount();
  const res = await handle(req);
  const error = await readError(res);
  expect({ status: res.status, code: error.code, field: error.field }).toEqual({ status, code, field });
  expect(await h.intakeCount()).toBe(before);
  return error;
}

/** Sends an accepted request: 202, exactly one new SEQUENCE message; returns the answer and that message. */
async function expectAccepted(req: Request): Promise<{ answer: Record<string, string>; stored: Stored }> {
  const before = await h.intakeCount();
  const res = await handle(req);
  const text = await res.text();
  expect({ status: res.status, text }).toEqual({ status: 202, text: expect.any(String) });
  expect(res.headers.get("content-type") ?? "").toMatch(/^application\/json/);
  const answer = JSON.parse(text) as Record<string, string>;
  expect(await h.intakeCount()).toBe(before + 1);
  const stored = await intakeAt(before + 1);
  expect(stored.msgId).toBe(answer.referenceId);
  expect(stored.body.referenceId).toBe(answer.referenceId);
  return { answer, stored };
}

function expectRecentIso(value: string | undefined) {
  expect(typeof value).toBe("string");
  const time = Date.parse(value ?? "");
  expect(new Date(time).toISOString()).toBe(value ?? "");
  expect(Math.abs(Date.now() - time)).toBeLessThan(60_000);
}

// ---------------------------------------------------------------------------------------------------------------
// POST /orders/:orderId/cancel
// ---------------------------------------------------------------------------------------------------------------

describe("POST /orders/:orderId/cancel", () => {
  test(
    "202 {referenceId, orderId = the path id}; CANCEL_ORDER on sequence.cancel_order for the token's user",
    async () => {
      const { answer, stored } = await expectAccepted(
        request("POST", "/orders/123456/cancel", undefined, { token: userToken }),
      );
      expect(Object.keys(answer).sort()).toEqual(["orderId", "referenceId"]);
      expect(answer.orderId).toBe("123456");
      expect(answer.referenceId).toMatch(/^[1-9][0-9]{0,18}$/);
      expect(stored.subject).toBe("sequence.cancel_order");
      expect(Object.keys(stored.body)).toEqual(["referenceId", "type", "createdAt", "userId", "orderId"]);
      expect(stored.body).toEqual({
        referenceId: answer.referenceId ?? "missing",
        type: "CANCEL_ORDER",
        createdAt: expect.any(String),
        userId: USER.toString(),
        orderId: "123456",
      });
      expectRecentIso(stored.body.createdAt);
    },
    TEST_TIMEOUT,
  );

  test(
    "the largest int64 order id survives; an admin token may cancel too",
    async () => {
      const max = "9223372036854775807";
      const { answer, stored } = await expectAccepted(
        request("POST", `/orders/${max}/cancel`, undefined, { token: adminToken }),
      );
      expect(answer.orderId).toBe(max);
      expect(stored.body.orderId).toBe(max);
      expect(stored.body.userId).toBe(ADMIN.toString());
    },
    TEST_TIMEOUT,
  );

  test(
    "the route takes no body: none → 202; any body, even {} → 400, nothing published (issue 13)",
    async () => {
      const { answer } = await expectAccepted(
        request("POST", "/orders/77/cancel", undefined, { token: userToken }),
      );
      expect(answer.orderId).toBe("77");
      const error = await expectRefused(
        request("POST", "/orders/77/cancel", {}, { token: userToken }),
        400,
        "INVALID_INPUT",
      );
      expect(error.message).toContain("no request body");
    },
    TEST_TIMEOUT,
  );

  for (const bad of ["0", "abc", "-1", "9223372036854775808", "01", "1.5", "1e3", "99999999999999999999"]) {
    test(
      `orderId ${JSON.stringify(bad)} → 400 field orderId, nothing published`,
      async () => {
        const error = await expectRefused(
          request("POST", `/orders/${bad}/cancel`, undefined, { token: userToken }),
          400,
          "INVALID_INPUT",
          "orderId",
        );
        expect(error.message).toContain("orderId");
      },
      TEST_TIMEOUT,
    );
  }

  test(
    "no token → 401; a bad token → 401; nothing published",
    async () => {
      await expectRefused(request("POST", "/orders/5/cancel", undefined), 401, "UNAUTHENTICATED");
      await expectRefused(
        request("POST", "/orders/5/cancel", undefined, { authorization: "Bearer not.a.token" }),
        401,
        "UNAUTHENTICATED",
      );
    },
    TEST_TIMEOUT,
  );
});

// ---------------------------------------------------------------------------------------------------------------
// POST /deposits and POST /transfers (admin only)
// ---------------------------------------------------------------------------------------------------------------

describe("POST /deposits", () => {
  test(
    "admin → 202 {referenceId} only; DEPOSIT on sequence.deposit with canonical amount",
    async () => {
      const { answer, stored } = await expectAccepted(
        request("POST", "/deposits", deposit, { token: adminToken }),
      );
      expect(Object.keys(answer)).toEqual(["referenceId"]);
      expect(stored.subject).toBe("sequence.deposit");
      expect(Object.keys(stored.body)).toEqual([
        "referenceId",
        "type",
        "createdAt",
        "userId",
        "assetId",
        "amount",
      ]);
      expect(stored.body).toEqual({
        referenceId: answer.referenceId ?? "missing",
        type: "DEPOSIT",
        createdAt: expect.any(String),
        userId: "5",
        assetId: "6",
        amount: "100.5",
      });
      expectRecentIso(stored.body.createdAt);
    },
    TEST_TIMEOUT,
  );

  test(
    "amount bounds: 15 integer digits and 8 decimals accepted",
    async () => {
      const { stored } = await expectAccepted(
        request(
          "POST",
          "/deposits",
          { ...deposit, amount: "999999999999999.99999999" },
          { token: adminToken },
        ),
      );
      expect(stored.body.amount).toBe("999999999999999.99999999");
      const tiny = await expectAccepted(
        request("POST", "/deposits", { ...deposit, amount: "0.00000001" }, { token: adminToken }),
      );
      expect(tiny.stored.body.amount).toBe("0.00000001");
    },
    TEST_TIMEOUT,
  );

  test(
    "user token → 403 FORBIDDEN, nothing published; no token → 401",
    async () => {
      await expectRefused(request("POST", "/deposits", deposit, { token: userToken }), 403, "FORBIDDEN");
      await expectRefused(
        request("POST", "/deposits", deposit, { token: userToken, key: freshKey() }),
        403,
        "FORBIDDEN",
      );
      await expectRefused(request("POST", "/deposits", deposit), 401, "UNAUTHENTICATED");
    },
    TEST_TIMEOUT,
  );

  const invalid: [string, Record<string, unknown>, string][] = [
    ["missing userId", { assetId: "6", amount: "1" }, "userId"],
    ["missing assetId", { userId: "5", amount: "1" }, "assetId"],
    ["missing amount", { userId: "5", assetId: "6" }, "amount"],
    ["extra field", { ...deposit, note: "x" }, "note"],
    ["extra field of another type", { ...deposit, toUserId: "8" }, "toUserId"],
    ["amount 9 decimals", { ...deposit, amount: "1.123456789" }, "amount"],
    ["amount 16 integer digits", { ...deposit, amount: "1234567890123456" }, "amount"],
    ["amount zero", { ...deposit, amount: "0.000" }, "amount"],
    ["amount exponent", { ...deposit, amount: "1e5" }, "amount"],
    ["amount negative", { ...deposit, amount: "-1" }, "amount"],
    ["amount as a number", { ...deposit, amount: 1 }, "amount"],
    ["assetId zero", { ...deposit, assetId: "0" }, "assetId"],
    ["assetId above int64", { ...deposit, assetId: "9223372036854775808" }, "assetId"],
    ["userId as a number", { ...deposit, userId: 5 }, "userId"],
  ];
  for (const [what, body, field] of invalid) {
    test(
      `${what} → 400 field ${field}`,
      async () => {
        await expectRefused(
          request("POST", "/deposits", body, { token: adminToken }),
          400,
          "INVALID_INPUT",
          field,
        );
      },
      TEST_TIMEOUT,
    );
  }
});

describe("POST /transfers", () => {
  test(
    "admin → 202 {referenceId} only; TRANSFER on sequence.transfer",
    async () => {
      const { answer, stored } = await expectAccepted(
        request("POST", "/transfers", transfer, { token: adminToken }),
      );
      expect(Object.keys(answer)).toEqual(["referenceId"]);
      expect(stored.subject).toBe("sequence.transfer");
      expect(Object.keys(stored.body)).toEqual([
        "referenceId",
        "type",
        "createdAt",
        "fromUserId",
        "toUserId",
        "assetId",
        "amount",
      ]);
      expect(stored.body).toEqual({
        referenceId: answer.referenceId ?? "missing",
        type: "TRANSFER",
        createdAt: expect.any(String),
        fromUserId: "5",
        toUserId: "7",
        assetId: "6",
        amount: "12.25",
      });
    },
    TEST_TIMEOUT,
  );

  test(
    "user token → 403 FORBIDDEN, nothing published; no token → 401",
    async () => {
      await expectRefused(request("POST", "/transfers", transfer, { token: userToken }), 403, "FORBIDDEN");
      await expectRefused(request("POST", "/transfers", transfer), 401, "UNAUTHENTICATED");
    },
    TEST_TIMEOUT,
  );

  const invalid: [string, Record<string, unknown>, string][] = [
    ["same from and to", { ...transfer, toUserId: "5" }, "toUserId"],
    ["missing fromUserId", { toUserId: "7", assetId: "6", amount: "1" }, "fromUserId"],
    ["missing toUserId", { fromUserId: "5", assetId: "6", amount: "1" }, "toUserId"],
    ["missing assetId", { fromUserId: "5", toUserId: "7", amount: "1" }, "assetId"],
    ["missing amount", { fromUserId: "5", toUserId: "7", assetId: "6" }, "amount"],
    ["extra userId", { ...transfer, userId: "5" }, "userId"],
    ["amount 9 decimals", { ...transfer, amount: "0.000000001" }, "amount"],
    ["amount with a sign", { ...transfer, amount: "+1" }, "amount"],
    ["amount with spaces", { ...transfer, amount: " 1" }, "amount"],
    ["fromUserId zero", { ...transfer, fromUserId: "0" }, "fromUserId"],
    ["toUserId not digits", { ...transfer, toUserId: "x" }, "toUserId"],
  ];
  for (const [what, body, field] of invalid) {
    test(
      `${what} → 400 field ${field}`,
      async () => {
        await expectRefused(
          request("POST", "/transfers", body, { token: adminToken }),
          400,
          "INVALID_INPUT",
          field,
        );
      },
      TEST_TIMEOUT,
    );
  }
});

// ---------------------------------------------------------------------------------------------------------------
// Idempotency-Key
// ---------------------------------------------------------------------------------------------------------------

type Route = { name: string; path: string; body: unknown; token: () => string; otherToken: () => string };
const routes: Route[] = [
  {
    name: "POST /orders",
    path: "/orders",
    body: order,
    token: () => userToken,
    otherToken: () => otherUserToken,
  },
  {
    name: "POST /orders/:id/cancel",
    path: "/orders/4242/cancel",
    body: undefined,
    token: () => userToken,
    otherToken: () => otherUserToken,
  },
  {
    name: "POST /deposits",
    path: "/deposits",
    body: deposit,
    token: () => adminToken,
    otherToken: () => otherAdminToken,
  },
  {
    name: "POST /transfers",
    path: "/transfers",
    body: transfer,
    token: () => adminToken,
    otherToken: () => otherAdminToken,
  },
];

describe("Idempotency-Key", () => {
  for (const route of routes) {
    test(
      `${route.name}: same key and body twice → same status and body, ONE message on SEQUENCE`,
      async () => {
        const key = freshKey();
        const before = await h.intakeCount();
        const first = await handle(request("POST", route.path, route.body, { token: route.token(), key }));
        const firstText = await first.text();
        expect(first.status).toBe(202);
        for (let i = 0; i < 3; i++) {
          const again = await handle(request("POST", route.path, route.body, { token: route.token(), key }));
          expect({ status: again.status, text: await again.text() }).toEqual({
            status: 202,
            text: firstText,
          });
        }
        expect(await h.intakeCount()).toBe(before + 1);
        const stored = await intakeAt(before + 1);
        const answer = JSON.parse(firstText) as Record<string, string>;
        expect(stored.msgId).toBe(answer.referenceId);
        // The scoped key travels with the event: <user id>:<key>.
        const userOf = route.token() === adminToken ? ADMIN : USER;
        expect(stored.body.idempotencyKey).toBe(`${userOf}:${key}`);
        expect(Object.keys(stored.body).at(-1)).toBe("idempotencyKey");
      },
      TEST_TIMEOUT,
    );

    test(
      `${route.name}: same key from another user → independent (two events)`,
      async () => {
        const key = freshKey();
        const before = await h.intakeCount();
        const a = await handle(request("POST", route.path, route.body, { token: route.token(), key }));
        const b = await handle(request("POST", route.path, route.body, { token: route.otherToken(), key }));
        expect([a.status, b.status]).toEqual([202, 202]);
        const [ra, rb] = [
          (await readJson(a)) as Record<string, string>,
          (await readJson(b)) as Record<string, string>,
        ];
        expect(ra.referenceId).not.toBe(rb.referenceId);
        expect(await h.intakeCount()).toBe(before + 2);
        const keys = [
          (await intakeAt(before + 1)).body.idempotencyKey,
          (await intakeAt(before + 2)).body.idempotencyKey,
        ];
        expect(new Set(keys).size).toBe(2);
        expect(keys.every((k) => k?.endsWith(`:${key}`))).toBe(true);
      },
      TEST_TIMEOUT,
    );
  }

  test(
    "same key, different body → 409 CONFLICT (field Idempotency-Key), nothing published",
    async () => {
      const key = freshKey();
      const first = await handle(request("POST", "/deposits", deposit, { token: adminToken, key }));
      expect(first.status).toBe(202);
      const error = await expectRefused(
        request("POST", "/deposits", { ...deposit, amount: "100.51" }, { token: adminToken, key }),
        409,
        "CONFLICT",
        "Idempotency-Key",
      );
      expect(error.message).toContain("Idempotency-Key");
      // Another route under the same key is a different request too.
      await expectRefused(
        request("POST", "/transfers", transfer, { token: adminToken, key }),
        409,
        "CONFLICT",
        "Idempotency-Key",
      );
      // Another order id on cancel is a different request.
      const cancelKey = freshKey();
      expect(
        (await handle(request("POST", "/orders/1/cancel", undefined, { token: userToken, key: cancelKey })))
          .status,
      ).toBe(202);
      await expectRefused(
        request("POST", "/orders/2/cancel", undefined, { token: userToken, key: cancelKey }),
        409,
        "CONFLICT",
        "Idempotency-Key",
      );
    },
    TEST_TIMEOUT,
  );

  test(
    "the same request written differently (100.50 vs 100.5000) is the same request: same answer, one event",
    async () => {
      const key = freshKey();
      const before = await h.intakeCount();
      const a = await handle(request("POST", "/deposits", deposit, { token: adminToken, key }));
      const b = await handle(
        request("POST", "/deposits", { ...deposit, amount: "100.5000" }, { token: adminToken, key }),
      );
      expect([a.status, b.status]).toEqual([202, 202]);
      expect(await b.text()).toBe(await a.text());
      expect(await h.intakeCount()).toBe(before + 1);
    },
    TEST_TIMEOUT,
  );

  const badKeys: [string, string][] = [
    ["65 characters", "k".repeat(65)],
    ["a space inside", "a b"],
    ["empty", ""],
    ["a dot", "a.b"],
    ["a colon", "a:b"],
    ["a slash", "a/b"],
    ["non-ASCII", "clé"],
  ];
  for (const [what, key] of badKeys) {
    test(
      `Idempotency-Key with ${what} → 400 field Idempotency-Key, nothing published`,
      async () => {
        const req = request("POST", "/orders", order, { token: userToken });
        // Headers#set refuses non-ISO-8859-1; latin-1 "é" is a valid header byte.
        req.headers.set("idempotency-key", key);
        expect(req.headers.get("idempotency-key")).toBe(key);
        await expectRefused(req, 400, "INVALID_INPUT", "Idempotency-Key");
        await expectRefused(
          request("POST", "/deposits", deposit, { token: adminToken, key }),
          400,
          "INVALID_INPUT",
          "Idempotency-Key",
        );
      },
      TEST_TIMEOUT,
    );
  }

  test(
    "a 64-character key of every allowed character class is accepted",
    async () => {
      const key = `Az09_-${"x".repeat(58)}`;
      expect(key).toHaveLength(64);
      const { stored } = await expectAccepted(request("POST", "/orders", order, { token: userToken, key }));
      expect(stored.body.idempotencyKey).toBe(`${USER}:${key}`);
    },
    TEST_TIMEOUT,
  );

  for (const route of routes) {
    test(
      `${route.name}: 20 concurrent requests with one key → all 202 with the same referenceId, one SEQUENCE message`,
      async () => {
        const key = freshKey("race");
        const before = await h.intakeCount();
        const responses = await Promise.all(
          Array.from({ length: 20 }, () =>
            handle(request("POST", route.path, route.body, { token: route.token(), key })),
          ),
        );
        const bodies = await Promise.all(
          responses.map(async (r) => ({ status: r.status, text: await r.text() })),
        );
        expect(bodies.map((b) => b.status)).toEqual(Array(20).fill(202));
        expect(new Set(bodies.map((b) => b.text)).size).toBe(1);
        const answer = JSON.parse(bodies[0]?.text ?? "{}") as Record<string, string>;
        expect(await h.intakeCount()).toBe(before + 1);
        expect((await intakeAt(before + 1)).msgId).toBe(answer.referenceId);
      },
      TEST_TIMEOUT,
    );
  }

  test(
    "20 concurrent requests with one key and two different bodies → one winner body (202, one answer), the other 409",
    async () => {
      const key = freshKey("race-conflict");
      const before = await h.intakeCount();
      const bodies = Array.from({ length: 20 }, (_, i) => ({ ...deposit, amount: i % 2 === 0 ? "1" : "2" }));
      const responses = await Promise.all(
        bodies.map((body) => handle(request("POST", "/deposits", body, { token: adminToken, key }))),
      );
      const results = await Promise.all(
        responses.map(async (r, i) => ({
          amount: bodies[i]?.amount,
          status: r.status,
          text: await r.text(),
        })),
      );
      const accepted = results.filter((r) => r.status === 202);
      const refused = results.filter((r) => r.status !== 202);
      // Every 202 is for one body with one answer; every other answer is a 409 for the other body.
      expect(new Set(accepted.map((r) => r.amount)).size).toBe(1);
      expect(new Set(accepted.map((r) => r.text)).size).toBe(1);
      expect(accepted).toHaveLength(10);
      expect(refused.map((r) => r.status)).toEqual(Array(10).fill(409));
      expect(new Set(refused.map((r) => r.amount)).size).toBe(1);
      expect(refused[0]?.amount).not.toBe(accepted[0]?.amount);
      expect(await h.intakeCount()).toBe(before + 1);
      const stored = await intakeAt(before + 1);
      expect(stored.body.amount).toBe(accepted[0]?.amount ?? "");
    },
    TEST_TIMEOUT,
  );
});

// ---------------------------------------------------------------------------------------------------------------
// Half-finished first attempts: a KV record without an answer, and a publish that fails once
// ---------------------------------------------------------------------------------------------------------------

describe("Idempotency-Key: completing a first attempt that did not finish", () => {
  const ids = new SnowflakeGenerator(600);

  /** Writes the record a first attempt leaves behind when it dies after create, before the answer. */
  async function halfFinishedOrder(key: string, publishToo: boolean): Promise<Intake<CreateOrder>> {
    const event: Intake<CreateOrder> = {
      type: "CREATE_ORDER",
      userId: USER,
      orderId: ids.next(),
      direction: "BUY",
      price: "10.5",
      quantity: "2",
      referenceId: ids.next(),
      createdAt: new Date().toISOString(),
      idempotencyKey: `${USER}:${key}`,
    };
    const store = await KvIdempotencyStore.open(h.js, 60_000);
    const created = await store.create(`${USER}.${key}`, {
      request: JSON.stringify({
        type: "CREATE_ORDER",
        userId: USER.toString(),
        direction: "BUY",
        price: "10.5",
        quantity: "2",
      }),
      event: encodeIntakeEvent(event),
      answer: null,
    });
    expect(created).toBe(true);
    // create-if-absent: a second create on the key is refused.
    expect(await store.create(`${USER}.${key}`, { request: "x", event: "y", answer: null })).toBe(false);
    if (publishToo) await new JetStreamIntakePublisher(h.js, 5_000).publish(event);
    return event;
  }

  test(
    "record without answer, never published → the retry publishes THAT event and answers with its ids",
    async () => {
      const key = freshKey("half");
      const event = await halfFinishedOrder(key, false);
      const { answer, stored } = await expectAccepted(
        request("POST", "/orders", { ...order, price: "10.50" }, { token: userToken, key }),
      );
      expect(answer).toEqual({
        referenceId: event.referenceId.toString(),
        orderId: event.orderId.toString(),
      });
      expect(stored.body).toEqual(JSON.parse(encodeIntakeEvent(event)));
      const record = await (await KvIdempotencyStore.open(h.js, 60_000)).get(`${USER}.${key}`);
      expect(record?.answer).toEqual({ referenceId: answer.referenceId ?? "", orderId: answer.orderId });
      // Now answered from the store: no new message.
      const before = await h.intakeCount();
      const again = await handle(request("POST", "/orders", order, { token: userToken, key }));
      expect(again.status).toBe(202);
      expect(await readJson(again)).toEqual(answer);
      expect(await h.intakeCount()).toBe(before);
    },
    TEST_TIMEOUT,
  );

  test(
    "record without answer, already published → the retry answers with its ids and the broker drops the republish",
    async () => {
      const key = freshKey("half-pub");
      const event = await halfFinishedOrder(key, true);
      const before = await h.intakeCount();
      const res = await handle(request("POST", "/orders", order, { token: userToken, key }));
      expect(res.status).toBe(202);
      expect(await readJson(res)).toEqual({
        referenceId: event.referenceId.toString(),
        orderId: event.orderId.toString(),
      });
      expect(await h.intakeCount()).toBe(before);
      expect((await intakeAt(before)).msgId).toBe(event.referenceId.toString());
    },
    TEST_TIMEOUT,
  );

  test(
    "a half-finished record and a different body → 409, the record's event is not published",
    async () => {
      const key = freshKey("half-conflict");
      await halfFinishedOrder(key, false);
      await expectRefused(
        request("POST", "/orders", { ...order, quantity: "3" }, { token: userToken, key }),
        409,
        "CONFLICT",
        "Idempotency-Key",
      );
    },
    TEST_TIMEOUT,
  );

  /** A publisher that fails on demand: before the write (broker refused) or after it (PubAck lost). */
  class FlakyPublisher implements IntakePublisher {
    failBefore = 0;
    failAfter = 0;
    readonly attempts: IntakeEvent[] = [];
    constructor(private readonly real: IntakePublisher) {}
    async publish(event: IntakeEvent): Promise<void> {
      this.attempts.push(event);
      if (this.failBefore > 0) {
        this.failBefore--;
        throw new Error("injected: broker refused");
      }
      await this.real.publish(event);
      if (this.failAfter > 0) {
        this.failAfter--;
        throw new Error("injected: PubAck lost");
      }
    }
  }

  async function flakyApp() {
    const publisher = new FlakyPublisher(new JetStreamIntakePublisher(h.js, 5_000));
    const app = createHttpApp({
      intake: new IntakeService(
        new SnowflakeGenerator(601),
        publisher,
        await KvIdempotencyStore.open(h.js, 60_000),
        h.store,
      ),
      tokens: h.tokens,
      metrics: new Metrics(),
      store: h.store,
      pending: new JetStreamIntakeLookup(h.jsm),
      readiness: async () => ({}),
      bodyLimitBytes: 16_384,
      limits: HARNESS_LIMITS,
      log: h.log,
    });
    return { app, publisher };
  }

  test(
    "publish fails once before the write → 503 + Retry-After; the retry publishes the SAME event once",
    async () => {
      const { app, publisher } = await flakyApp();
      publisher.failBefore = 1;
      const key = freshKey("flaky");
      const before = await h.intakeCount();
      const failed = await handle(request("POST", "/transfers", transfer, { token: adminToken, key }), app);
      const error = await readError(failed);
      expect({ status: failed.status, code: error.code }).toEqual({ status: 503, code: "UNAVAILABLE" });
      expect(failed.headers.get("retry-after")).toBe("1");
      expect(await h.intakeCount()).toBe(before);

      const retry = await handle(request("POST", "/transfers", transfer, { token: adminToken, key }), app);
      expect(retry.status).toBe(202);
      const answer = (await readJson(retry)) as { referenceId: string };
      expect(answer.referenceId).toBe(publisher.attempts[0]?.referenceId.toString() ?? "");
      expect(publisher.attempts).toHaveLength(2);
      expect(encodeIntakeEvent(publisher.attempts[1] as IntakeEvent)).toBe(
        encodeIntakeEvent(publisher.attempts[0] as IntakeEvent),
      );
      expect(await h.intakeCount()).toBe(before + 1);
      expect((await intakeAt(before + 1)).msgId).toBe(answer.referenceId);

      // The main app (another replica) sees the same record and answers the same.
      const elsewhere = await handle(request("POST", "/transfers", transfer, { token: adminToken, key }));
      expect(elsewhere.status).toBe(202);
      expect(await readJson(elsewhere)).toEqual(answer);
      expect(await h.intakeCount()).toBe(before + 1);
    },
    TEST_TIMEOUT,
  );

  test(
    "publish stored but the PubAck is lost → 503; the retry gets that referenceId and SEQUENCE holds one message",
    async () => {
      const { app, publisher } = await flakyApp();
      publisher.failAfter = 1;
      const key = freshKey("lost-ack");
      const before = await h.intakeCount();
      const failed = await handle(request("POST", "/deposits", deposit, { token: adminToken, key }), app);
      expect(failed.status).toBe(503);
      await failed.text();
      expect(await h.intakeCount()).toBe(before + 1); // it did land
      const landed = await intakeAt(before + 1);

      const retry = await handle(request("POST", "/deposits", deposit, { token: adminToken, key }), app);
      expect(retry.status).toBe(202);
      expect(await readJson(retry)).toEqual({ referenceId: landed.msgId });
      expect(await h.intakeCount()).toBe(before + 1);
    },
    TEST_TIMEOUT,
  );
});

// ---------------------------------------------------------------------------------------------------------------
// GET /events/:sequenceId and GET /references/:referenceId, with and without a sequencer
// ---------------------------------------------------------------------------------------------------------------

describe("lookups: GET /events/:sequenceId and GET /references/:referenceId", () => {
  // Its own servers: the sequencer started here takes everything on SEQUENCE.
  let r: Harness;
  let running: RunningSequencer | undefined;
  let admin = "";
  let user = "";
  let reader = "";

  beforeAll(async () => {
    r = await startHarness();
    admin = await r.tokens.mint(ADMIN, { admin: true });
    user = await r.tokens.mint(USER);
    reader = await r.tokens.mint(1n, { role: "reader" });
  }, SETUP_TIMEOUT);

  afterAll(async () => {
    await running?.stop();
    await r?.close();
  }, SETUP_TIMEOUT);

  // As a reader, who may look up any event (who else may: read-access.int.test.ts).
  const get = async (path: string) =>
    within(10_000, `GET ${path}`, () =>
      r.app.handle(new Request(`${BASE}${path}`, { headers: { authorization: `Bearer ${reader}` } })),
    );
  const post = async (path: string, body: unknown, token: string, key?: string) => {
    const res = await within(10_000, `POST ${path}`, () =>
      r.app.handle(request("POST", path, body, { token, ...(key === undefined ? {} : { key }) })),
    );
    expect(res.status).toBe(202);
    return (await readJson(res)) as Record<string, string>;
  };

  /** The harness's connections and database as a Stack, so runSequencer works on the same nats and DB. */
  const stackOf = (x: Harness): Stack => ({
    nc: x.nc,
    js: x.js,
    jsm: x.jsm,
    database: x.database,
    store: x.store,
    intake: new JetStreamIntakePublisher(x.js, 5_000),
    close: async () => {},
  });

  async function expectError(path: string, status: number, code: string, field?: string) {
    const res = await get(path);
    const error = await readError(res);
    expect({ path, status: res.status, code: error.code, field: error.field }).toEqual({
      path,
      status,
      code,
      field,
    });
  }

  test(
    "unknown ids → 404 NOT_FOUND; bad ids → 400 naming the parameter",
    async () => {
      await expectError("/events/1", 404, "NOT_FOUND");
      await expectError("/events/9223372036854775807", 404, "NOT_FOUND");
      await expectError("/references/123456789", 404, "NOT_FOUND");
      for (const bad of ["0", "abc", "-1", "9223372036854775808", "01", "1.0", "%20"]) {
        await expectError(`/events/${bad}`, 400, "INVALID_INPUT", "sequenceId");
        await expectError(`/references/${bad}`, 400, "INVALID_INPUT", "referenceId");
      }
    },
    TEST_TIMEOUT,
  );

  let depositRef = "";
  let cancelRef = "";
  let keyedRef = "";
  const key = "lookup-key";

  test(
    "accepted while no sequencer runs → {status: pending}",
    async () => {
      depositRef = (await post("/deposits", deposit, admin)).referenceId ?? "";
      cancelRef = (await post("/orders/31/cancel", undefined, user)).referenceId ?? "";
      keyedRef = (await post("/transfers", transfer, admin, key)).referenceId ?? "";
      for (const ref of [depositRef, cancelRef, keyedRef]) {
        const res = await get(`/references/${ref}`);
        expect(res.status).toBe(200);
        expect(await readJson(res)).toEqual({ status: "pending" });
      }
      // Something never accepted is still unknown.
      await expectError("/references/42", 404, "NOT_FOUND");
      await expectError("/events/1", 404, "NOT_FOUND");
    },
    TEST_TIMEOUT,
  );

  test(
    "once a sequencer has processed them → the sequenced event, also by GET /events/:sequenceId",
    async () => {
      running = await runSequencer(stackOf(r));
      await waitFor("3 events", async () => (await r.store.head()).sequenceId === 3n);

      const byRef: Record<string, unknown>[] = [];
      for (const ref of [depositRef, cancelRef, keyedRef]) {
        const res = await get(`/references/${ref}`);
        expect(res.status).toBe(200);
        expect(res.headers.get("content-type") ?? "").toMatch(/^application\/json/);
        const text = await res.text();
        const event = JSON.parse(text) as Record<string, string>;
        expect(event.referenceId).toBe(ref);
        // GET /events/:sequenceId answers the same bytes.
        const bySeq = await get(`/events/${event.sequenceId}`);
        expect(bySeq.status).toBe(200);
        expect(await bySeq.text()).toBe(text);
        byRef.push(event);
      }
      expect(byRef.map((e) => [e.sequenceId, e.type])).toEqual([
        ["1", "DEPOSIT"],
        ["2", "CANCEL_ORDER"],
        ["3", "TRANSFER"],
      ]);
      expect(byRef[0]).toEqual({
        sequenceId: "1",
        previousId: "0",
        referenceId: depositRef,
        type: "DEPOSIT",
        createdAt: expect.any(String),
        sequencedAt: expect.any(String),
        userId: "5",
        assetId: "6",
        amount: "100.5",
      });
      expect(byRef[1]).toMatchObject({ userId: USER.toString(), orderId: "31" });
      // The idempotency key is stored, not published.
      expect(Object.keys(byRef[2] ?? {})).not.toContain("idempotencyKey");
      await expectError("/events/4", 404, "NOT_FOUND");
    },
    TEST_TIMEOUT,
  );

  test(
    "after the sequencer: a replay with the same key still gets the first answer and adds nothing",
    async () => {
      const before = await r.intakeCount();
      const again = await post("/transfers", transfer, admin, key);
      expect(again.referenceId).toBe(keyedRef);
      expect(await r.intakeCount()).toBe(before);
    },
    TEST_TIMEOUT,
  );

  test(
    "behind the KV window (record gone) the retry gets the logged answer; a different body is a conflict",
    async () => {
      const kv = await new Kvm(r.js).open(IDEMPOTENCY_BUCKET);
      await kv.delete(`${ADMIN}.${key}`);
      const before = await r.intakeCount();
      const late = await post("/transfers", transfer, admin, key);
      expect(late.referenceId).toBe(keyedRef);
      expect(await r.intakeCount()).toBe(before);
      expect((await r.store.head()).sequenceId).toBe(3n);
      const res = await get(`/references/${late.referenceId}`);
      expect(res.status).toBe(200);
      await res.text();

      await kv.delete(`${ADMIN}.${key}`);
      const otherBody = JSON.stringify({ ...transfer, amount: "999" });
      const conflict = await r.app.handle(
        new Request("http://localhost/transfers", {
          method: "POST",
          headers: {
            "content-type": "application/json",
            authorization: `Bearer ${admin}`,
            "idempotency-key": key,
            "content-length": String(Buffer.byteLength(otherBody)),
          },
          body: otherBody,
        }),
      );
      expect(conflict.status).toBe(409);
      await conflict.text();
    },
    TEST_TIMEOUT,
  );
});
