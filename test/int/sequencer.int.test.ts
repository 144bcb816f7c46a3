/**
 * The sequencer against a real nats-server and a real PostgreSQL (and PGlite, the embedded default):
 * exactly once, in order, no gaps — including duplicates across the broker's window, partially duplicate
 * batches, poison messages, and a failure between commit and publish; and the digest chain: TRADING carries each
 * event's digest, a message forged onto TRADING stops the sequencer instead of passing for ours, and a duplicate
 * PubAck of our own message still counts.
 */
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { JetStreamApiCodes, JetStreamApiError } from "@nats-io/jetstream";
import { headers, nanos } from "@nats-io/transport-node";
import { sql } from "drizzle-orm";
import { rowsOf } from "../../src/adapters/db/client.ts";
import { INTAKE_STREAM, TRADING_STREAM } from "../../src/adapters/nats/topology.ts";
import { JetStreamTradingLog, tradingMsgId } from "../../src/adapters/nats/trading-publisher.ts";
import { LogContinuityError, TradingMismatchError } from "../../src/app/errors.ts";
import { chainDigests, ZERO_DIGEST } from "../../src/app/log-digest.ts";
import type { StoredEvent, TradingLog } from "../../src/app/ports.ts";
import { encodeIntakeEvent } from "../../src/domain/events.ts";
import { inspect } from "../../src/inspect.ts";
import { type NatsServerHandle, startNats } from "../support/services.ts";
import {
  chained,
  checkLog,
  DATABASE_BACKENDS,
  makeOrder,
  openStack,
  type RunningSequencer,
  readTrading,
  runSequencer,
  type Stack,
} from "../support/stack.ts";
import { sleep, waitFor } from "../support/wait.ts";

describe.each(DATABASE_BACKENDS)("sequencer on %s", (_name, databaseUrl) => {
  let nats: NatsServerHandle;
  let stack: Stack;
  let running: RunningSequencer | undefined;
  /** The PostgreSQL database's URL; undefined on PGlite. */
  let url: string | undefined;

  beforeEach(async () => {
    nats = await startNats();
    url = await databaseUrl();
    stack = await openStack(nats.url, url);
  });

  afterEach(async () => {
    await running?.stop();
    running = undefined;
    await stack.close();
    await nats.stop();
  });

  const headOf = async () => (await stack.store.head()).sequenceId;
  const tradingLast = async () => BigInt((await stack.jsm.streams.info(TRADING_STREAM)).state.last_seq);
  const allAcked = async () =>
    (await stack.jsm.consumers.info(INTAKE_STREAM, "sequencer")).num_ack_pending === 0;

  /** Sequences `count` orders and waits until they are on TRADING and acked; the sequencer is stopped again. */
  async function sequenceOrders(count: number, batchSize?: number): Promise<void> {
    const before = await headOf();
    for (let i = 0; i < count; i++) await stack.intake.publish(makeOrder());
    const run = await runSequencer(stack, batchSize === undefined ? {} : { batchSize });
    await waitFor("on TRADING", async () => (await tradingLast()) === before + BigInt(count));
    await waitFor("acked", allAcked);
    await run.stop();
  }

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
      verify: (record) => real.verify(record),
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
      verify: (record) => real.verify(record),
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
    // Events numbered from `from`, their digests chained after `after` (the digest the append is told too).
    const stored = (from: number, orders: ReturnType<typeof makeOrder>[], after: string): StoredEvent[] =>
      chained(
        orders.map((order, i) => {
          const sequenceId = BigInt(from + i);
          return { ...order, sequenceId, previousId: sequenceId - 1n, sequencedAt: order.createdAt };
        }),
        after,
      );
    const first = Array.from({ length: 3 }, () => makeOrder());
    await stack.store.append(stored(1, first, ZERO_DIGEST), [], ZERO_DIGEST);
    const head3 = (await stack.store.head()).digest;
    const rejected = [{ streamSeq: 99n, subject: "sequence.create_order", reason: "test", data: "{" }];
    const rejectedCount = async () =>
      rowsOf<{ n: number }>(
        await stack.database.db.execute(sql`select count(*)::int as n from rejected_messages`),
      )[0]?.n;

    // A hole: 5 and 6 after head 3. Refused as a whole, the rejected message with it.
    await expect(
      stack.store.append(stored(5, [makeOrder(), makeOrder()], head3), rejected, head3),
    ).rejects.toBeInstanceOf(LogContinuityError);
    expect(await headOf()).toBe(3n);
    expect(await rejectedCount()).toBe(0);

    // Two statements sent together, as the sequencer pipelines them: the first fails (a referenceId already
    // stored: the unique constraint), so the second, numbered after it, must not land either.
    const failingBatch = stored(4, [makeOrder(), first[0] as ReturnType<typeof makeOrder>], head3);
    const failing = stack.store.append(failingBatch, [], head3);
    const after5 = failingBatch[1]?.digest ?? "";
    const behind = stack.store.append(stored(6, [makeOrder()], after5), [], after5);
    const [a, b] = await Promise.allSettled([failing, behind]);
    expect(a.status).toBe("rejected");
    expect(b.status === "rejected" && b.reason).toBeInstanceOf(LogContinuityError);
    expect(await headOf()).toBe(3n);

    // Continuing the log, but chained from a digest that is not row 3's: refused, nothing written.
    const wrong = "f".repeat(64);
    const misChained = await stack.store.append(stored(4, [makeOrder()], wrong), rejected, wrong).then(
      () => null,
      (error: unknown) => error,
    );
    expect(misChained).toBeInstanceOf(LogContinuityError);
    expect(String(misChained)).toContain("digest is not the one the batch from 4 was chained from");
    expect(await headOf()).toBe(3n);
    expect(await rejectedCount()).toBe(0);

    await stack.store.append(stored(4, [makeOrder()], head3), rejected, head3);
    expect(await headOf()).toBe(4n);
    expect(await rejectedCount()).toBe(1);
    const page = await stack.store.readAfter(0n, 10);
    expect(page.map((e) => e.sequenceId)).toEqual([1n, 2n, 3n, 4n]);
  });

  test("every TRADING message carries its event's digest (128 bits of it, in the msg id), and the digests chain", async () => {
    await sequenceOrders(40, 7);
    await checkLog(stack); // the chain over the payloads, the msg id, the bytes
    const column = rowsOf<{ digest: string }>(
      await stack.database.db.execute(
        sql`select encode(digest, 'hex') as digest from events order by sequence_id`,
      ),
    ).map((row) => row.digest);
    const trading = await readTrading(stack);
    expect(column).toHaveLength(40);
    expect(trading.map((m) => m.digest)).toEqual(column.map((d) => d.slice(0, 32)));
    expect(trading.map((m) => m.msgId)).toEqual(column.map((d, i) => `${i + 1}:${d.slice(0, 32)}`));
    expect(trading.map((m) => m.msgId)).toEqual(
      column.map((digest, i) => tradingMsgId({ sequenceId: BigInt(i + 1), digest })),
    );
    expect(column).toEqual(
      chainDigests(
        ZERO_DIGEST,
        trading.map((m) => m.raw),
      ),
    );
    // A restart continues the chain from the head it reloads from the database.
    await sequenceOrders(3);
    await checkLog(stack);
  });

  test.each([1, 5])(
    "a message forged onto TRADING at head+1 right before our publish (a batch of %i) stops the sequencer, visibly",
    async (size) => {
      await sequenceOrders(3);
      for (let i = 0; i < size; i++) await stack.intake.publish(makeOrder());
      // The attack: someone who may publish on trading.* races the sequencer for position head+1, with the msg id
      // the sequencer used to use (the sequenceId) and the right expected last sequence.
      let forged = false;
      const forger = (real: TradingLog): TradingLog => ({
        lastSequence: () => real.lastSequence(),
        verify: (record) => real.verify(record),
        async append(records) {
          const first = records[0];
          if (!forged && first) {
            forged = true;
            const head = first.sequenceId - 1n;
            await stack.js.publish(
              "trading.deposit",
              JSON.stringify({ sequenceId: String(head + 1n), type: "DEPOSIT", amount: "1000000" }),
              { msgID: `${head + 1n}`, expect: { lastSequence: Number(head) } },
            );
          }
          return real.append(records);
        },
      });
      running = await runSequencer(stack, { wrapTrading: forger });
      const sequencer = running.sequencer;
      await waitFor("the sequencer stops on the mismatch", async () =>
        (sequencer.status().lastError ?? "").includes("sequencing stopped"),
      );
      const status = sequencer.status();
      expect(status.tradingInSync).toBe(false);
      expect(status.lastError).toContain("TRADING does not match the log at sequenceId 4");
      await sleep(500); // it stays stopped: nothing retried, nothing more published
      expect(sequencer.status().lastError).toBe(status.lastError);
      // Our own events never landed behind the forged one, and none of the batch was acked (no success reported).
      expect(await tradingLast()).toBe(4n);
      expect(await headOf()).toBeGreaterThanOrEqual(4n);
      const consumer = await stack.jsm.consumers.info(INTAKE_STREAM, "sequencer");
      expect(consumer.ack_floor.stream_seq).toBe(3);
      expect(consumer.num_ack_pending).toBe(size);
      if (url) {
        const inspection = await inspect(nats.url, url);
        expect(inspection.verdict.state).toBe("MISMATCH");
        expect(inspection.verdict.detail).toContain("sequenceId 4");
      }
      // A restarted sequencer finds the same at catch-up, before taking any work.
      await running.stop();
      running = await runSequencer(stack);
      const again = running.sequencer;
      await waitFor("stopped again", async () =>
        (again.status().lastError ?? "").includes("sequencing stopped"),
      );
      expect(again.status().lastError).toContain("at sequenceId 4");
      expect(await tradingLast()).toBe(4n);
    },
  );

  test("a duplicate PubAck counts only when the stored message is ours: a republished batch passes, another body fails", async () => {
    await sequenceOrders(5);
    const real = new JetStreamTradingLog(stack.nc, stack.js, stack.jsm, 5_000);
    const records = await stack.store.readAfter(0n, 10);
    // A retry of batches TRADING already has (a PubAck lost on the way back): every message is a duplicate.
    await real.append(records);
    await real.append(records.slice(3));
    await real.append(records.slice(4));
    expect(await tradingLast()).toBe(5n);
    await checkLog(stack);
    // Our msg id, but not our message: the read-back finds the difference.
    const last = records[4];
    if (!last) throw new Error("unreachable");
    const other = { ...last, payload: last.payload.replace('"quantity":"1.5"', '"quantity":"150"') };
    expect(other.payload).not.toBe(last.payload);
    const refused = await real.append([other]).then(
      () => null,
      (error: unknown) => error,
    );
    expect(refused).toBeInstanceOf(TradingMismatchError);
    expect((refused as TradingMismatchError).sequenceId).toBe(5n);
    expect(String(refused)).toContain("body differs");
    expect(await tradingLast()).toBe(5n);
  });

  test("after TRADING's duplicate window a re-publish is refused for its expected last sequence, stores nothing, and the sequencer goes on", async () => {
    await sequenceOrders(5);
    // A short TRADING window (TRADING_DUPLICATE_WINDOW's floor), then let it pass: the broker forgets the msg ids.
    await stack.jsm.streams.update(TRADING_STREAM, { duplicate_window: nanos(1_000) });
    await sleep(2_500);
    const real = new JetStreamTradingLog(stack.nc, stack.js, stack.jsm, 5_000);
    const records = await stack.store.readAfter(0n, 10);
    // A batch TRADING already has, re-published late (what a retry after a lost PubAck would be): no longer a
    // duplicate, so the expected last sequence is what refuses it.
    for (const late of [records.slice(4), records.slice(2)]) {
      const refused = await real.append(late).then(
        () => null,
        (error: unknown) => error,
      );
      expect(refused).toBeInstanceOf(JetStreamApiError);
      expect((refused as JetStreamApiError).code).toBe(JetStreamApiCodes.StreamWrongLastSequence);
    }
    expect(await tradingLast()).toBe(5n);
    // The sequencer starts with catch-up (TRADING is at the head: nothing to republish) and sequences on.
    await sequenceOrders(3);
    expect(await tradingLast()).toBe(8n);
    await checkLog(stack);
  });

  test("after an upgrade: TRADING messages published before the digest chain (same bytes, msg id = sequenceId) are accepted", async () => {
    // The log as the migration leaves it (digests backfilled), and TRADING as the old sequencer published it:
    // Nats-Msg-Id = sequenceId, no digest.
    const events = [1n, 2n, 3n].map((sequenceId) => ({
      ...makeOrder(),
      sequenceId,
      previousId: sequenceId - 1n,
      sequencedAt: new Date().toISOString(),
    }));
    await stack.store.append(chained(events), [], ZERO_DIGEST);
    for (const record of await stack.store.readAfter(0n, 10)) {
      await stack.js.publish("trading.create_order", record.payload, {
        msgID: record.sequenceId.toString(),
        expect: { lastSequence: Number(record.sequenceId - 1n) },
      });
    }
    for (let i = 0; i < 2; i++) await stack.intake.publish(makeOrder());
    running = await runSequencer(stack);
    await waitFor("5 on TRADING", async () => (await tradingLast()) === 5n);
    await waitFor("acked", allAcked);
    expect(running.sequencer.status()).toEqual({ head: 5n, tradingInSync: true, lastError: null });
    const trading = await readTrading(stack);
    expect(trading.map((m) => Boolean(m.digest))).toEqual([false, false, false, true, true]);
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
    await sleep(300);
    expect(await headOf()).toBe(0n);
  });
});
