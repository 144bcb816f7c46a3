/**
 * Idempotency-Key on every write route against a real nats-server and a real PostgreSQL, driven in-process with
 * app.handle(Request): replays get the first answer and publish nothing more, keys are scoped per user, a
 * different body under a key is a 409, concurrent requests with one key become one event, and a first attempt
 * that did not finish (a KV record without an answer, a publish that failed before or after the broker stored it)
 * is completed with the same event. Every refusal is also checked to have published nothing.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createHttpApp } from "../../src/adapters/http/app.ts";
import { Metrics } from "../../src/adapters/metrics.ts";
import { KvIdempotencyStore } from "../../src/adapters/nats/idempotency-kv.ts";
import { JetStreamIntakeLookup } from "../../src/adapters/nats/intake-lookup.ts";
import { JetStreamIntakePublisher } from "../../src/adapters/nats/intake-publisher.ts";
import { IntakeService } from "../../src/app/intake.ts";
import type { IntakePublisher } from "../../src/app/ports.ts";
import {
  type CreateOrder,
  encodeIntakeEvent,
  type Intake,
  type IntakeEvent,
} from "../../src/domain/events.ts";
import { SnowflakeGenerator } from "../../src/domain/ids.ts";
import {
  deposit,
  freshKey,
  HARNESS_LIMITS,
  type Harness,
  harnessRequests,
  readError,
  readJson,
  request,
  startHarness,
  transfer,
} from "./http-helpers.ts";

const SETUP_TIMEOUT = 60_000;
const TEST_TIMEOUT = 20_000;

const USER = 1001n;
const OTHER_USER = 1002n;
const ADMIN = 1n;
const OTHER_ADMIN = 2n;

const order = { direction: "BUY", price: "10.5", quantity: "2" };

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

const { handle, intakeAt, expectRefused, expectAccepted } = harnessRequests(() => h);

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
      const { error } = await expectRefused(
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
    if (publishToo) await new JetStreamIntakePublisher(h.nc, 5_000).publish(event);
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
    const publisher = new FlakyPublisher(new JetStreamIntakePublisher(h.nc, 5_000));
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
