/**
 * The read routes against a real nats-server and a real PostgreSQL, driven in-process with app.handle(Request):
 * GET /events (keyset paging over the stored log, payloads verbatim), and GET /events/:sequenceId and
 * GET /references/:referenceId before and after a sequencer has numbered what the API accepted. Who may read
 * what: read-access.int.test.ts.
 */

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { Kvm } from "@nats-io/kv";
import { IDEMPOTENCY_BUCKET } from "../../src/adapters/nats/idempotency-kv.ts";
import { ZERO_DIGEST } from "../../src/app/log-digest.ts";
import type { SequencedEvent } from "../../src/domain/events.ts";
import { chained, type RunningSequencer, runSequencer } from "../support/stack.ts";
import { waitFor, within } from "../support/wait.ts";
import {
  BASE,
  deposit,
  type Harness,
  harnessRequests,
  harnessStack,
  readError,
  readJson,
  request,
  startHarness,
  transfer,
} from "./http-helpers.ts";

const SETUP_TIMEOUT = 60_000;
const TEST_TIMEOUT = 20_000;
const USER = 1001n;
const ADMIN = 1n;

let h: Harness;
/** GET /events is for reader (and admin) tokens. */
let readerToken: string;

beforeAll(async () => {
  h = await startHarness();
  readerToken = await h.tokens.mint(1n, { role: "reader" });
}, SETUP_TIMEOUT);

afterAll(async () => {
  await h?.close();
}, SETUP_TIMEOUT);

const { handle } = harnessRequests(() => h);

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
      running = await runSequencer(harnessStack(r));
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
