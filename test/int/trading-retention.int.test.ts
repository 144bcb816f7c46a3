/**
 * TRADING trimmed by retention limits (TRADING_MAX_AGE / TRADING_MAX_BYTES in production; here a small max_msgs or
 * max_age set directly on the stream): the readers of TRADING say where the removed events are instead of silently
 * starting later, and the sequencer neither halts on a tail the limits removed nor has its publishes refused.
 * Real nats-server and PostgreSQL (or the harness's PGlite fallback).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { DiscardPolicy } from "@nats-io/jetstream";
import { nanos } from "@nats-io/transport-node";
import { TRADING_STREAM } from "../../src/adapters/nats/topology.ts";
import { JetStreamTradingLog } from "../../src/adapters/nats/trading-publisher.ts";
import { TradingMismatchError } from "../../src/app/errors.ts";
import { formatVerification, inspect, verifyLog } from "../../src/inspect.ts";
import { runCli } from "../support/cli.ts";
import { getPostgres, type NatsServerHandle, startNats } from "../support/services.ts";
import { makeOrder, openStack, runSequencer, type Stack } from "../support/stack.ts";
import { waitFor } from "../support/wait.ts";

const TIMEOUT = 60_000;

let nats: NatsServerHandle;
let stack: Stack;
let databaseUrl: string;

/** The CLI with `args` against this test's broker and database: stdout, stderr and the exit code. */
function cli(...args: string[]): Promise<{ out: string; err: string; code: number }> {
  const env = {
    PATH: process.env.PATH ?? "",
    NATS_URL: nats.url,
    DATABASE_URL: databaseUrl,
    AUTH_SECRET: "x".repeat(32),
  };
  return runCli(env, ...args);
}

async function sequence(count: number, head: number): Promise<void> {
  for (let i = 0; i < count; i++) await stack.intake.publish(makeOrder());
  const running = await runSequencer(stack, { batchSize: 7 });
  try {
    await waitFor(`sequenced up to ${head}`, async () => {
      const i = await inspect(nats.url, databaseUrl);
      return i.verdict.state === "in sync" && i.database?.head === String(head);
    });
  } finally {
    await running.stop();
  }
}

const tradingState = async () => (await stack.jsm.streams.info(TRADING_STREAM)).state;

beforeAll(async () => {
  nats = await startNats();
  databaseUrl = await (await getPostgres()).createDatabase();
  stack = await openStack(nats.url, databaseUrl);
  await sequence(30, 30);
  // TRADING keeps its last 10 messages: 1..20 are removed.
  await stack.jsm.streams.update(TRADING_STREAM, { max_msgs: 10, discard: DiscardPolicy.Old });
  const state = await tradingState();
  expect([state.first_seq, state.last_seq, state.messages]).toEqual([21, 30, 10]);
}, TIMEOUT);

afterAll(async () => {
  await stack?.close();
  await nats?.stop();
});

describe("replay from a trimmed TRADING", () => {
  test(
    "--after below TRADING's first message fails with one line naming the earliest it holds and GET /events",
    async () => {
      const { out, err, code } = await cli("replay", "--after", "5");
      expect(code).not.toBe(0);
      expect(out).toBe("");
      const lines = err.trim().split("\n");
      expect(lines).toHaveLength(1);
      expect(lines[0]).toContain("TRADING no longer holds sequenceId 6");
      expect(lines[0]).toContain("the earliest TRADING still holds is 21");
      expect(lines[0]).toContain("GET /events?after=5");
      expect(lines[0]).toContain("replay --after 20");
      // Also from the start, and with --follow.
      expect((await cli("replay")).err).toContain("GET /events?after=0");
      const follow = await cli("replay", "--after", "19", "--follow");
      expect(follow.code).not.toBe(0);
      expect(follow.err).toContain("no longer holds sequenceId 20");
    },
    TIMEOUT,
  );

  test(
    "--after at or past the gap replays what TRADING holds",
    async () => {
      const { out, code } = await cli("replay", "--after", "20");
      expect(code).toBe(0);
      const events = out
        .trim()
        .split("\n")
        .map((line) => JSON.parse(line) as { sequenceId: string });
      expect(events.map((e) => e.sequenceId)).toEqual(Array.from({ length: 10 }, (_, i) => String(21 + i)));
      const later = await cli("replay", "--after", "27");
      expect(later.code).toBe(0);
      expect(later.out.trim().split("\n")).toHaveLength(3);
    },
    TIMEOUT,
  );
});

describe("inspect --verify over a trimmed TRADING", () => {
  test(
    "starts its walk at TRADING's first message and says so (OK, exit 0), instead of reporting 1..20 missing",
    async () => {
      const verified = await verifyLog(nats.url, databaseUrl, 1n);
      expect(verified.state).toBe("OK");
      expect(verified.detail).toStartWith("TRADING no longer holds 1..20");
      expect(verified.detail).toContain("walked from 21");
      expect(verified.detail).toContain("events 21..30 chain intact, TRADING 21..30 match");
      // From a position TRADING holds: no note.
      expect((await verifyLog(nats.url, databaseUrl, 25n)).detail).toStartWith("events 25..30");
      const { out, code } = await cli("inspect", "--verify");
      expect(code).toBe(0);
      expect(out).toStartWith("verify     OK: TRADING no longer holds 1..20");
      const inspection = await inspect(nats.url, databaseUrl);
      expect(inspection.trading).toEqual({ messages: 10, firstSeq: 21, lastSeq: 30 });
      expect(inspection.verdict.state).toBe("in sync");
    },
    TIMEOUT,
  );

  test(
    "a message missing at or above TRADING's first message is still a mismatch",
    async () => {
      // (It cannot be put back: the tests below expect it gone, and then trim everything.)
      await stack.jsm.streams.deleteMessage(TRADING_STREAM, 25);
      const verified = await verifyLog(nats.url, databaseUrl, 1n);
      expect(verified).toMatchObject({ state: "MISMATCH", sequenceId: "25" });
      expect(formatVerification(verified)).toContain("TRADING has no message at 25");
    },
    TIMEOUT,
  );
});

describe("JetStreamTradingLog.verify and the sequencer over a trimmed TRADING", () => {
  const trading = () => new JetStreamTradingLog(stack.nc, stack.js, stack.jsm, 5_000);

  test(
    "verify resolves below TRADING's first message (removed by a limit) and throws for one missing above it",
    async () => {
      const below = await stack.store.find({ sequenceId: 5n });
      const held = await stack.store.find({ sequenceId: 30n });
      const missing = await stack.store.find({ sequenceId: 25n }); // deleted by the test above
      if (!below || !held || !missing) throw new Error("events not stored");
      await trading().verify(below);
      await trading().verify(held);
      const error = await trading()
        .verify(missing)
        .then(
          () => null,
          (e: unknown) => e,
        );
      expect(error).toBeInstanceOf(TradingMismatchError);
      expect((error as TradingMismatchError).sequenceId).toBe(25n);
    },
    TIMEOUT,
  );

  test(
    "with every message aged out the sequencer recovers without halting and appends after the last position",
    async () => {
      // max_age 1 s (the duplicate window may not exceed it): everything on TRADING ages out.
      await stack.jsm.streams.update(TRADING_STREAM, {
        max_msgs: -1,
        max_age: nanos(1_000),
        duplicate_window: nanos(1_000),
        discard: DiscardPolicy.Old,
      });
      await waitFor("TRADING to age out", async () => (await tradingState()).messages === 0, 20_000);
      expect((await tradingState()).last_seq).toBe(30);
      const empty = await inspect(nats.url, databaseUrl);
      expect(empty.trading).toEqual({ messages: 0, firstSeq: 31, lastSeq: 30 });
      expect(empty.verdict.state).toBe("in sync");
      // The tail (30) is gone: recovery's verify must not halt on it; new events land at 31..35.
      const tail = await stack.store.find({ sequenceId: 30n });
      if (!tail) throw new Error("event 30 not stored");
      await trading().verify(tail);
      await stack.jsm.streams.update(TRADING_STREAM, {
        max_age: nanos(3_600_000),
        duplicate_window: nanos(120_000),
      });
      await sequence(5, 35);
      const state = await tradingState();
      expect([state.first_seq, state.last_seq, state.messages]).toEqual([31, 35, 5]);
      const replayed = await cli("replay", "--after", "30");
      expect(replayed.code).toBe(0);
      expect(replayed.out.trim().split("\n")).toHaveLength(5);
      const verified = await verifyLog(nats.url, databaseUrl, 1n);
      expect(verified.state).toBe("OK");
      expect(verified.detail).toStartWith("TRADING no longer holds 1..30");
    },
    TIMEOUT,
  );
});
