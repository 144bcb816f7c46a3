import { describe, expect, test } from "bun:test";
import { type StatusReading, StatusTracker } from "../../src/app/status.ts";

const T0 = 1_700_000_000_000;

/** A reading at second `s` (from T0): an idle, healthy pipeline unless overridden. */
function reading(s: number, overrides: Partial<StatusReading> = {}): StatusReading {
  return {
    at: T0 + s * 1000,
    intake: { pending: 0, ackPending: 0, redeliveredUnacked: 0, stored: 100 },
    databaseHead: 100n,
    tradingHead: 100n,
    accepted: null,
    sequencer: null,
    writer: null,
    checks: { nats: { ok: true } },
    ...overrides,
  };
}

const lagged = (pending: number, stored = 100) => ({ pending, ackPending: 0, redeliveredUnacked: 0, stored });

describe("rates", () => {
  test("in, accepted, sequenced and redelivered per second over the last 5 s", () => {
    const tracker = new StatusTracker();
    for (let s = 0; s <= 10; s++) {
      tracker.record(
        reading(s, {
          intake: lagged(0, 1000 + 10 * s),
          accepted: 7 * s,
          databaseHead: BigInt(500 + 8 * s),
          tradingHead: BigInt(500 + 8 * s),
          sequencer: {
            leader: true,
            lease: "holds the writer lease (term 1)",
            error: null,
            redelivered: 2 * s,
          },
        }),
      );
    }
    const { rates } = tracker.snapshot(T0 + 10_000);
    expect(rates).toEqual({ intake: 10, accepted: 7, sequenced: 8, redelivered: 2 });
  });

  test("only the rate window counts: a burst a minute ago does not lift the current rate", () => {
    const tracker = new StatusTracker({ rateWindowMs: 5_000 });
    tracker.record(reading(0, { databaseHead: 0n }));
    tracker.record(reading(1, { databaseHead: 10_000n }));
    for (let s = 60; s <= 65; s++) tracker.record(reading(s, { databaseHead: BigInt(10_000 + (s - 60)) }));
    expect(tracker.snapshot(T0 + 65_000).rates.sequenced).toBe(1);
  });

  test("a figure this process does not have, or only one reading of, has no rate", () => {
    const tracker = new StatusTracker();
    tracker.record(reading(0));
    expect(tracker.snapshot(T0).rates).toEqual({
      intake: null,
      accepted: null,
      sequenced: null,
      redelivered: null,
    });
  });

  test("heads past 2^53 still give exact differences; a head that went back gives 0, not a negative rate", () => {
    const big = 2n ** 60n;
    const tracker = new StatusTracker();
    tracker.record(reading(0, { databaseHead: big, tradingHead: big }));
    tracker.record(reading(1, { databaseHead: big + 3n, tradingHead: big + 3n }));
    const snapshot = tracker.snapshot(T0 + 1_000);
    expect(snapshot.rates.sequenced).toBe(3);
    expect(snapshot.heads).toEqual({
      database: (big + 3n).toString(),
      trading: (big + 3n).toString(),
      tradingBehind: "0",
    });
    tracker.record(reading(2, { databaseHead: big, tradingHead: big }));
    expect(tracker.snapshot(T0 + 2_000).history.points.at(-1)?.sequenced).toBe(0);
  });

  test("history: one point per reading after the first, within the history span, with the lag", () => {
    const tracker = new StatusTracker({ historyMs: 10_000 });
    for (let s = 0; s <= 30; s++) {
      tracker.record(reading(s, { intake: lagged(s % 3, 10 * s), databaseHead: BigInt(4 * s) }));
    }
    const { history } = tracker.snapshot(T0 + 30_000);
    expect(history.seconds).toBe(10);
    expect(history.points.length).toBe(10);
    expect(history.points.at(-1)).toEqual({
      at: T0 + 30_000,
      intake: 10,
      accepted: null,
      sequenced: 4,
      lag: 0,
    });
    expect(history.points.map((p) => p.lag)).toEqual([0, 1, 2, 0, 1, 2, 0, 1, 2, 0]);
  });
});

describe("stalled", () => {
  test("intake lag above zero and the database head still for longer than stallAfterMs: STALLED", () => {
    const tracker = new StatusTracker({ stallAfterMs: 5_000 });
    tracker.record(reading(0));
    for (let s = 1; s <= 7; s++) tracker.record(reading(s, { intake: lagged(10 * s) }));
    const early = new StatusTracker({ stallAfterMs: 5_000 });
    early.record(reading(0));
    for (let s = 1; s <= 4; s++) early.record(reading(s, { intake: lagged(10 * s) }));

    const stalled = tracker.snapshot(T0 + 7_000);
    expect(stalled.state).toBe("stalled");
    expect(stalled.stuckSeconds).toBe(6);
    expect(stalled.reason).toContain("70 intake messages waiting");
    const waiting = early.snapshot(T0 + 4_000);
    expect(waiting.state).toBe("ok");
    expect(waiting.stuckSeconds).toBe(3);
  });

  test("lag above zero while the head moves is sequencing, not a stall", () => {
    const tracker = new StatusTracker({ stallAfterMs: 2_000 });
    for (let s = 0; s <= 10; s++) {
      tracker.record(
        reading(s, { intake: lagged(500), databaseHead: BigInt(100 + s), tradingHead: BigInt(100 + s) }),
      );
    }
    const snapshot = tracker.snapshot(T0 + 10_000);
    expect(snapshot.state).toBe("ok");
    expect(snapshot.reason).toBe("sequencing");
    expect(snapshot.stuckSeconds).toBeNull();
  });

  test("a fresh order caught after a long idle spell is no stall: the lag must last as long", () => {
    const tracker = new StatusTracker({ stallAfterMs: 5_000 });
    for (let s = 0; s <= 60; s++) tracker.record(reading(s));
    tracker.record(reading(61, { intake: lagged(1) }));
    expect(tracker.snapshot(T0 + 61_000).state).toBe("ok");
  });

  test("a stall ends as soon as the head moves again", () => {
    const tracker = new StatusTracker({ stallAfterMs: 5_000 });
    for (let s = 0; s <= 10; s++) tracker.record(reading(s, { intake: lagged(50) }));
    expect(tracker.snapshot(T0 + 10_000).state).toBe("stalled");
    tracker.record(reading(11, { intake: lagged(20), databaseHead: 130n, tradingHead: 130n }));
    expect(tracker.snapshot(T0 + 11_000).state).toBe("ok");
  });

  test("TRADING behind the database and not moving is a stall; behind but moving (pipelined) is not", () => {
    const stuck = new StatusTracker({ stallAfterMs: 3_000 });
    const moving = new StatusTracker({ stallAfterMs: 3_000 });
    for (let s = 0; s <= 6; s++) {
      stuck.record(reading(s, { databaseHead: 120n, tradingHead: 100n }));
      moving.record(reading(s, { databaseHead: BigInt(120 + 10 * s), tradingHead: BigInt(110 + 10 * s) }));
    }
    const snapshot = stuck.snapshot(T0 + 6_000);
    expect(snapshot.state).toBe("stalled");
    expect(snapshot.reason).toContain("TRADING has been behind the database");
    expect(snapshot.heads.tradingBehind).toBe("20");
    expect(moving.snapshot(T0 + 6_000).state).toBe("ok");
  });

  test("without a database head or an intake lag the verdict is unknown, not OK", () => {
    const noHead = new StatusTracker();
    noHead.record(reading(0, { databaseHead: null }));
    const noLag = new StatusTracker();
    noLag.record(reading(0, { intake: null }));
    expect(noHead.snapshot(T0).state).toBe("unknown");
    expect(noLag.snapshot(T0).state).toBe("unknown");
    expect(new StatusTracker().snapshot(T0).state).toBe("unknown");
  });
});

describe("process, writer and last error", () => {
  test("the role: leader, standby, or api without a sequencer", () => {
    const role = (sequencer: StatusReading["sequencer"]) => {
      const tracker = new StatusTracker();
      tracker.record(reading(0, { sequencer }));
      return tracker.snapshot(T0).process;
    };
    const standby = "standby; the writer is host-a:42 (term 3)";
    expect(
      role({ leader: true, lease: "holds the writer lease (term 3)", error: null, redelivered: 0 }),
    ).toEqual({
      role: "leader",
      lease: "holds the writer lease (term 3)",
    });
    expect(role({ leader: false, lease: standby, error: null, redelivered: 0 })).toEqual({
      role: "standby",
      lease: standby,
    });
    expect(role(null)).toEqual({ role: "api", lease: null });
  });

  test("the writer row with its term as a decimal string, and the other connected sequencers as standbys", () => {
    const tracker = new StatusTracker();
    const sequencers = ["host-b:7", "host-a:42", "host-c:9"];
    tracker.record(reading(0, { writer: { holder: "host-a:42", term: 2n ** 62n, live: false, sequencers } }));
    expect(tracker.snapshot(T0).writer).toEqual({
      holder: "host-a:42",
      term: (2n ** 62n).toString(),
      live: false,
      standbys: ["host-b:7", "host-c:9"],
    });
  });

  test("the last error stays on the page after the sequencer cleared it, marked as no longer current", () => {
    const tracker = new StatusTracker();
    const sequencer = (error: string | null) => ({ leader: true, lease: "holds", error, redelivered: 0 });
    tracker.record(reading(0, { sequencer: sequencer(null) }));
    expect(tracker.snapshot(T0).lastError).toBeNull();
    tracker.record(reading(1, { sequencer: sequencer("connection refused") }));
    tracker.record(reading(2, { sequencer: sequencer("connection refused") }));
    expect(tracker.snapshot(T0 + 2_000).lastError).toEqual({
      message: "connection refused",
      since: new Date(T0 + 1_000).toISOString(),
      lastSeen: new Date(T0 + 2_000).toISOString(),
      current: true,
    });
    tracker.record(reading(3, { sequencer: sequencer(null) }));
    expect(tracker.snapshot(T0 + 3_000).lastError).toMatchObject({
      message: "connection refused",
      current: false,
    });
  });

  test("a reading older than the last is ignored", () => {
    const tracker = new StatusTracker();
    tracker.record(reading(5, { databaseHead: 200n }));
    tracker.record(reading(4, { databaseHead: 100n }));
    expect(tracker.snapshot(T0 + 5_000).heads.database).toBe("200");
  });
});
