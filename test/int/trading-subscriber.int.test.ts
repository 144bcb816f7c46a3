/**
 * The TRADING consumer library (src/client, imported here the way a downstream service does, by the package's
 * own name) against real nats-servers: events in order from the start and from a middle position, each exactly
 * once across a nats-server restart; typed refusals of a gap, an out-of-order message, a tampered body, a trimmed
 * stream and a wrong resume digest; and the broker's roles: the reader may subscribe, other roles are refused.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { DiscardPolicy } from "@nats-io/jetstream";
import {
  NatsAuthenticationError,
  type SubscribeTradingOptions,
  subscribeTrading,
  TradingAccessError,
  TradingDigestError,
  type TradingEvent,
  TradingGapError,
  TradingOrderError,
  TradingStreamError,
  TradingTrimmedError,
  ZERO_DIGEST,
} from "exactly-once-sequencer/trading";
import { NATS_ROLES, type NatsRole, passwordVariableOf } from "../../src/adapters/nats/permissions.ts";
import { TRADING_STREAM } from "../../src/adapters/nats/topology.ts";
import { msgIdDigest } from "../../src/adapters/nats/trading-publisher.ts";
import { encodeSequencedEvent } from "../../src/domain/events.ts";
import { type NatsServerHandle, startNats } from "../support/services.ts";
import {
  openTradingFixture,
  subjectOf,
  type TradingFixture,
  tradingMsgId,
} from "../support/trading-fixture.ts";

const TIMEOUT = 60_000;
const servers: NatsServerHandle[] = [];
const fixtures: TradingFixture[] = [];

/** A fresh nats-server whose TRADING holds `count` sequenced events. */
async function tradingServer(count: number): Promise<{ nats: NatsServerHandle; trading: TradingFixture }> {
  const nats = await startNats();
  servers.push(nats);
  const trading = await openTradingFixture(nats.url, count);
  fixtures.push(trading);
  return { nats, trading };
}

/** Reads the subscription to its end: the events it yielded, and the error it ended with (null when none). */
async function drain(options: SubscribeTradingOptions): Promise<{ events: TradingEvent[]; error: unknown }> {
  const events: TradingEvent[] = [];
  try {
    for await (const event of subscribeTrading(options)) events.push(event);
    return { events, error: null };
  } catch (error) {
    return { events, error };
  }
}

const ids = (events: TradingEvent[]) => events.map((e) => e.sequenceId);
const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => BigInt(from + i));

afterAll(async () => {
  for (const f of fixtures) await f.close().catch(() => {});
  for (const s of servers) await s.stop();
});

describe("reading TRADING in order", () => {
  let nats: NatsServerHandle;
  let trading: TradingFixture;
  beforeAll(async () => {
    ({ nats, trading } = await tradingServer(25));
  }, TIMEOUT);

  test("from after=0: every event once, decoded, with its chain digest", async () => {
    const { events, error } = await drain({ servers: nats.url, until: "end" });
    expect(error).toBeNull();
    expect(ids(events)).toEqual(range(1, 25));
    for (const [i, e] of events.entries()) {
      const published = trading.published[i];
      expect(e.payload).toBe(published?.payload as string);
      expect(e.digest).toBe(published?.digest as string);
      expect(e.subject).toBe("trading.create_order");
      expect(e.event).toEqual(published?.event as TradingEvent["event"]);
      expect(typeof e.event.referenceId).toBe("bigint");
      expect(e.event.previousId).toBe(e.sequenceId - 1n);
    }
  });

  test("from a middle position with the stored digest, or without the chain check (null)", async () => {
    const checked = await drain({
      servers: nats.url,
      after: 10n,
      previousDigest: trading.digestOf(10n),
      until: "end",
    });
    expect(checked.error).toBeNull();
    expect(ids(checked.events)).toEqual(range(11, 25));
    expect(checked.events.map((e) => e.digest)).toEqual(trading.published.slice(10).map((p) => p.digest));
    const unchecked = await drain({ servers: nats.url, after: 10n, previousDigest: null, until: 20n });
    expect(ids(unchecked.events)).toEqual(range(11, 20));
    expect(unchecked.events.every((e) => e.digest === null)).toBe(true);
    // Nothing past the end: an empty iteration, not a wait.
    expect(
      (await drain({ servers: nats.url, after: 25n, previousDigest: null, until: "end" })).events,
    ).toEqual([]);
  });

  test("a middle start needs the previous digest or an explicit null; a wrong one is a TradingDigestError", async () => {
    const missing = await drain({ servers: nats.url, after: 10n, until: "end" });
    expect(missing.error).toBeInstanceOf(TypeError);
    expect(String(missing.error)).toContain("previousDigest is required with after=10");
    const wrong = await drain({
      servers: nats.url,
      after: 10n,
      previousDigest: trading.digestOf(9n),
      until: "end",
    });
    expect(wrong.events).toEqual([]);
    expect(wrong.error).toBeInstanceOf(TradingDigestError);
    expect((wrong.error as TradingDigestError).sequenceId).toBe(11n);
    expect((wrong.error as TradingDigestError).published).toBe(msgIdDigest(trading.digestOf(11n)));
  });

  test("following: new events arrive as they are published; the signal ends the iteration quietly", async () => {
    const abort = new AbortController();
    const seen: bigint[] = [];
    const reading = (async () => {
      for await (const e of subscribeTrading({
        servers: nats.url,
        after: 20n,
        previousDigest: trading.digestOf(20n),
        signal: abort.signal,
      })) {
        seen.push(e.sequenceId);
        if (e.sequenceId === 25n) await trading.append(5);
        if (e.sequenceId === 30n) abort.abort();
      }
    })();
    await reading;
    expect(seen).toEqual(range(21, 30));
  });

  test("an abort while waiting for the next event, and a break by the caller, both end it promptly", async () => {
    const abort = new AbortController();
    const started = Date.now();
    setTimeout(() => abort.abort(), 300);
    const idle = await drain({
      servers: nats.url,
      after: 30n,
      previousDigest: trading.digestOf(30n),
      signal: abort.signal,
    });
    expect(idle).toEqual({ events: [], error: null });
    expect(Date.now() - started).toBeLessThan(5_000);
    const taken: bigint[] = [];
    for await (const e of subscribeTrading({ servers: nats.url })) {
      taken.push(e.sequenceId);
      if (taken.length === 3) break;
    }
    expect(taken).toEqual(range(1, 3));
  });
});

describe("refusals, each a typed error naming the sequenceId", () => {
  test("a message deleted from the middle: TradingGapError after the events before it", async () => {
    const { nats, trading } = await tradingServer(10);
    await trading.jsm.streams.deleteMessage(TRADING_STREAM, 5);
    const { events, error } = await drain({ servers: nats.url, until: "end" });
    expect(ids(events)).toEqual(range(1, 4));
    expect(error).toBeInstanceOf(TradingGapError);
    expect(error).toBeInstanceOf(TradingStreamError);
    expect(error).toMatchObject({ sequenceId: 5n, delivered: 6n });

    // Retention limits removing the start: TradingTrimmedError (the events are in PostgreSQL), not a gap.
    await trading.jsm.streams.update(TRADING_STREAM, { max_msgs: 3, discard: DiscardPolicy.Old });
    const trimmed = await drain({ servers: nats.url, until: "end" });
    expect(trimmed.events).toEqual([]);
    expect(trimmed.error).toBeInstanceOf(TradingTrimmedError);
    expect(trimmed.error).toMatchObject({ sequenceId: 1n, wanted: 1n, earliest: 8n, holdsNone: false });
    expect(String(trimmed.error)).toContain("GET /events?after=0");
    expect(String(trimmed.error)).toContain("subscribe again with after=7");
    expect(
      (await drain({ servers: nats.url, after: 7n, previousDigest: null, until: "end" })).events,
    ).toHaveLength(3);
  });

  test(
    "a message published out of order (sequenceId 7 at position 6): TradingOrderError",
    async () => {
      const { nats, trading } = await tradingServer(5);
      // A well-formed event 7, published at position 6 by a client without the sequencer's expectations.
      const event = { ...trading.next().event, sequenceId: 7n, previousId: 6n };
      const position = await trading.publishRaw(subjectOf(event), encodeSequencedEvent(event), "7:forged");
      expect(position).toBe(6);
      const { events, error } = await drain({ servers: nats.url, until: "end" });
      expect(ids(events)).toEqual(range(1, 5));
      expect(error).toBeInstanceOf(TradingOrderError);
      expect((error as TradingOrderError).sequenceId).toBe(6n);
      expect(String(error)).toContain("it carries sequenceId 7");
    },
    TIMEOUT,
  );

  test(
    "a body changed under its msg id (a different price, the log's digest): TradingDigestError",
    async () => {
      const { nats, trading } = await tradingServer(5);
      const real = trading.next();
      const tampered = encodeSequencedEvent({ ...real.event, price: "999999.25" } as typeof real.event);
      await trading.publishRaw(subjectOf(real.event), tampered, tradingMsgId(real));
      const { events, error } = await drain({ servers: nats.url, until: "end" });
      expect(ids(events)).toEqual(range(1, 5));
      expect(error).toBeInstanceOf(TradingDigestError);
      expect(error).toMatchObject({ sequenceId: 6n, published: msgIdDigest(real.digest) });
      // Without the chain check the same message passes: that is what previousDigest buys.
      const unchecked = await drain({ servers: nats.url, after: 5n, previousDigest: null, until: "end" });
      expect(unchecked.error).toBeNull();
      expect(unchecked.events[0]?.payload).toBe(tampered);
    },
    TIMEOUT,
  );
});

describe("a nats-server restart mid-stream", () => {
  test(
    "the subscriber yields every event exactly once, in order, from before and after the restart",
    async () => {
      // More than the consumer buffers (256): when the server goes, the reader holds part of what is stored.
      const { nats, trading } = await tradingServer(300);
      const seen: TradingEvent[] = [];
      const abort = new AbortController();
      let restarted: Promise<void> | undefined;
      /** TRADING's consumers (name, start position) while the reader is at 12, and at 330. */
      const consumersNow = async () =>
        (await trading.jsm.consumers.list(TRADING_STREAM).next()).map((c) => ({
          name: c.name,
          from: c.config.opt_start_seq,
        }));
      let before: { name: string; from: number | undefined }[] = [];
      let after: typeof before = [];
      const reading = (async () => {
        for await (const e of subscribeTrading({ servers: nats.url, signal: abort.signal })) {
          seen.push(e);
          // Part-way through what is stored: the server goes down and comes back on the same port and store.
          if (e.sequenceId === 12n) {
            before = await consumersNow();
            restarted = nats.restart().then(async () => {
              await trading.ready();
              await trading.append(30);
            });
          }
          if (e.sequenceId === 330n) {
            after = await consumersNow();
            abort.abort();
          }
        }
      })();
      const deadline = setTimeout(() => abort.abort(), 45_000);
      await reading;
      clearTimeout(deadline);
      await restarted;
      expect(ids(seen)).toEqual(range(1, 330));
      expect(seen.map((e) => e.digest)).toEqual(trading.published.map((p) => p.digest));
      // The broker lost the first consumer; the reader opened a new one at the first position it had not yielded
      // (past what it had buffered, so not 13).
      expect(before).toEqual([{ name: expect.any(String), from: 1 }]);
      expect(after).toHaveLength(1);
      expect(after[0]?.name).not.toBe(before[0]?.name);
      expect(after[0]?.from).toBeGreaterThan(13);
      expect(after[0]?.from).toBeLessThanOrEqual(301);
    },
    TIMEOUT,
  );

  test(
    "a reader waiting at the end of TRADING when the server restarts gets the events published after it",
    async () => {
      const { nats, trading } = await tradingServer(5);
      const seen: bigint[] = [];
      const abort = new AbortController();
      let restarted: Promise<void> | undefined;
      const reading = (async () => {
        for await (const e of subscribeTrading({ servers: nats.url, signal: abort.signal })) {
          seen.push(e.sequenceId);
          if (e.sequenceId === 5n) {
            restarted = nats.restart().then(async () => {
              await trading.ready();
              await trading.append(5);
            });
          }
          if (e.sequenceId === 10n) abort.abort();
        }
      })();
      const deadline = setTimeout(() => abort.abort(), 45_000);
      await reading;
      clearTimeout(deadline);
      await restarted;
      expect(seen).toEqual(range(1, 10));
    },
    TIMEOUT,
  );
});

describe("the broker losing or freezing the reader's consumer", () => {
  /** TRADING's consumers now: name and start position. */
  const consumersOf = async (trading: TradingFixture) =>
    (await trading.jsm.consumers.list(TRADING_STREAM).next()).map((c) => ({
      name: c.name,
      from: c.config.opt_start_seq,
    }));

  test(
    "its consumer deleted while it follows: it opens a new one at the next position and misses nothing",
    async () => {
      const { nats, trading } = await tradingServer(10);
      const seen: bigint[] = [];
      const abort = new AbortController();
      let deleted = "";
      const reading = (async () => {
        for await (const e of subscribeTrading({ servers: nats.url, signal: abort.signal })) {
          seen.push(e.sequenceId);
          if (e.sequenceId === 10n) {
            const [only] = await consumersOf(trading);
            deleted = only?.name ?? "";
            await trading.jsm.consumers.delete(TRADING_STREAM, deleted);
            await trading.append(5);
          }
          if (e.sequenceId === 15n) abort.abort();
        }
      })();
      const deadline = setTimeout(() => abort.abort(), 30_000);
      await reading;
      clearTimeout(deadline);
      expect(seen).toEqual(range(1, 15));
      expect(deleted).not.toBe("");
      const now = await consumersOf(trading);
      expect(now).toHaveLength(1);
      expect(now[0]?.name).not.toBe(deleted);
      expect(now[0]?.from).toBe(11);
    },
    TIMEOUT,
  );

  test(
    "no new consumer when nothing is lost: a follower idle past a pull's expiry, a reader pausing with a full window",
    async () => {
      // More than the pull window (4,096): the reader pauses holding a full window the broker owes nothing for.
      const { nats, trading } = await tradingServer(5_000);
      const seen: bigint[] = [];
      const abort = new AbortController();
      const names = new Set<string>();
      const reading = (async () => {
        for await (const e of subscribeTrading({ servers: nats.url, signal: abort.signal })) {
          seen.push(e.sequenceId);
          if (e.sequenceId === 1n) await Bun.sleep(12_000);
          if (e.sequenceId === 5_000n) {
            for (const c of await consumersOf(trading)) names.add(c.name);
            // Past the 10-s pull expiry with nothing to deliver (the broker answers 408 and is asked again).
            await Bun.sleep(12_000);
            await trading.append(3);
          }
          if (e.sequenceId === 5_003n) {
            for (const c of await consumersOf(trading)) names.add(c.name);
            abort.abort();
          }
        }
      })();
      const deadline = setTimeout(() => abort.abort(), 55_000);
      await reading;
      clearTimeout(deadline);
      expect(seen).toEqual(range(1, 5_003));
      expect(names.size).toBe(1);
    },
    TIMEOUT,
  );

  test(
    "the broker frozen past two idle heartbeats (SIGSTOP 13 s): once it resumes, a new consumer carries on from the next position",
    async () => {
      const { nats, trading } = await tradingServer(5);
      const seen: bigint[] = [];
      const abort = new AbortController();
      let resumed: Promise<void> | undefined;
      const reading = (async () => {
        for await (const e of subscribeTrading({ servers: nats.url, signal: abort.signal })) {
          seen.push(e.sequenceId);
          if (e.sequenceId === 5n) {
            nats.signal("SIGSTOP");
            resumed = Bun.sleep(13_000).then(async () => {
              nats.signal("SIGCONT");
              await trading.append(5);
            });
          }
          if (e.sequenceId === 10n) abort.abort();
        }
      })();
      const deadline = setTimeout(() => abort.abort(), 45_000);
      await reading;
      clearTimeout(deadline);
      await resumed;
      expect(seen).toEqual(range(1, 10));
      // The first consumer (from 1) is left to expire; the reader's second started at 6, after what it had.
      const now = await consumersOf(trading);
      expect(now.map((c) => c.from).sort()).toEqual([1, 6]);
    },
    TIMEOUT,
  );
});

describe("who may subscribe (the shipped deploy/nats-auth.conf)", () => {
  const PASSWORD = Object.fromEntries(
    NATS_ROLES.map((role) => [role, `p${role}Password0123456789`]),
  ) as Record<NatsRole, string>;
  const as = (role: NatsRole, password = PASSWORD[role]) => ({
    credentials: { kind: "user" as const, user: role, password },
    role,
  });
  let nats: NatsServerHandle;

  beforeAll(async () => {
    nats = await startNats({
      config: readFileSync(join(import.meta.dir, "../../deploy/nats-auth.conf"), "utf8"),
      env: Object.fromEntries(NATS_ROLES.map((role) => [passwordVariableOf(role), PASSWORD[role]])),
    });
    servers.push(nats);
    fixtures.push(
      await openTradingFixture(nats.url, 5, {
        user: "admin",
        pass: PASSWORD.admin,
        inboxPrefix: "_INBOX_admin",
      }),
    );
  }, TIMEOUT);

  test("the reader role reads TRADING with its credentials", async () => {
    const { events, error } = await drain({ servers: nats.url, ...as("reader"), until: "end" });
    expect(error).toBeNull();
    expect(ids(events)).toEqual(range(1, 5));
    expect(events[0]?.digest).not.toBe(ZERO_DIGEST);
  });

  test("the api and sequencer roles are refused reading TRADING (TradingAccessError)", async () => {
    for (const role of ["api", "sequencer"] as const) {
      const { events, error } = await drain({ servers: nats.url, ...as(role), until: "end" });
      expect(events).toEqual([]);
      expect(error).toBeInstanceOf(TradingAccessError);
      expect(String(error)).toContain("CONSUMER.CREATE.TRADING");
    }
  });

  test("a wrong password or no credentials: NatsAuthenticationError, naming no secret", async () => {
    const wrong = await drain({ servers: nats.url, ...as("reader", "not-the-password"), until: "end" });
    expect(wrong.error).toBeInstanceOf(NatsAuthenticationError);
    expect(String(wrong.error)).not.toContain("not-the-password");
    const anonymous = await drain({ servers: nats.url, until: "end" });
    expect(anonymous.error).toBeInstanceOf(NatsAuthenticationError);
  });
});
