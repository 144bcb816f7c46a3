/**
 * POST /orders and POST /orders/:orderId/cancel accepted against a real nats-server and a real PostgreSQL, driven
 * in-process with app.handle(Request): the answer's ids, the event on SEQUENCE under Nats-Msg-Id = referenceId,
 * canonical decimals, the user taken from the token. Every refusal is also checked to have published nothing.
 * What POST /orders refuses: order-validation-api.int.test.ts and auth-api.int.test.ts.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { INTAKE_STREAM } from "../../src/adapters/nats/topology.ts";
import { decodeSnowflake } from "../../src/domain/ids.ts";
import {
  expectRecentIso,
  type Harness,
  harnessRequests,
  postOrder,
  readJson,
  request,
  startHarness,
  validOrder,
} from "./http-helpers.ts";

const SETUP_TIMEOUT = 60_000;
const TEST_TIMEOUT = 20_000;
const USER = 9_223_372_036_854_775_807n; // max int64: the id must survive without a trip through a JS number
const ADMIN = 1n;

let h: Harness;
let token: string;
let adminToken: string;

beforeAll(async () => {
  h = await startHarness();
  token = await h.tokens.mint(USER);
  adminToken = await h.tokens.mint(ADMIN, { admin: true });
}, SETUP_TIMEOUT);

afterAll(async () => {
  await h?.close();
}, SETUP_TIMEOUT);

const { handle, expectRefused, expectAccepted } = harnessRequests(() => h);

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
// POST /orders/:orderId/cancel
// ---------------------------------------------------------------------------------------------------------------

describe("POST /orders/:orderId/cancel", () => {
  test(
    "202 {referenceId, orderId = the path id}; CANCEL_ORDER on sequence.cancel_order for the token's user",
    async () => {
      const { answer, stored } = await expectAccepted(
        request("POST", "/orders/123456/cancel", undefined, { token }),
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
    "the route takes no body: none → 202; any body, even {} → 400, nothing published",
    async () => {
      const { answer } = await expectAccepted(request("POST", "/orders/77/cancel", undefined, { token }));
      expect(answer.orderId).toBe("77");
      const { error } = await expectRefused(
        request("POST", "/orders/77/cancel", {}, { token }),
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
        const { error } = await expectRefused(
          request("POST", `/orders/${bad}/cancel`, undefined, { token }),
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
