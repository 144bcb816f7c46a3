/**
 * Issue 12, reproduced through HTTP against a real nats-server and PostgreSQL: a record planted straight into the
 * IDEMPOTENCY KV bucket under user 42's key `kv-poison` — the BUY's exact canonical request, but a DEPOSIT of
 * 1,000,000 to user 666 as its event — used to make that user's BUY answer 202 and sequence the DEPOSIT. Now the
 * BUY is refused (409 IDEMPOTENCY_KEY_UNUSABLE), nothing reaches SEQUENCE or the event log, the refusal is one
 * security warning, and the same user can still place orders with another key.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { type KV, Kvm } from "@nats-io/kv";
import { IDEMPOTENCY_BUCKET } from "../../src/adapters/nats/idempotency-kv.ts";
import { INTAKE_STREAM } from "../../src/adapters/nats/topology.ts";
import type { IdempotencyRecord } from "../../src/app/ports.ts";
import { type CreateOrder, type Deposit, encodeIntakeEvent, type Intake } from "../../src/domain/events.ts";
import { type RunningSequencer, runSequencer } from "../support/stack.ts";
import { waitFor, within } from "../support/wait.ts";
import {
  BASE,
  type Harness,
  harnessStack,
  jsonRequest,
  readError,
  readJson,
  startHarness,
} from "./http-helpers.ts";

const SETUP_TIMEOUT = 60_000;
const TEST_TIMEOUT = 30_000;

const VICTIM = 42n;
const ATTACKER_TARGET = "666";
const ADMIN = 1n;
const BUY = { direction: "BUY", price: "10.5", quantity: "2" };
/** What a genuine first attempt of BUY under any key of user 42 stores as its request; anyone can compute it. */
const BUY_REQUEST = '{"type":"CREATE_ORDER","userId":"42","direction":"BUY","price":"10.5","quantity":"2"}';

let h: Harness;
let kv: KV;
let userToken = "";
let adminToken = "";
let running: RunningSequencer | undefined;

beforeAll(async () => {
  h = await startHarness();
  kv = await new Kvm(h.js).open(IDEMPOTENCY_BUCKET);
  userToken = await h.tokens.mint(VICTIM);
  adminToken = await h.tokens.mint(ADMIN, { admin: true });
}, SETUP_TIMEOUT);

afterAll(async () => {
  await running?.stop();
  await h?.close();
}, SETUP_TIMEOUT);

function buy(key: string): Request {
  const req = jsonRequest("POST", "/orders", BUY, { token: userToken });
  req.headers.set("idempotency-key", key);
  return req;
}

const handle = (req: Request) =>
  within(10_000, `${req.method} ${new URL(req.url).pathname}`, () => h.app.handle(req));

/** The planted DEPOSIT, carrying the victim's scoped key so it looks like the victim's own event. */
function plantedDeposit(referenceId: bigint): Intake<Deposit> {
  return {
    type: "DEPOSIT",
    userId: BigInt(ATTACKER_TARGET),
    assetId: 1n,
    amount: "1000000",
    referenceId,
    createdAt: new Date().toISOString(),
    idempotencyKey: `${VICTIM}:kv-poison`,
  };
}

async function plant(key: string, record: Omit<IdempotencyRecord, "event"> & { event: unknown }) {
  await kv.put(`${VICTIM}.${key}`, JSON.stringify(record));
}

/** Sends the BUY under `key` and expects the refusal: 409, nothing published, one security warning. */
async function expectPoisonRefused(key: string, eventType: string | undefined, problem: string) {
  const before = await h.intakeCount();
  const logged = h.log.lines.length;
  const res = await handle(buy(key));
  const error = await readError(res);
  expect({ status: res.status, ...error }).toEqual({
    status: 409,
    code: "IDEMPOTENCY_KEY_UNUSABLE",
    message: expect.stringMatching(/retry with a new Idempotency-Key/),
    field: "Idempotency-Key",
  });
  expect(await h.intakeCount()).toBe(before);
  const lines = h.log.lines.slice(logged);
  expect(lines).toEqual([
    {
      level: "warn",
      msg: "idempotency record rejected",
      fields: { security: true, userId: "42", idempotencyKey: key, problem, eventType },
    },
  ]);
  // Nothing of the record's content beyond the event type reaches the log.
  expect(JSON.stringify(lines)).not.toMatch(/666|1000000|amount|referenceId/);
}

describe("a record planted in the IDEMPOTENCY bucket (issue 12)", () => {
  test(
    "the BUY with the planted key → 409, nothing published, the record left as it was",
    async () => {
      const deposit = plantedDeposit(990_000_000_001n);
      await plant("kv-poison", { request: BUY_REQUEST, event: encodeIntakeEvent(deposit), answer: null });
      await expectPoisonRefused("kv-poison", "DEPOSIT", "event-differs-from-request");
      // Retrying the same key does not change the answer.
      await expectPoisonRefused("kv-poison", "DEPOSIT", "event-differs-from-request");
      const entry = await kv.get(`${VICTIM}.kv-poison`);
      expect(entry?.json<IdempotencyRecord>().answer).toBeNull();

      // With a stored answer (the old code returned it unchecked, as if the BUY had been accepted).
      await plant("kv-poison-answered", {
        request: BUY_REQUEST,
        event: encodeIntakeEvent({ ...deposit, idempotencyKey: `${VICTIM}:kv-poison-answered` }),
        answer: { referenceId: deposit.referenceId.toString() },
      });
      await expectPoisonRefused("kv-poison-answered", "DEPOSIT", "event-differs-from-request");
    },
    TEST_TIMEOUT,
  );

  test(
    "a BUY for another user, a tampered answer, another key on the event, an undecodable event → the same 409",
    async () => {
      const genuine = (key: string): Intake<CreateOrder> => ({
        type: "CREATE_ORDER",
        userId: VICTIM,
        orderId: 990_000_000_010n,
        direction: "BUY",
        price: "10.5",
        quantity: "2",
        referenceId: 990_000_000_011n,
        createdAt: new Date().toISOString(),
        idempotencyKey: `${VICTIM}:${key}`,
      });
      await plant("poison-user", {
        request: BUY_REQUEST,
        event: encodeIntakeEvent({ ...genuine("poison-user"), userId: BigInt(ATTACKER_TARGET) }),
        answer: null,
      });
      await expectPoisonRefused("poison-user", "CREATE_ORDER", "event-differs-from-request");

      await plant("poison-answer", {
        request: BUY_REQUEST,
        event: encodeIntakeEvent(genuine("poison-answer")),
        answer: { referenceId: "1", orderId: "990000000010" },
      });
      await expectPoisonRefused("poison-answer", "CREATE_ORDER", "answer-differs-from-event");

      await plant("poison-key", {
        request: BUY_REQUEST,
        event: encodeIntakeEvent({
          ...genuine("poison-key"),
          idempotencyKey: `${ATTACKER_TARGET}:poison-key`,
        }),
        answer: null,
      });
      await expectPoisonRefused("poison-key", "CREATE_ORDER", "event-key-differs");

      // Was a generic Error → 503 "retry with the same key", which could never succeed.
      await plant("poison-garbage", {
        request: BUY_REQUEST,
        event: '{"type":"DEPOSIT","userId":"666"}',
        answer: null,
      });
      await expectPoisonRefused("poison-garbage", undefined, "undecodable-event");
    },
    TEST_TIMEOUT,
  );

  test(
    "the same user places orders with a new key; a genuine half-done record still completes",
    async () => {
      const before = await h.intakeCount();
      const res = await handle(buy("fresh-after-poison"));
      expect(res.status).toBe(202);
      const answer = (await readJson(res)) as { referenceId: string; orderId: string };
      expect(await h.intakeCount()).toBe(before + 1);

      // A record as a first attempt that died before its publish leaves it: the retry publishes that event.
      const halfDone: Intake<CreateOrder> = {
        type: "CREATE_ORDER",
        userId: VICTIM,
        orderId: 990_000_000_020n,
        direction: "BUY",
        price: "10.5",
        quantity: "2",
        referenceId: 990_000_000_021n,
        createdAt: new Date().toISOString(),
        idempotencyKey: `${VICTIM}:half-done`,
      };
      await plant("half-done", { request: BUY_REQUEST, event: encodeIntakeEvent(halfDone), answer: null });
      const retry = await handle(buy("half-done"));
      expect(retry.status).toBe(202);
      expect(await readJson(retry)).toEqual({ referenceId: "990000000021", orderId: "990000000020" });
      expect(await h.intakeCount()).toBe(before + 2);
      expect(answer.referenceId).not.toBe("990000000021");
    },
    TEST_TIMEOUT,
  );

  test(
    "after a sequencer drained SEQUENCE: exactly the two BUYs of user 42 are in the log, nothing for user 666",
    async () => {
      // Everything that ever reached SEQUENCE in this file: no DEPOSIT, nothing for 666.
      const count = await h.intakeCount();
      expect(count).toBe(2);
      for (let seq = 1; seq <= count; seq++) {
        const msg = await h.jsm.streams.getMessage(INTAKE_STREAM, { seq });
        const body = msg?.json<Record<string, string>>();
        expect(body).toMatchObject({ type: "CREATE_ORDER", userId: "42", direction: "BUY" });
      }

      running = await runSequencer(harnessStack(h));
      await waitFor("2 events sequenced", async () => (await h.store.head()).sequenceId === 2n);

      const res = await within(10_000, "GET /events", () =>
        h.app.handle(
          new Request(`${BASE}/events?after=0&limit=1000`, {
            headers: { authorization: `Bearer ${adminToken}` },
          }),
        ),
      );
      expect(res.status).toBe(200);
      const page = (await readJson(res)) as { events: Record<string, string>[] };
      expect(page.events.map((e) => [e.type, e.userId])).toEqual([
        ["CREATE_ORDER", "42"],
        ["CREATE_ORDER", "42"],
      ]);
      expect(page.events.some((e) => e.userId === ATTACKER_TARGET || e.type === "DEPOSIT")).toBe(false);
      // And straight from the store, by the planted event's referenceId and the planted key.
      expect(await h.store.find({ referenceId: 990_000_000_001n })).toBeFalsy();
      expect(await h.store.find({ idempotencyKey: `${VICTIM}:kv-poison` })).toBeFalsy();
    },
    TEST_TIMEOUT,
  );
});
