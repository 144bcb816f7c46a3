/**
 * The sequencer and idempotency keys, against a real nats-server and PostgreSQL (and PGlite, the embedded
 * default): two intake events with different referenceIds but one idempotency key (a retry after the API's KV
 * window) become one event, in one batch or across batches; the key is kept in events.idempotency_key but not
 * published; the unique constraint refuses a second row with the key; and all four event types go through the
 * sequencer onto their own TRADING subjects at positions 1..N.
 */
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { asc } from "drizzle-orm";
import { events, rejectedMessages } from "../../src/adapters/db/schema.ts";
import { INTAKE_STREAM, SEQUENCER_CONSUMER } from "../../src/adapters/nats/topology.ts";
import { tradingMsgId } from "../../src/adapters/nats/trading-publisher.ts";
import { ZERO_DIGEST } from "../../src/app/log-digest.ts";
import {
  type CancelOrder,
  type Deposit,
  encodeIntakeEvent,
  encodeSequencedEvent,
  type Intake,
  type IntakeEvent,
  type Sequenced,
  subjectToken,
  type Transfer,
} from "../../src/domain/events.ts";
import { SnowflakeGenerator } from "../../src/domain/ids.ts";
import { type NatsServerHandle, startNats } from "../support/services.ts";
import {
  chained,
  DATABASE_BACKENDS,
  makeOrder,
  openStack,
  type RunningSequencer,
  readTrading,
  runSequencer,
  type Stack,
} from "../support/stack.ts";
import { waitFor } from "../support/wait.ts";

const TEST_TIMEOUT = 60_000;

const ids = new SnowflakeGenerator(901);

function cancel(overrides: Partial<Intake<CancelOrder>> = {}): Intake<CancelOrder> {
  return {
    referenceId: ids.next(),
    type: "CANCEL_ORDER",
    createdAt: new Date().toISOString(),
    userId: 11n,
    orderId: ids.next(),
    ...overrides,
  };
}

function deposit(overrides: Partial<Intake<Deposit>> = {}): Intake<Deposit> {
  return {
    referenceId: ids.next(),
    type: "DEPOSIT",
    createdAt: new Date().toISOString(),
    userId: 12n,
    assetId: 3n,
    amount: "1000.25",
    ...overrides,
  };
}

function transfer(overrides: Partial<Intake<Transfer>> = {}): Intake<Transfer> {
  return {
    referenceId: ids.next(),
    type: "TRANSFER",
    createdAt: new Date().toISOString(),
    fromUserId: 12n,
    toUserId: 13n,
    assetId: 3n,
    amount: "0.5",
    ...overrides,
  };
}

describe.each(DATABASE_BACKENDS)("sequencer and idempotency keys on %s", (_name, databaseUrl) => {
  let nats: NatsServerHandle;
  let stack: Stack;
  let running: RunningSequencer | undefined;

  beforeEach(async () => {
    nats = await startNats();
    stack = await openStack(nats.url, await databaseUrl());
  });

  afterEach(async () => {
    await running?.stop();
    running = undefined;
    await stack.close();
    await nats.stop();
  });

  const headOf = async () => (await stack.store.head()).sequenceId;

  /** Publishes an intake event by hand with its own msg id (so the broker's dedup does not interfere). */
  async function publishRaw(event: IntakeEvent, msgID: string): Promise<void> {
    const ack = await stack.js.publish(`sequence.${subjectToken(event.type)}`, encodeIntakeEvent(event), {
      msgID,
      expect: { streamName: INTAKE_STREAM },
    });
    expect(ack.duplicate).toBe(false);
  }

  async function drained(): Promise<void> {
    await waitFor("the intake consumer to have nothing pending or unacked", async () => {
      const info = await stack.jsm.consumers.info(INTAKE_STREAM, SEQUENCER_CONSUMER);
      return info.num_pending === 0 && info.num_ack_pending === 0;
    });
  }

  async function rows() {
    return stack.database.db
      .select({
        sequenceId: events.sequenceId,
        referenceId: events.referenceId,
        type: events.type,
        userId: events.userId,
        idempotencyKey: events.idempotencyKey,
        payload: events.payload,
      })
      .from(events)
      .orderBy(asc(events.sequenceId));
  }

  async function rejectedCount(): Promise<number> {
    return (await stack.database.db.select({ id: rejectedMessages.id }).from(rejectedMessages)).length;
  }

  test(
    "same key, different referenceIds, in one batch: stored once (the first), TRADING has one, both acked",
    async () => {
      const key = "12:retry-after-window";
      const first = deposit({ idempotencyKey: key });
      // The retry: same request, new ids and time (as the API mints them when its KV record is gone).
      const retry = deposit({ idempotencyKey: key, createdAt: new Date(Date.now() + 5).toISOString() });
      expect(retry.referenceId).not.toBe(first.referenceId);
      await publishRaw(first, "attempt-1");
      await publishRaw(retry, "attempt-2");
      expect((await stack.jsm.streams.info(INTAKE_STREAM)).state.messages).toBe(2);

      running = await runSequencer(stack);
      await waitFor("1 event", async () => (await headOf()) === 1n);
      await drained();
      expect(await headOf()).toBe(1n);

      const stored = await rows();
      expect(stored.map((r) => [r.sequenceId, r.referenceId, r.idempotencyKey])).toEqual([
        [1n, first.referenceId, key],
      ]);
      expect(stored[0]?.type).toBe("DEPOSIT");
      expect(stored[0]?.userId).toBe(12n);
      // The key is stored in its column, not in the payload that goes to TRADING.
      expect(stored[0]?.payload).not.toContain("idempotencyKey");
      expect(stored[0]?.payload).not.toContain(key);

      const trading = await readTrading(stack);
      expect(trading).toHaveLength(1);
      const [record] = await stack.store.readAfter(0n, 1);
      expect(trading[0]).toMatchObject({
        position: 1,
        msgId: tradingMsgId({ sequenceId: 1n, digest: record?.digest ?? "" }),
        subject: "trading.deposit",
      });
      expect(trading[0]?.body.referenceId).toBe(first.referenceId.toString());
      expect(JSON.stringify(trading[0]?.body)).toBe(stored[0]?.payload ?? "");
      // A duplicate is dropped, not rejected.
      expect(await rejectedCount()).toBe(0);
    },
    TEST_TIMEOUT,
  );

  test(
    "same key in a later batch (even as another type): dropped as already stored; other keys still go through",
    async () => {
      const key = "12:k-across-batches";
      const first = transfer({ idempotencyKey: key });
      await publishRaw(first, "a-1");
      running = await runSequencer(stack);
      await waitFor("1 event", async () => (await headOf()) === 1n);
      await drained();

      const sameKeyAgain = transfer({ idempotencyKey: key });
      const sameKeyOtherType = deposit({ idempotencyKey: key });
      const otherUserSameTail = deposit({ idempotencyKey: "13:k-across-batches" });
      const noKey = cancel();
      await publishRaw(sameKeyAgain, "a-2");
      await publishRaw(sameKeyOtherType, "a-3");
      await publishRaw(otherUserSameTail, "a-4");
      await publishRaw(noKey, "a-5");
      await waitFor("3 events", async () => (await headOf()) === 3n);
      await drained();
      expect(await headOf()).toBe(3n);

      const stored = await rows();
      expect(stored.map((r) => [r.sequenceId, r.referenceId, r.idempotencyKey])).toEqual([
        [1n, first.referenceId, key],
        [2n, otherUserSameTail.referenceId, "13:k-across-batches"],
        [3n, noKey.referenceId, null],
      ]);
      const trading = await readTrading(stack);
      // Nats-Msg-Id = `<sequenceId>:<the digest's first 32 hex characters>` (checkLog in ../support/stack.ts
      // checks the digest chain).
      expect(trading.map((m) => [m.position, m.msgId?.split(":")[0], m.subject, m.body.referenceId])).toEqual(
        [
          [1, "1", "trading.transfer", first.referenceId.toString()],
          [2, "2", "trading.deposit", otherUserSameTail.referenceId.toString()],
          [3, "3", "trading.cancel_order", noKey.referenceId.toString()],
        ],
      );
      expect(await rejectedCount()).toBe(0);
    },
    TEST_TIMEOUT,
  );

  test(
    "the unique constraint on idempotency_key refuses a second row with the key (the backstop behind the filter)",
    async () => {
      const key = "12:unique";
      const a = deposit({ idempotencyKey: key });
      const b = deposit({ idempotencyKey: key });
      const at = new Date().toISOString();
      const seqA: Sequenced = { ...a, sequenceId: 1n, previousId: 0n, sequencedAt: at };
      const seqB: Sequenced = { ...b, sequenceId: 2n, previousId: 1n, sequencedAt: at };
      const [storedA, storedB] = chained([seqA, seqB]);
      if (!storedA || !storedB) throw new Error("unreachable");
      await stack.store.append([storedA], [], ZERO_DIGEST);
      await expect(stack.store.append([storedB], [], storedA.digest)).rejects.toThrow();
      expect(await headOf()).toBe(1n);
      // findStored reports the key although b's referenceId is not stored.
      const found = await stack.store.findStored([b.referenceId], [key, "12:absent"]);
      expect([...found.idempotencyKeys]).toEqual([key]);
      expect(found.references.has(b.referenceId)).toBe(false);
    },
    TEST_TIMEOUT,
  );

  test(
    "all four event types go through the sequencer onto trading.<type> at positions 1..N",
    async () => {
      const published: IntakeEvent[] = [
        makeOrder(),
        cancel(),
        deposit(),
        transfer(),
        deposit({ idempotencyKey: "7:dep", amount: "999999999999999.99999999" }),
        makeOrder({ idempotencyKey: "8:order" }),
        cancel({ idempotencyKey: "9:cancel" }),
        transfer({ idempotencyKey: "10:transfer", fromUserId: 99n, toUserId: 1n }),
      ];
      for (const event of published) await stack.intake.publish(event);
      running = await runSequencer(stack, { batchSize: 3 });
      await waitFor(`${published.length} events`, async () => (await headOf()) === BigInt(published.length));
      await drained();

      const trading = await readTrading(stack);
      const stored = await rows();
      expect(trading.map((m) => m.position)).toEqual(published.map((_, i) => i + 1));
      expect(trading.map((m) => m.msgId)).toEqual((await stack.store.readAfter(0n, 100)).map(tradingMsgId));
      expect(trading.map((m) => m.subject)).toEqual([
        "trading.create_order",
        "trading.cancel_order",
        "trading.deposit",
        "trading.transfer",
        "trading.deposit",
        "trading.create_order",
        "trading.cancel_order",
        "trading.transfer",
      ]);
      trading.forEach((msg, i) => {
        const event = published[i] as IntakeEvent;
        const row = stored[i];
        expect(msg.body.sequenceId).toBe(String(i + 1));
        expect(msg.body.previousId).toBe(String(i));
        expect(msg.body.referenceId).toBe(event.referenceId.toString());
        expect(msg.body.type).toBe(event.type);
        // The bytes on TRADING are the stored payload, which is the encoder's output (no idempotency key).
        expect(JSON.stringify(msg.body)).toBe(row?.payload ?? "");
        expect(msg.body).not.toHaveProperty("idempotencyKey");
        const expected = encodeSequencedEvent({
          ...event,
          sequenceId: BigInt(i + 1),
          previousId: BigInt(i),
          sequencedAt: msg.body.sequencedAt ?? "",
        } as Sequenced);
        expect(row?.payload).toBe(expected);
        expect(row?.type).toBe(event.type);
        expect(row?.userId).toBe(event.type === "TRANSFER" ? event.fromUserId : event.userId);
        expect(row?.idempotencyKey).toBe(event.idempotencyKey ?? null);
      });
      // The type's own fields, in order, after the fixed head.
      expect(Object.keys(trading[3]?.body ?? {})).toEqual([
        "sequenceId",
        "previousId",
        "referenceId",
        "type",
        "createdAt",
        "sequencedAt",
        "fromUserId",
        "toUserId",
        "assetId",
        "amount",
      ]);
      expect(trading[4]?.body.amount).toBe("999999999999999.99999999");
      expect(await rejectedCount()).toBe(0);
    },
    TEST_TIMEOUT,
  );

  test(
    "an intake message with a malformed idempotency key is rejected (recorded), not sequenced",
    async () => {
      const good = deposit();
      const bad = JSON.stringify({
        ...JSON.parse(encodeIntakeEvent(deposit())),
        idempotencyKey: "not a key",
      });
      await stack.js.publish("sequence.deposit", bad, { msgID: "bad-key" });
      await stack.intake.publish(good);
      running = await runSequencer(stack);
      await waitFor("1 event", async () => (await headOf()) === 1n);
      await drained();
      expect((await rows()).map((r) => r.referenceId)).toEqual([good.referenceId]);
      const rejected = await stack.database.db
        .select({ reason: rejectedMessages.reason, subject: rejectedMessages.subject })
        .from(rejectedMessages);
      expect(rejected).toEqual([
        { reason: "idempotencyKey must be <user id>:<1-64 of [A-Za-z0-9_-]>", subject: "sequence.deposit" },
      ]);
    },
    TEST_TIMEOUT,
  );
});
