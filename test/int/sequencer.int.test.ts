/**
 * The sequencer against a real nats-server and a real PostgreSQL (and PGlite, the embedded default):
 * exactly once, in order, no gaps — including duplicates across the broker's window, partially duplicate
 * batches, poison messages, and a failure between commit and publish.
 */
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { headers } from "@nats-io/transport-node";
import { sql } from "drizzle-orm";
import { rowsOf } from "../../src/adapters/db/client.ts";
import { LogContinuityError, type StoredEvent } from "../../src/adapters/db/event-store.ts";
import { INTAKE_STREAM, TRADING_STREAM } from "../../src/adapters/nats/topology.ts";
import type { TradingLog } from "../../src/adapters/nats/trading-publisher.ts";
import { encodeIntakeEvent, encodeSequencedEvent } from "../../src/domain/events.ts";
import { type NatsServerHandle, startNats } from "../support/services.ts";
import {
  checkLog,
  DATABASE_BACKENDS,
  makeOrder,
  openStack,
  type RunningSequencer,
  runSequencer,
  type Stack,
  waitFor,
} from "../support/stack.ts";

describe.each(DATABASE_BACKENDS)("sequencer on %s", (_name, databaseUrl) => {
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

  test("sequences every published order once, 1..N, and republishes them on TRADING at the same positions", async () => {
    const orders = Array.from({ length: 300 }, () => makeOrder());
    await Promise.all(orders.map((order) => stack.intake.publish(order)));
    running = await runSequencer(stack, { batchSize: 64 });
    await waitFor("300 events", async () => (await headOf()) === 300n);
    // The database is the durable point and leads; TRADING follows it (the next batch may commit while the
    // previous one is still being published).
    await waitFor(
      "TRADING complete",
      async () => (await stack.jsm.streams.info(TRADING_STREAM)).state.last_seq === 300,
    );
    const { events } = await checkLog(stack);
    expect(events.map((e) => e.referenceId).sort()).toEqual(
      orders.map((o) => o.referenceId.toString()).sort(),
    );
    const consumer = await stack.jsm.consumers.info(INTAKE_STREAM, "sequencer");
    await waitFor(
      "acks",
      async () => (await stack.jsm.consumers.info(INTAKE_STREAM, "sequencer")).num_ack_pending === 0,
    );
    expect(consumer.num_pending).toBe(0);
  });

  test("an order published twice with different msg ids (as after the duplicate window) is stored once", async () => {
    const order = makeOrder();
    const body = encodeIntakeEvent(order);
    await stack.js.publish("sequence.create_order", body, { msgID: "first-attempt" });
    await stack.js.publish("sequence.create_order", body, { msgID: "second-attempt-after-window" });
    const other = makeOrder();
    await stack.intake.publish(other);
    running = await runSequencer(stack);
    await waitFor("2 events", async () => (await headOf()) === 2n);
    await waitFor(
      "all acked",
      async () => (await stack.jsm.consumers.info(INTAKE_STREAM, "sequencer")).num_ack_pending === 0,
    );
    const { events } = await checkLog(stack);
    expect(events.map((e) => e.referenceId)).toEqual([
      order.referenceId.toString(),
      other.referenceId.toString(),
    ]);
  });

  test("a batch that is partly already stored stores and publishes only its new events", async () => {
    const first = Array.from({ length: 5 }, () => makeOrder());
    for (const order of first) await stack.intake.publish(order);
    running = await runSequencer(stack);
    await waitFor("5 events", async () => (await headOf()) === 5n);
    await running.stop();

    // A redelivery of old orders (new msg ids defeat the broker's filter) mixed with new ones.
    const fresh = Array.from({ length: 5 }, () => makeOrder());
    const mixed = [first[1], fresh[0], first[3], fresh[1], fresh[2], first[0], fresh[3], fresh[4]];
    for (const [i, order] of mixed.entries()) {
      if (!order) throw new Error("unreachable");
      await stack.js.publish("sequence.create_order", encodeIntakeEvent(order), { msgID: `replay-${i}` });
    }
    running = await runSequencer(stack);
    await waitFor("10 events", async () => (await headOf()) === 10n);
    await waitFor(
      "all acked",
      async () => (await stack.jsm.consumers.info(INTAKE_STREAM, "sequencer")).num_ack_pending === 0,
    );
    const { events } = await checkLog(stack);
    expect(events.slice(5).map((e) => e.referenceId)).toEqual(fresh.map((o) => o.referenceId.toString()));
  });

  test("poison messages are recorded, acked and skipped; the sequence stays gap-free", async () => {
    const a = makeOrder();
    const b = makeOrder();
    await stack.intake.publish(a);
    await stack.js.publish("sequence.create_order", "not json at all", { msgID: "poison-1" });
    await stack.js.publish("sequence.create_order", JSON.stringify({ type: "LAUNCH_MISSILES" }), {
      msgID: "poison-2",
    });
    await stack.js.publish(
      "sequence.create_order",
      JSON.stringify({ ...JSON.parse(encodeIntakeEvent(b)), price: "-1" }),
      {
        msgID: "poison-3",
      },
    );
    const withNul = new Uint8Array([123, 0, 125]);
    await stack.js.publish("sequence.create_order", withNul, { msgID: "poison-4" });
    await stack.intake.publish(b);
    running = await runSequencer(stack);
    await waitFor("2 events", async () => (await headOf()) === 2n);
    await waitFor(
      "all acked",
      async () => (await stack.jsm.consumers.info(INTAKE_STREAM, "sequencer")).num_ack_pending === 0,
    );
    const { events } = await checkLog(stack);
    expect(events.map((e) => e.referenceId)).toEqual([a.referenceId.toString(), b.referenceId.toString()]);
    const rejected = (await stack.database.db.execute(
      "select stream_seq, reason from rejected_messages order by stream_seq" as never,
    )) as unknown;
    const rows = (Array.isArray(rejected) ? rejected : (rejected as { rows: unknown[] }).rows) as {
      stream_seq: string | bigint;
      reason: string;
    }[];
    expect(rows.map((r) => String(r.stream_seq))).toEqual(["2", "3", "4", "5"]);
    expect(rows[0]?.reason).toBe("not valid JSON");
    expect(rows[1]?.reason).toContain("unknown event type");
    expect(rows[2]?.reason).toContain("price");
  });

  test("a failure after commit and before publish loses nothing and duplicates nothing", async () => {
    const orders = Array.from({ length: 40 }, () => makeOrder());
    for (const order of orders) await stack.intake.publish(order);
    let failures = 0;
    // Failpoint: the first two TRADING appends fail after the transaction committed (as a crash or a NATS
    // outage there would); the events are in Postgres but not on TRADING and not acked.
    const wrapTrading = (real: TradingLog): TradingLog => ({
      lastSequence: () => real.lastSequence(),
      async append(records) {
        if (records.length > 0 && failures < 2) {
          failures++;
          throw new Error("failpoint: after commit, before publish");
        }
        return real.append(records);
      },
    });
    running = await runSequencer(stack, { wrapTrading, batchSize: 10 });
    await waitFor("40 events", async () => (await headOf()) === 40n);
    await waitFor(
      "TRADING caught up",
      async () => (await stack.jsm.streams.info(TRADING_STREAM)).state.last_seq === 40,
    );
    await waitFor(
      "all acked",
      async () => (await stack.jsm.consumers.info(INTAKE_STREAM, "sequencer")).num_ack_pending === 0,
    );
    expect(failures).toBe(2);
    const { events } = await checkLog(stack);
    expect(events.map((e) => e.referenceId)).toEqual(orders.map((o) => o.referenceId.toString()));
  });

  test("a restarted sequencer republishes what TRADING lacks before taking new work", async () => {
    const orders = Array.from({ length: 12 }, () => makeOrder());
    for (const order of orders.slice(0, 6)) await stack.intake.publish(order);
    // First run: commit works, TRADING publishing always fails, as if the process died right after commit.
    const broken = (real: TradingLog): TradingLog => ({
      lastSequence: () => real.lastSequence(),
      append: async (records) => {
        if (records.length > 0) throw new Error("failpoint: publish never happens");
      },
    });
    running = await runSequencer(stack, { wrapTrading: broken });
    await waitFor("6 stored", async () => (await headOf()) === 6n);
    await running.stop();
    expect((await stack.jsm.streams.info(TRADING_STREAM)).state.last_seq).toBe(0);

    for (const order of orders.slice(6)) await stack.intake.publish(order);
    running = await runSequencer(stack);
    await waitFor("12 events", async () => (await headOf()) === 12n);
    await waitFor(
      "TRADING caught up",
      async () => (await stack.jsm.streams.info(TRADING_STREAM)).state.last_seq === 12,
    );
    await waitFor(
      "all acked",
      async () => (await stack.jsm.consumers.info(INTAKE_STREAM, "sequencer")).num_ack_pending === 0,
    );
    const { events } = await checkLog(stack);
    expect(events.map((e) => e.referenceId)).toEqual(orders.map((o) => o.referenceId.toString()));
  });

  test("an append that does not continue the log writes nothing, so a statement sent behind a failed one is harmless", async () => {
    const stored = (from: number, orders: ReturnType<typeof makeOrder>[]): StoredEvent[] =>
      orders.map((order, i) => {
        const sequenceId = BigInt(from + i);
        const event = { ...order, sequenceId, previousId: sequenceId - 1n, sequencedAt: order.createdAt };
        return { event, payload: encodeSequencedEvent(event) };
      });
    const first = Array.from({ length: 3 }, () => makeOrder());
    await stack.store.append(stored(1, first), []);
    const rejected = [{ streamSeq: 99n, subject: "sequence.create_order", reason: "test", data: "{" }];
    const rejectedCount = async () =>
      rowsOf<{ n: number }>(
        await stack.database.db.execute(sql`select count(*)::int as n from rejected_messages`),
      )[0]?.n;

    // A hole: 5 and 6 after head 3. Refused as a whole, the rejected message with it.
    expect(stack.store.append(stored(5, [makeOrder(), makeOrder()]), rejected)).rejects.toBeInstanceOf(
      LogContinuityError,
    );
    expect(await headOf()).toBe(3n);
    expect(await rejectedCount()).toBe(0);

    // Two statements sent together, as the sequencer pipelines them: the first fails (a referenceId already
    // stored: the unique constraint), so the second, numbered after it, must not land either.
    const failing = stack.store.append(
      stored(4, [makeOrder(), first[0] as ReturnType<typeof makeOrder>]),
      [],
    );
    const behind = stack.store.append(stored(6, [makeOrder()]), []);
    const [a, b] = await Promise.allSettled([failing, behind]);
    expect(a.status).toBe("rejected");
    expect(b.status === "rejected" && b.reason).toBeInstanceOf(LogContinuityError);
    expect(await headOf()).toBe(3n);

    await stack.store.append(stored(4, [makeOrder()]), rejected);
    expect(await headOf()).toBe(4n);
    expect(await rejectedCount()).toBe(1);
    const page = await stack.store.readAfter(0n, 10);
    expect(page.map((e) => e.sequenceId)).toEqual([1n, 2n, 3n, 4n]);
  });

  test("refuses to sequence when TRADING is ahead of the database", async () => {
    const h = headers();
    h.set("Nats-Msg-Id", "1");
    await stack.js.publish("trading.create_order", "{}", { headers: h });
    await stack.intake.publish(makeOrder());
    running = await runSequencer(stack);
    await waitFor("error reported", async () => running?.sequencer.status().lastError !== null);
    expect(running.sequencer.status().lastError).toContain("TRADING is at 1");
    expect(running.sequencer.status().tradingInSync).toBe(false);
    await new Promise((r) => setTimeout(r, 300));
    expect(await headOf()).toBe(0n);
  });
});
