/**
 * runIdempotent (src/app/idempotency.ts) against an in-memory IdempotencyStore: pure logic, no broker. Covers the
 * first attempt, retries, conflicts, a first attempt that died half-way (record without answer), publish
 * failures, and the create race; then IntakeService on top of it (key scoping and the canonical request).
 */
import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { errorMapping } from "../../src/adapters/http/errors.ts";
import {
  ConflictError,
  type IdempotencyRecordProblem,
  IdempotencyRecordRejected,
  InvalidInputError,
  UnavailableError,
} from "../../src/app/errors.ts";
import { type Attempt, runIdempotent } from "../../src/app/idempotency.ts";
import { canonicalRequest, IntakeService } from "../../src/app/intake.ts";
import type { Answer, IdempotencyRecord, IdempotencyStore, IntakePublisher } from "../../src/app/ports.ts";
import {
  type CreateOrder,
  type Deposit,
  decodeIntakeEvent,
  encodeIntakeEvent,
  type Intake,
  type IntakeEvent,
} from "../../src/domain/events.ts";
import { SnowflakeGenerator } from "../../src/domain/ids.ts";

/** Create-if-absent map; every call yields to the event loop first, so concurrent callers interleave. */
class MemoryStore implements IdempotencyStore {
  readonly records = new Map<string, IdempotencyRecord>();
  readonly calls: string[] = [];

  async get(key: string): Promise<IdempotencyRecord | null> {
    await Promise.resolve();
    this.calls.push(`get ${key}`);
    const record = this.records.get(key);
    return record ? structuredClone(record) : null;
  }

  async create(key: string, record: IdempotencyRecord): Promise<boolean> {
    await Promise.resolve();
    this.calls.push(`create ${key}`);
    if (this.records.has(key)) return false;
    this.records.set(key, structuredClone(record));
    return true;
  }

  async put(key: string, record: IdempotencyRecord): Promise<void> {
    await Promise.resolve();
    this.calls.push(`put ${key}`);
    this.records.set(key, structuredClone(record));
  }
}

let nextId = 1000n;

/** An Attempt like IntakeService's: builds DEPOSIT events with fresh ids, records what it built and published. */
function depositAttempt(options: { failPublishes?: number } = {}) {
  let failures = options.failPublishes ?? 0;
  const built: Intake[] = [];
  const published: string[] = [];
  const attempt: Attempt = {
    logged: async () => null,
    build() {
      nextId += 1n;
      const event: Intake<Deposit> = {
        type: "DEPOSIT",
        userId: 5n,
        assetId: 6n,
        amount: "1.5",
        referenceId: nextId,
        createdAt: new Date(Date.UTC(2026, 0, 1, 0, 0, 0, Number(nextId % 1000n))).toISOString(),
        idempotencyKey: "9:key",
      };
      built.push(event);
      return event;
    },
    encode: encodeIntakeEvent,
    decode(text) {
      const decoded = decodeIntakeEvent(text);
      if (!decoded.ok) throw new Error(decoded.reason);
      return decoded.event;
    },
    async publish(event) {
      await Promise.resolve();
      if (failures > 0) {
        failures--;
        throw new Error("publish failed");
      }
      published.push(encodeIntakeEvent(event));
    },
    answer: (event) => ({ referenceId: event.referenceId.toString() }),
    requestOf: (event) => canonicalRequest(event, []),
    scope: { userId: "9", key: "key", eventKey: "9:key" },
  };
  return { attempt, built, published };
}

const KEY = "9.key";
const REQUEST = '{"type":"DEPOSIT","userId":"5","assetId":"6","amount":"1.5"}';

describe("runIdempotent", () => {
  test("first call builds, publishes and stores the answer with the encoded event", async () => {
    const store = new MemoryStore();
    const { attempt, built, published } = depositAttempt();
    const answer = await runIdempotent(store, KEY, REQUEST, attempt);
    expect(built).toHaveLength(1);
    const event = built[0] as Intake;
    expect(answer).toEqual({ referenceId: event.referenceId.toString() });
    expect(published).toEqual([encodeIntakeEvent(event)]);
    expect(store.records.get(KEY)).toEqual({ request: REQUEST, event: encodeIntakeEvent(event), answer });
    // The record is created before the publish and completed after it.
    expect(store.calls).toEqual([`get ${KEY}`, `create ${KEY}`, `put ${KEY}`]);
  });

  test("a retry returns the same answer without building or publishing", async () => {
    const store = new MemoryStore();
    const first = depositAttempt();
    const answer = await runIdempotent(store, KEY, REQUEST, first.attempt);
    const retry = depositAttempt();
    for (let i = 0; i < 3; i++)
      expect(await runIdempotent(store, KEY, REQUEST, retry.attempt)).toEqual(answer);
    expect(retry.built).toEqual([]);
    expect(retry.published).toEqual([]);
    expect(first.published).toHaveLength(1);
  });

  test("the same key with a different request → ConflictError, nothing published, record untouched", async () => {
    const store = new MemoryStore();
    const first = depositAttempt();
    await runIdempotent(store, KEY, REQUEST, first.attempt);
    const before = structuredClone(store.records.get(KEY));
    const other = depositAttempt();
    const error = await runIdempotent(store, KEY, REQUEST.replace("1.5", "2"), other.attempt).catch((e) => e);
    expect(error).toBeInstanceOf(ConflictError);
    expect(other.built).toEqual([]);
    expect(other.published).toEqual([]);
    expect(store.records.get(KEY)).toEqual(before);
  });

  test("a different request against a half-finished record is also a conflict (nothing republished)", async () => {
    const store = new MemoryStore();
    const { attempt } = depositAttempt();
    const event = attempt.build();
    await store.create(KEY, { request: REQUEST, event: encodeIntakeEvent(event), answer: null });
    const other = depositAttempt();
    const error = await runIdempotent(store, KEY, `${REQUEST} `, other.attempt).catch((e) => e);
    expect(error).toBeInstanceOf(ConflictError);
    expect(other.published).toEqual([]);
    expect(store.records.get(KEY)?.answer).toBeNull();
  });

  test("a record without an answer (first attempt died half-way) → the retry republishes the SAME event", async () => {
    const store = new MemoryStore();
    const original = depositAttempt().attempt.build();
    const encoded = encodeIntakeEvent(original);
    await store.create(KEY, { request: REQUEST, event: encoded, answer: null });

    const retry = depositAttempt();
    const answer = await runIdempotent(store, KEY, REQUEST, retry.attempt);
    expect(answer).toEqual({ referenceId: original.referenceId.toString() });
    expect(retry.built).toEqual([]); // no new ids minted
    expect(retry.published).toEqual([encoded]); // byte for byte the stored event
    expect(store.records.get(KEY)).toEqual({ request: REQUEST, event: encoded, answer });

    // And from then on it is answered from the store.
    const again = depositAttempt();
    expect(await runIdempotent(store, KEY, REQUEST, again.attempt)).toEqual(answer);
    expect(again.published).toEqual([]);
  });

  test("publish failure leaves the record without an answer; the next retry publishes the same event", async () => {
    const store = new MemoryStore();
    const failing = depositAttempt({ failPublishes: 1 });
    await expect(runIdempotent(store, KEY, REQUEST, failing.attempt)).rejects.toThrow("publish failed");
    expect(failing.built).toHaveLength(1);
    const event = failing.built[0] as Intake;
    expect(failing.published).toEqual([]);
    expect(store.records.get(KEY)).toEqual({
      request: REQUEST,
      event: encodeIntakeEvent(event),
      answer: null,
    });

    // The retry may fail again (broker still down) without changing anything…
    const stillDown = depositAttempt({ failPublishes: 1 });
    await expect(runIdempotent(store, KEY, REQUEST, stillDown.attempt)).rejects.toThrow("publish failed");
    expect(stillDown.built).toEqual([]);
    expect(store.records.get(KEY)?.answer).toBeNull();

    // …and once it succeeds the answer is the first attempt's event.
    const retry = depositAttempt();
    const answer = await runIdempotent(store, KEY, REQUEST, retry.attempt);
    expect(answer).toEqual({ referenceId: event.referenceId.toString() });
    expect(retry.built).toEqual([]);
    expect(retry.published).toEqual([encodeIntakeEvent(event)]);
    expect(store.records.get(KEY)?.answer).toEqual(answer);
  });

  test("a failing put after a successful publish: the retry republishes the same event (no second event)", async () => {
    const store = new MemoryStore();
    let failPut = true;
    const flaky: IdempotencyStore = {
      get: (k) => store.get(k),
      create: (k, r) => store.create(k, r),
      async put(k, r) {
        if (failPut) {
          failPut = false;
          throw new Error("put failed");
        }
        return store.put(k, r);
      },
    };
    const first = depositAttempt();
    await expect(runIdempotent(flaky, KEY, REQUEST, first.attempt)).rejects.toThrow("put failed");
    const retry = depositAttempt();
    const answer = await runIdempotent(flaky, KEY, REQUEST, retry.attempt);
    expect(answer).toEqual({ referenceId: first.built[0]?.referenceId.toString() ?? "missing" });
    expect(retry.published).toEqual(first.published);
    expect(retry.built).toEqual([]);
  });

  test("create race: another request creates the key between our get and create → we complete ITS event", async () => {
    const store = new MemoryStore();
    const rival = depositAttempt();
    const rivalEvent = rival.attempt.build();
    let raced = false;
    const racing: IdempotencyStore = {
      get: (k) => store.get(k),
      async create(k, r) {
        if (!raced) {
          raced = true;
          // The rival wins the create (and has not published yet).
          await store.create(k, { request: REQUEST, event: encodeIntakeEvent(rivalEvent), answer: null });
          return false;
        }
        return store.create(k, r);
      },
      put: (k, r) => store.put(k, r),
    };
    const ours = depositAttempt();
    const answer = await runIdempotent(racing, KEY, REQUEST, ours.attempt);
    expect(raced).toBe(true);
    expect(answer).toEqual({ referenceId: rivalEvent.referenceId.toString() });
    // We built an event in round one, but it never left: only the rival's event was published.
    expect(ours.built).toHaveLength(1);
    expect(ours.published).toEqual([encodeIntakeEvent(rivalEvent)]);
    expect(store.records.get(KEY)?.answer).toEqual(answer);
  });

  test("create refused but the record is gone again (expired) on both rounds → ConflictError, nothing published", async () => {
    const vanishing: IdempotencyStore = {
      get: async () => null,
      create: async () => false,
      put: async () => {},
    };
    const { attempt, published } = depositAttempt();
    const error = await runIdempotent(vanishing, KEY, REQUEST, attempt).catch((e) => e);
    expect(error).toBeInstanceOf(ConflictError);
    expect(published).toEqual([]);
  });

  test("a record whose request matches but whose event is another request → IdempotencyRecordRejected, nothing published", async () => {
    const store = new MemoryStore();
    const { attempt } = depositAttempt();
    const planted = { ...attempt.build(), userId: 666n } as Intake;
    const record = { request: REQUEST, event: encodeIntakeEvent(planted), answer: null };
    await store.create(KEY, record);
    for (const answer of [null, { referenceId: planted.referenceId.toString() }]) {
      await store.put(KEY, { ...record, answer });
      const retry = depositAttempt();
      const error = await runIdempotent(store, KEY, REQUEST, retry.attempt).catch((e) => e);
      expect(error).toBeInstanceOf(IdempotencyRecordRejected);
      expect(error).toMatchObject({
        userId: "9",
        key: "key",
        problem: "event-differs-from-request",
        eventType: "DEPOSIT",
      });
      expect(retry.built).toEqual([]);
      expect(retry.published).toEqual([]);
      expect(store.records.get(KEY)).toEqual({ ...record, answer });
    }
  });

  test("property: N concurrent calls with one key converge on one event and one answer", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 2, max: 25 }),
        fc.array(fc.nat({ max: 3 }), { minLength: 25, maxLength: 25 }),
        async (n, delays) => {
          const store = new MemoryStore();
          const publishedRefs = new Set<string>();
          const attempts = Array.from({ length: n }, (_, i) => {
            const a = depositAttempt();
            const publish = a.attempt.publish;
            a.attempt.publish = async (event) => {
              for (let d = 0; d < (delays[i] ?? 0); d++) await Promise.resolve();
              await publish(event);
              publishedRefs.add(event.referenceId.toString());
            };
            return a;
          });
          const answers = await Promise.all(
            attempts.map((a) => runIdempotent(store, KEY, REQUEST, a.attempt)),
          );
          const distinct = new Set(answers.map((a) => a.referenceId));
          expect(distinct.size).toBe(1);
          expect([...publishedRefs]).toEqual([...distinct]);
          expect(store.records.get(KEY)?.answer).toEqual(answers[0] as Answer);
        },
      ),
      { numRuns: 60 },
    );
  });
});

// ---------------------------------------------------------------------------------------------------------------
// IntakeService over the same in-memory store: the key is scoped by user, the request is compared canonically
// ---------------------------------------------------------------------------------------------------------------

class RecordingPublisher implements IntakePublisher {
  readonly events: IntakeEvent[] = [];
  failNext = 0;
  async publish(event: IntakeEvent): Promise<void> {
    if (this.failNext > 0) {
      this.failNext--;
      throw new Error("broker down");
    }
    this.events.push(event);
  }
}

function service() {
  const store = new MemoryStore();
  const publisher = new RecordingPublisher();
  const intake = new IntakeService(new SnowflakeGenerator(7), publisher, store, undefined);
  return { store, publisher, intake };
}

const ADMIN = { userId: 1n, admin: true, reader: false };
const USER = { userId: 2n, admin: false, reader: false };

describe("IntakeService with an Idempotency-Key", () => {
  test("the record is stored under <userId>.<key> with the canonical request and the scoped key on the event", async () => {
    const { store, publisher, intake } = service();
    const answer = await intake.deposit(ADMIN, { userId: "5", assetId: "6", amount: "1.50" }, "abc");
    expect(Object.keys(answer)).toEqual(["referenceId"]);
    const record = store.records.get("1.abc");
    expect(record?.request).toBe('{"type":"DEPOSIT","userId":"5","assetId":"6","amount":"1.5"}');
    expect(record?.answer).toEqual(answer);
    expect(publisher.events).toHaveLength(1);
    expect(publisher.events[0]?.idempotencyKey).toBe("1:abc");
    expect(record?.event).toBe(encodeIntakeEvent(publisher.events[0] as IntakeEvent));
  });

  test("the same request written differently (1.5 vs 1.50) is the same request", async () => {
    const { publisher, intake } = service();
    const a = await intake.deposit(ADMIN, { userId: "5", assetId: "6", amount: "1.5" }, "k");
    const b = await intake.deposit(ADMIN, { userId: "5", assetId: "6", amount: "1.500" }, "k");
    expect(b).toEqual(a);
    expect(publisher.events).toHaveLength(1);
  });

  test("CREATE_ORDER: the minted orderId is not part of the request; the retry gets the same orderId", async () => {
    const { store, publisher, intake } = service();
    const body = { direction: "BUY", price: "2", quantity: "3" };
    const a = await intake.createOrder(USER, body, "o1");
    const b = await intake.createOrder(USER, body, "o1");
    expect(b).toEqual(a);
    expect(a.orderId).toBeDefined();
    expect(store.records.get("2.o1")?.request).toBe(
      '{"type":"CREATE_ORDER","userId":"2","direction":"BUY","price":"2","quantity":"3"}',
    );
    expect(publisher.events).toHaveLength(1);
  });

  test("the same key from another user is independent; another route under one key is a conflict", async () => {
    const { publisher, intake } = service();
    const a = await intake.cancelOrder(USER, "77", "shared");
    const b = await intake.cancelOrder({ userId: 3n, admin: false, reader: false }, "77", "shared");
    expect(b.referenceId).not.toBe(a.referenceId);
    expect(publisher.events).toHaveLength(2);
    await expect(
      intake.createOrder(USER, { direction: "BUY", price: "1", quantity: "1" }, "shared"),
    ).rejects.toBeInstanceOf(ConflictError);
    await expect(intake.cancelOrder(USER, "78", "shared")).rejects.toBeInstanceOf(ConflictError);
    expect(publisher.events).toHaveLength(2);
  });

  test("a publish failure is a 503-style UnavailableError; the retry completes the same event", async () => {
    const { store, publisher, intake } = service();
    publisher.failNext = 1;
    const body = { fromUserId: "5", toUserId: "6", assetId: "1", amount: "3" };
    await expect(intake.transfer(ADMIN, body, "t")).rejects.toBeInstanceOf(UnavailableError);
    const pending = store.records.get("1.t");
    expect(pending?.answer).toBeNull();
    const answer = await intake.transfer(ADMIN, body, "t");
    expect(publisher.events).toHaveLength(1);
    expect(encodeIntakeEvent(publisher.events[0] as IntakeEvent)).toBe(pending?.event ?? "");
    expect(answer.referenceId).toBe(publisher.events[0]?.referenceId.toString() ?? "");
  });

  test.each(["", " ", "a b", "a.b", "a:b", "é", "x".repeat(65)])(
    "Idempotency-Key %p → InvalidInputError",
    async (key) => {
      const { store, publisher, intake } = service();
      const error = await intake.cancelOrder(USER, "1", key).catch((e) => e);
      expect(error).toBeInstanceOf(InvalidInputError);
      expect((error as InvalidInputError).field).toBe("Idempotency-Key");
      expect(publisher.events).toEqual([]);
      expect(store.records.size).toBe(0);
    },
  );

  test("a 64-character key is fine", async () => {
    const { publisher, intake } = service();
    await intake.cancelOrder(USER, "1", "x".repeat(64));
    expect(publisher.events[0]?.idempotencyKey).toBe(`2:${"x".repeat(64)}`);
  });

  test("without a key there is no record and every call is a new event", async () => {
    const { store, publisher, intake } = service();
    const a = await intake.cancelOrder(USER, "1");
    const b = await intake.cancelOrder(USER, "1");
    expect(a.referenceId).not.toBe(b.referenceId);
    expect(store.records.size).toBe(0);
    expect(publisher.events.map((e) => e.idempotencyKey)).toEqual([undefined, undefined]);
  });
});

// ---------------------------------------------------------------------------------------------------------------
// Issue 12: a planted or corrupted record under a user's key is refused, never published or answered from
// ---------------------------------------------------------------------------------------------------------------

describe("IntakeService: a stored record is used only when its event is this request (issue 12)", () => {
  const VICTIM = { userId: 42n, admin: false, reader: false };
  const POISON_KEY = "kv-poison";
  const STORE_KEY = "42.kv-poison";
  const BUY = { direction: "BUY", price: "10.5", quantity: "2" };
  /** What the record of a genuine first attempt of the BUY holds as its request (an attacker can compute it). */
  const BUY_REQUEST = '{"type":"CREATE_ORDER","userId":"42","direction":"BUY","price":"10.5","quantity":"2"}';

  /** The event a genuine first attempt of the BUY under kv-poison would have stored. */
  function genuineBuy(): Intake<CreateOrder> {
    return {
      type: "CREATE_ORDER",
      userId: 42n,
      orderId: 7_000_001n,
      direction: "BUY",
      price: "10.5",
      quantity: "2",
      referenceId: 7_000_002n,
      createdAt: "2026-01-01T00:00:00.000Z",
      idempotencyKey: "42:kv-poison",
    };
  }
  const genuineAnswer = { referenceId: "7000002", orderId: "7000001" };

  const deposit666: Intake<Deposit> = {
    type: "DEPOSIT",
    userId: 666n,
    assetId: 1n,
    amount: "1000000",
    referenceId: 7_000_003n,
    createdAt: "2026-01-01T00:00:00.000Z",
    idempotencyKey: "42:kv-poison",
  };

  type Poison = {
    name: string;
    event: unknown;
    /** Answers to try the record with; the old code returned any stored answer unchecked. */
    answers: unknown[];
    problem: IdempotencyRecordProblem;
    eventType?: string;
  };
  const encoded = (event: Intake) => encodeIntakeEvent(event);
  const poisons: Poison[] = [
    {
      name: "poisoned event type: a DEPOSIT to user 666 under the BUY's request (the reported attack)",
      event: encoded(deposit666),
      answers: [null, { referenceId: "7000003" }, genuineAnswer],
      problem: "event-differs-from-request",
      eventType: "DEPOSIT",
    },
    {
      name: "poisoned user: the same BUY for user 666",
      event: encoded({ ...genuineBuy(), userId: 666n }),
      answers: [null, genuineAnswer],
      problem: "event-differs-from-request",
      eventType: "CREATE_ORDER",
    },
    ...(
      [
        ["price", "0.01"],
        ["quantity", "2000"],
        ["direction", "SELL"],
      ] as const
    ).map(
      ([field, value]): Poison => ({
        name: `poisoned field: ${field} ${value}`,
        event: encoded({ ...genuineBuy(), [field]: value } as Intake),
        answers: [null, genuineAnswer],
        problem: "event-differs-from-request",
        eventType: "CREATE_ORDER",
      }),
    ),
    {
      name: "poisoned type with the same user: a CANCEL_ORDER of user 42",
      event: encoded({
        type: "CANCEL_ORDER",
        userId: 42n,
        orderId: 5n,
        referenceId: 7_000_004n,
        createdAt: "2026-01-01T00:00:00.000Z",
        idempotencyKey: "42:kv-poison",
      }),
      answers: [null, { referenceId: "7000004", orderId: "5" }],
      problem: "event-differs-from-request",
      eventType: "CANCEL_ORDER",
    },
    {
      name: "wrong idempotencyKey: another user's scoped key",
      event: encoded({ ...genuineBuy(), idempotencyKey: "666:kv-poison" }),
      answers: [null, genuineAnswer],
      problem: "event-key-differs",
      eventType: "CREATE_ORDER",
    },
    {
      name: "wrong idempotencyKey: another key of the same user",
      event: encoded({ ...genuineBuy(), idempotencyKey: "42:other" }),
      answers: [null, genuineAnswer],
      problem: "event-key-differs",
      eventType: "CREATE_ORDER",
    },
    {
      name: "wrong idempotencyKey: none at all",
      event: encoded({ ...genuineBuy(), idempotencyKey: undefined }),
      answers: [null, genuineAnswer],
      problem: "event-key-differs",
      eventType: "CREATE_ORDER",
    },
    {
      name: "mismatched answer: the genuine event with another referenceId / orderId / shape",
      event: encoded(genuineBuy()),
      answers: [
        { referenceId: "1", orderId: "7000001" },
        { referenceId: "7000002", orderId: "1" },
        { referenceId: "7000002" },
        { ...genuineAnswer, userId: "666" },
        { referenceId: 7000002, orderId: 7000001 },
        "7000002",
        ["7000002", "7000001"],
        true,
        0,
      ],
      problem: "answer-differs-from-event",
      eventType: "CREATE_ORDER",
    },
    ...[
      "",
      "not json",
      "{}",
      '{"type":"DEPOSIT"}',
      "null",
      JSON.stringify({ ...JSON.parse(encoded(genuineBuy())), extra: "1" }),
    ].map(
      (text): Poison => ({
        name: `undecodable event ${JSON.stringify(text.slice(0, 30))}`,
        event: text,
        answers: [null, genuineAnswer],
        problem: "undecodable-event",
      }),
    ),
    ...[42, null, undefined, { ...genuineAnswer }].map(
      (value): Poison => ({
        name: `undecodable event: not a string (${JSON.stringify(value)})`,
        event: value,
        answers: [null, genuineAnswer],
        problem: "undecodable-event",
      }),
    ),
  ];

  for (const poison of poisons) {
    test(`${poison.name} → refused with IdempotencyRecordRejected, nothing published, record untouched`, async () => {
      for (const answer of poison.answers) {
        const { store, publisher, intake } = service();
        const record = { request: BUY_REQUEST, event: poison.event, answer } as unknown as IdempotencyRecord;
        await store.create(STORE_KEY, record);
        const before = structuredClone(store.records.get(STORE_KEY));

        const error = await intake.createOrder(VICTIM, BUY, POISON_KEY).catch((e) => e);
        expect({ answer, error }).toEqual({ answer, error: expect.any(IdempotencyRecordRejected) });
        expect(error).toMatchObject({
          userId: "42",
          key: POISON_KEY,
          problem: poison.problem,
          eventType: poison.eventType,
        });
        expect((error as Error).message).toMatch(/new Idempotency-Key/);
        expect(publisher.events).toEqual([]);
        expect(store.records.get(STORE_KEY)).toEqual(before);

        // The same key stays refused; a new key works for the same user and request.
        await expect(intake.createOrder(VICTIM, BUY, POISON_KEY)).rejects.toBeInstanceOf(
          IdempotencyRecordRejected,
        );
        expect(publisher.events).toEqual([]);
        const fresh = await intake.createOrder(VICTIM, BUY, "fresh-key");
        expect(publisher.events).toHaveLength(1);
        expect(publisher.events[0]).toMatchObject({ type: "CREATE_ORDER", userId: 42n, direction: "BUY" });
        expect(fresh.referenceId).toBe(publisher.events[0]?.referenceId.toString() ?? "missing");
      }
    });
  }

  test("a poisoned record whose request differs from the request stays a plain conflict (nothing published)", async () => {
    const { store, publisher, intake } = service();
    await store.create(STORE_KEY, {
      request: '{"type":"DEPOSIT","userId":"666","assetId":"1","amount":"1000000"}',
      event: encodeIntakeEvent(deposit666),
      answer: null,
    });
    await expect(intake.createOrder(VICTIM, BUY, POISON_KEY)).rejects.toBeInstanceOf(ConflictError);
    expect(publisher.events).toEqual([]);
  });

  test("a genuine half-done record (no answer) still completes: the stored event is published as is", async () => {
    const { store, publisher, intake } = service();
    const event = genuineBuy();
    await store.create(STORE_KEY, { request: BUY_REQUEST, event: encodeIntakeEvent(event), answer: null });
    const answer = await intake.createOrder(VICTIM, BUY, POISON_KEY);
    expect(answer).toEqual(genuineAnswer);
    expect(publisher.events.map((e) => encodeIntakeEvent(e))).toEqual([encodeIntakeEvent(event)]);
    expect(store.records.get(STORE_KEY)?.answer).toEqual(genuineAnswer);
    // Answered from the store from then on.
    expect(await intake.createOrder(VICTIM, BUY, POISON_KEY)).toEqual(genuineAnswer);
    expect(publisher.events).toHaveLength(1);
  });

  test("a genuine answered record is answered from the store, nothing published", async () => {
    const { store, publisher, intake } = service();
    await store.create(STORE_KEY, {
      request: BUY_REQUEST,
      event: encodeIntakeEvent(genuineBuy()),
      answer: genuineAnswer,
    });
    expect(await intake.createOrder(VICTIM, BUY, POISON_KEY)).toEqual(genuineAnswer);
    expect(publisher.events).toEqual([]);
  });

  test("records the service writes itself pass the check, for every event type (first attempt, replay, retry after a failed publish)", async () => {
    const { publisher, intake } = service();
    const admin = { userId: 42n, admin: true, reader: false };
    const calls: [string, () => Promise<Answer>][] = [
      [
        "create",
        () => intake.createOrder(admin, { direction: "SELL", price: "1.50", quantity: "0.10" }, "c"),
      ],
      ["cancel", () => intake.cancelOrder(admin, "99", "x")],
      ["deposit", () => intake.deposit(admin, { userId: "5", assetId: "6", amount: "1.50" }, "d")],
      [
        "transfer",
        () => intake.transfer(admin, { fromUserId: "5", toUserId: "6", assetId: "1", amount: "3.0" }, "t"),
      ],
    ];
    for (const [name, call] of calls) {
      publisher.failNext = 1;
      await expect(call()).rejects.toBeInstanceOf(UnavailableError);
      const first = await call(); // completes the half-done record
      expect({ name, again: await call() }).toEqual({ name, again: first });
    }
    expect(publisher.events).toHaveLength(4);
  });
});

describe("HTTP mapping of IdempotencyRecordRejected", () => {
  test("409 IDEMPOTENCY_KEY_UNUSABLE naming the header; one security warning with the user, the key and the event type only", async () => {
    const { Elysia } = await import("elysia");
    const lines: { level: string; msg: string; fields?: Record<string, unknown> }[] = [];
    const log = {
      info: (msg: string, fields?: Record<string, unknown>) => lines.push({ level: "info", msg, fields }),
      warn: (msg: string, fields?: Record<string, unknown>) => lines.push({ level: "warn", msg, fields }),
      error: (msg: string, fields?: Record<string, unknown>) => lines.push({ level: "error", msg, fields }),
      child: () => log,
    };
    const app = new Elysia().use(errorMapping(log)).get("/x", () => {
      throw new IdempotencyRecordRejected("42", "kv-poison", "event-differs-from-request", "DEPOSIT");
    });
    const res = await app.handle(new Request("http://localhost/x"));
    expect(res.status).toBe(409);
    expect(res.headers.get("content-type")).toMatch(/^application\/json/);
    expect(await res.json()).toEqual({
      error: {
        code: "IDEMPOTENCY_KEY_UNUSABLE",
        message:
          "the record stored for this Idempotency-Key cannot be used; retry with a new Idempotency-Key",
        field: "Idempotency-Key",
      },
    });
    expect(lines).toEqual([
      {
        level: "warn",
        msg: "idempotency record rejected",
        fields: {
          security: true,
          userId: "42",
          idempotencyKey: "kv-poison",
          problem: "event-differs-from-request",
          eventType: "DEPOSIT",
        },
      },
    ]);
  });
});
