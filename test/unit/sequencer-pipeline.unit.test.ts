/**
 * The sequencer's pipeline with in-memory fakes: the next batch is filtered, numbered and its append sent while
 * the current one commits (its read cannot see the batch being committed), and a failed commit makes every batch
 * in hand start again from scratch. The store enforces unique referenceIds like the database, so a missed duplicate would throw.
 * The store also checks the digest chain like the append statement, and TRADING differing from the log stops the
 * sequencer for good.
 */
import { describe, expect, test } from "bun:test";
import { LogContinuityError, TradingMismatchError } from "../../src/app/errors.ts";
import { chainDigests, ZERO_DIGEST } from "../../src/app/log-digest.ts";
import type {
  EventKey,
  EventStore,
  IntakeMessage,
  IntakeSource,
  RejectedMessage,
  SequencedRecord,
  SequencerObserver,
  StoredEvent,
  TradingLog,
} from "../../src/app/ports.ts";
import { Sequencer } from "../../src/app/sequencer.ts";
import { encodeIntakeEvent } from "../../src/domain/events.ts";
import { EMPTY_HEAD, type Head } from "../../src/domain/sequencing.ts";
import { createLogger } from "../../src/logger.ts";

const encoder = new TextEncoder();

function order(referenceId: bigint): Uint8Array {
  return encoder.encode(
    encodeIntakeEvent({
      referenceId,
      type: "CREATE_ORDER",
      createdAt: "2026-01-01T00:00:00.000Z",
      userId: 1n,
      orderId: referenceId + 1000n,
      direction: "BUY",
      price: "1.50",
      quantity: "2",
    }),
  );
}

/** Hands out scripted batches, one per `next` call, and records acks. */
class ScriptedSource implements IntakeSource {
  readonly acked: number[] = [];
  private seq = 0;
  constructor(private readonly batches: bigint[][]) {}
  async next(_max: number, waitMs: number): Promise<IntakeMessage[]> {
    const refs = this.batches.shift();
    if (!refs) {
      if (waitMs > 0) await Bun.sleep(Math.min(waitMs, 5));
      return [];
    }
    return refs.map((ref) => {
      const seq = ++this.seq;
      return {
        seq,
        subject: "sequence.create_order",
        data: order(ref),
        ack: () => this.acked.push(seq),
        working() {},
      };
    });
  }
  async close(): Promise<void> {}
}

/** Commits slowly; a read sees only what has committed; unique referenceIds like the real table. */
class SlowStore implements EventStore {
  readonly rows: StoredEvent[] = [];
  appends = 0;
  inFlight = 0;
  maxInFlight = 0;
  refusedNotContinuing = 0;
  failAppend: number | null = null;
  finds = 0;
  failFind: number | null = null;
  async head(): Promise<Head> {
    const last = this.rows[this.rows.length - 1];
    return last
      ? { sequenceId: last.event.sequenceId, sequencedAt: last.event.sequencedAt, digest: last.digest }
      : EMPTY_HEAD;
  }
  async findStored(referenceIds: readonly bigint[], keys: readonly string[]) {
    if (++this.finds === this.failFind) throw new Error("filter read failed");
    const refs = new Set(this.rows.map((row) => row.event.referenceId));
    const storedKeys = new Set(this.rows.flatMap((row) => row.event.idempotencyKey ?? []));
    return {
      references: new Set(referenceIds.filter((id) => refs.has(id))),
      idempotencyKeys: new Set(keys.filter((key) => storedKeys.has(key))),
    };
  }
  async append(
    batch: readonly StoredEvent[],
    _rejected: readonly RejectedMessage[],
    chainedFrom: string,
  ): Promise<void> {
    const attempt = ++this.appends;
    this.inFlight++;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    try {
      await Bun.sleep(20); // the next batch is prepared (and its append sent) meanwhile
    } finally {
      this.inFlight--;
    }
    if (attempt === this.failAppend) throw new Error("connection lost mid-commit");
    // The continuity check of the real statement: the row before the batch is stored and carries the digest
    // the batch was chained from.
    const first = batch[0]?.event.sequenceId;
    const before =
      first === undefined ? undefined : first === 1n ? ZERO_DIGEST : this.rows[Number(first) - 2]?.digest;
    if (first !== undefined && before === undefined) {
      this.refusedNotContinuing++;
      throw new LogContinuityError(`event ${first - 1n} is not stored: batch from ${first} not appended`);
    }
    if (first !== undefined && chainedFrom !== before) {
      throw new LogContinuityError(`event ${first - 1n}'s digest is not the one the batch was chained from`);
    }
    const refs = new Set(this.rows.map((row) => row.event.referenceId));
    for (const row of batch) {
      if (refs.has(row.event.referenceId)) throw new Error(`unique violation: ${row.event.referenceId}`);
      const expected = BigInt(this.rows.length + 1);
      if (row.event.sequenceId !== expected) throw new Error(`gap: ${row.event.sequenceId} != ${expected}`);
      this.rows.push(row);
      refs.add(row.event.referenceId);
    }
  }
  async readAfter(after: bigint, limit: number) {
    return this.rows
      .filter((row) => row.event.sequenceId > after)
      .slice(0, limit)
      .map(record);
  }
  async find(by: EventKey) {
    const row = "sequenceId" in by ? this.rows[Number(by.sequenceId) - 1] : undefined;
    return row ? record(row) : null;
  }
}

function record({ event, payload, digest }: StoredEvent): SequencedRecord {
  return { sequenceId: event.sequenceId, type: event.type, payload, digest };
}

class MemoryTrading implements TradingLog {
  readonly records: SequencedRecord[] = [];
  appends = 0;
  failAppend: number | null = null;
  async lastSequence(): Promise<bigint> {
    return BigInt(this.records.length);
  }
  async append(records: readonly SequencedRecord[]): Promise<void> {
    if (records.length > 0 && ++this.appends === this.failAppend) throw new Error("PubAck timeout");
    for (const record of records) {
      if (record.sequenceId !== BigInt(this.records.length + 1)) throw new Error("out of order");
      this.records.push(record);
    }
  }
  async verify(expected: SequencedRecord): Promise<void> {
    const stored = this.records[Number(expected.sequenceId) - 1];
    if (stored?.payload !== expected.payload || stored.digest !== expected.digest) {
      throw new TradingMismatchError(expected.sequenceId, "not the log's event");
    }
  }
}

async function runUntil(sequencer: Sequencer, done: () => boolean): Promise<void> {
  const abort = new AbortController();
  const running = sequencer.run(abort.signal);
  const deadline = Date.now() + 10_000;
  while (!done() && Date.now() < deadline) await Bun.sleep(5);
  abort.abort();
  await running;
}

/**
 * batchSize 4 by default: every scripted batch (1–3 events) then counts as a backlog (≥ a quarter of it), so batches
 * are taken while others are in hand — the pipeline these tests are about. With a larger batchSize small batches
 * wait for the one in hand (see "without a backlog" below).
 */
function sequencerOver(
  source: IntakeSource,
  store: EventStore,
  trading: TradingLog,
  observer?: SequencerObserver,
  batchSize = 4,
): Sequencer {
  return new Sequencer(
    { source, store, trading, ...(observer ? { observer } : {}) },
    { batchSize, fetchWaitMs: 10, catchUpPageSize: 100, keepAliveMs: 1_000 },
    createLogger({ test: true }, "silent"),
  );
}

/** A sequencer whose signs of progress for the writer lease (alive) are recorded in `beats`, as times. */
function beatingSequencer(
  source: IntakeSource,
  store: EventStore,
  fetchWaitMs: number,
  beats: number[],
): Sequencer {
  return new Sequencer(
    { source, store, trading: new MemoryTrading() },
    {
      batchSize: 10,
      fetchWaitMs,
      catchUpPageSize: 100,
      keepAliveMs: 1_000,
      alive: () => beats.push(Date.now()),
    },
    createLogger({ test: true }, "silent"),
  );
}

/** Records what the sequencer reports about TRADING mismatches. */
function mismatchObserver(): SequencerObserver & { reported: (bigint | null)[] } {
  const reported: (bigint | null)[] = [];
  return { reported, batch() {}, catchUp() {}, tradingMismatch: (sequenceId) => reported.push(sequenceId) };
}

describe("sequencer pipeline", () => {
  test("a repeat of an event in the batch still committing is dropped, not stored twice", async () => {
    // Batch 2 is taken and filtered while batch 1 commits: its read cannot see 1n and 2n yet.
    const source = new ScriptedSource([[1n, 2n, 3n], [2n, 4n, 1n], [5n, 4n], [6n]]);
    const store = new SlowStore();
    const trading = new MemoryTrading();
    await runUntil(sequencerOver(source, store, trading), () => source.acked.length === 9);
    expect(store.rows.map((row) => row.event.referenceId)).toEqual([1n, 2n, 3n, 4n, 5n, 6n]);
    expect(trading.records.map((record) => record.sequenceId)).toEqual([1n, 2n, 3n, 4n, 5n, 6n]);
    expect(store.appends).toBe(4);
    expect(source.acked.sort((a, b) => a - b)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9]);
    // Each event's digest is chained from the one before, across batches (numbered in memory), and TRADING
    // carries the same digests.
    const digests = chainDigests(
      ZERO_DIGEST,
      store.rows.map((row) => row.payload),
    );
    expect(store.rows.map((row) => row.digest)).toEqual(digests);
    expect(trading.records.map((r) => r.digest)).toEqual(digests);
  });

  test("the next batch's append is sent before the previous one has committed", async () => {
    const source = new ScriptedSource([[1n, 2n], [3n], [4n, 5n], [6n]]);
    const store = new SlowStore();
    const trading = new MemoryTrading();
    await runUntil(sequencerOver(source, store, trading), () => source.acked.length === 6);
    expect(store.maxInFlight).toBeGreaterThanOrEqual(2);
    expect(store.rows.map((row) => row.event.sequenceId)).toEqual([1n, 2n, 3n, 4n, 5n, 6n]);
    expect(trading.records.map((record) => record.sequenceId)).toEqual([1n, 2n, 3n, 4n, 5n, 6n]);
  });

  test("without a backlog (batches under a quarter of batchSize) a batch waits for the one in hand: one append at a time", async () => {
    const source = new ScriptedSource([[1n, 2n], [3n], [4n, 5n], [6n]]);
    const store = new SlowStore();
    const trading = new MemoryTrading();
    await runUntil(sequencerOver(source, store, trading, undefined, 100), () => source.acked.length === 6);
    expect(store.maxInFlight).toBe(1);
    expect(store.rows.map((row) => row.event.sequenceId)).toEqual([1n, 2n, 3n, 4n, 5n, 6n]);
    expect(trading.records.map((record) => record.sequenceId)).toEqual([1n, 2n, 3n, 4n, 5n, 6n]);
  });

  test("a batch of a quarter of batchSize or more is a backlog: the next one is taken while it commits", async () => {
    const source = new ScriptedSource([[1n, 2n, 3n], [4n], [5n], [6n]]);
    const store = new SlowStore();
    const trading = new MemoryTrading();
    await runUntil(sequencerOver(source, store, trading, undefined, 12), () => source.acked.length === 6);
    expect(store.maxInFlight).toBeGreaterThanOrEqual(2);
    expect(store.rows.map((row) => row.event.sequenceId)).toEqual([1n, 2n, 3n, 4n, 5n, 6n]);
  });

  test("a publish that fails while later batches commit: all redone, each event stored, published and acked once", async () => {
    const source = new ScriptedSource([[1n, 2n], [3n], [4n], [5n, 6n]]);
    const store = new SlowStore();
    const trading = new MemoryTrading();
    trading.failAppend = 1; // batch 1's publish, after its commit, while batch 2's append is in flight
    await runUntil(sequencerOver(source, store, trading), () => source.acked.length === 6);
    expect(store.rows.map((row) => row.event.referenceId)).toEqual([1n, 2n, 3n, 4n, 5n, 6n]);
    expect(trading.records.map((record) => record.sequenceId)).toEqual([1n, 2n, 3n, 4n, 5n, 6n]);
    expect(source.acked.sort((a, b) => a - b)).toEqual([1, 2, 3, 4, 5, 6]);
  });

  test("a filter read that fails mid-pipeline: the batches before it finish, it and the rest are redone", async () => {
    const source = new ScriptedSource([[1n, 2n], [3n, 1n], [4n]]);
    const store = new SlowStore();
    store.failFind = 2; // batch 2's read, while batch 1 commits
    const trading = new MemoryTrading();
    await runUntil(sequencerOver(source, store, trading), () => source.acked.length === 5);
    expect(store.rows.map((row) => row.event.referenceId)).toEqual([1n, 2n, 3n, 4n]);
    expect(trading.records.map((record) => record.sequenceId)).toEqual([1n, 2n, 3n, 4n]);
    expect(source.acked.sort((a, b) => a - b)).toEqual([1, 2, 3, 4, 5]);
  });

  test("appends sent behind a failed one store nothing; every batch is redone in order, without a gap", async () => {
    const source = new ScriptedSource([[1n, 2n], [3n], [4n], [5n, 6n]]);
    const store = new SlowStore();
    store.failAppend = 1;
    const trading = new MemoryTrading();
    await runUntil(sequencerOver(source, store, trading), () => source.acked.length === 6);
    expect(store.refusedNotContinuing).toBeGreaterThanOrEqual(1);
    expect(store.rows.map((row) => row.event.referenceId)).toEqual([1n, 2n, 3n, 4n, 5n, 6n]);
    expect(trading.records.map((record) => record.sequenceId)).toEqual([1n, 2n, 3n, 4n, 5n, 6n]);
    expect(source.acked.sort((a, b) => a - b)).toEqual([1, 2, 3, 4, 5, 6]);
  });

  test("a failed commit redoes the batch and the one filtered against it, from scratch", async () => {
    const source = new ScriptedSource([[1n, 2n], [2n, 3n], [4n]]);
    const store = new SlowStore();
    store.failAppend = 1; // batch 1's statement fails after batch 2 was filtered against it
    const trading = new MemoryTrading();
    await runUntil(sequencerOver(source, store, trading), () => source.acked.length === 5);
    expect(store.rows.map((row) => row.event.referenceId)).toEqual([1n, 2n, 3n, 4n]);
    expect(trading.records.map((record) => record.sequenceId)).toEqual([1n, 2n, 3n, 4n]);
    expect(source.acked.sort((a, b) => a - b)).toEqual([1, 2, 3, 4, 5]);
  });

  test("TRADING ahead of the log: the sequencer stops, says where, takes no work, and waits for shutdown", async () => {
    const source = new ScriptedSource([[1n, 2n]]);
    const store = new SlowStore();
    const trading = new MemoryTrading();
    trading.records.push({ sequenceId: 1n, type: "DEPOSIT", payload: "{}", digest: ZERO_DIGEST }); // by hand
    const observer = mismatchObserver();
    const sequencer = sequencerOver(source, store, trading, observer);
    const abort = new AbortController();
    let returned = false;
    const running = sequencer.run(abort.signal).then(() => {
      returned = true;
    });
    await Bun.sleep(100);
    expect(returned).toBe(false); // stopped, but still up (holding its lease) until shutdown
    expect(store.appends).toBe(0);
    expect(source.acked).toEqual([]);
    expect(sequencer.status().tradingInSync).toBe(false);
    expect(sequencer.status().lastError).toContain("sequenceId 1");
    expect(sequencer.status().lastError).toContain("sequencing stopped");
    expect(observer.reported).toEqual([1n]);
    abort.abort();
    await running;
  });

  test("a TradingMismatchError from a batch's publish mid-pipeline stops the sequencer: no retry, no more batches", async () => {
    const source = new ScriptedSource([[1n, 2n], [3n], [4n], [5n], [6n]]);
    const store = new SlowStore();
    const trading = new MemoryTrading();
    const append = trading.append.bind(trading);
    let publishes = 0;
    trading.append = async (records) => {
      if (++publishes === 2) throw new TradingMismatchError(3n, "stored message is not ours");
      return append(records);
    };
    const observer = mismatchObserver();
    const sequencer = sequencerOver(source, store, trading, observer);
    await runUntil(sequencer, () => sequencer.status().lastError !== null);
    await Bun.sleep(50);
    expect(publishes).toBe(2); // never retried
    expect(trading.records.map((r) => r.sequenceId)).toEqual([1n, 2n]);
    expect(source.acked).toEqual([1, 2]); // batch 1 only
    expect(sequencer.status()).toMatchObject({ tradingInSync: false });
    expect(sequencer.status().lastError).toContain("at sequenceId 3: stored message is not ours");
    expect(observer.reported).toEqual([null, 3n]); // in sync at start, then the mismatch
  });

  test("progress for the writer lease: shown while idle and while backing off, and not while an append is stuck", async () => {
    const beats: number[] = [];
    const store = new SlowStore();
    let stuck: (() => void) | null = null;
    const append = store.append.bind(store);
    let appendCalls = 0;
    // The third append hangs until released (a statement stuck behind a lock); every find fails for a while.
    store.append = async (...args) => {
      if (++appendCalls === 3) await new Promise<void>((resolve) => (stuck = resolve));
      return append(...args);
    };
    const sequencer = beatingSequencer(new ScriptedSource([[1n], [2n], [3n]]), store, 10, beats);
    const abort = new AbortController();
    const running = sequencer.run(abort.signal);
    const deadline = Date.now() + 5_000;
    while (stuck === null && Date.now() < deadline) await Bun.sleep(5);
    expect(stuck).not.toBeNull();
    // Stuck: the loop waits for the append, so no sign of progress for as long as it lasts.
    await Bun.sleep(50);
    const during = beats.length;
    await Bun.sleep(200);
    expect(beats.length).toBe(during);
    (stuck as unknown as () => void)();
    while (store.rows.length < 3 && Date.now() < deadline) await Bun.sleep(5);
    // Idle again: beats at least every fetchWaitMs.
    const idleFrom = beats.length;
    await Bun.sleep(200);
    expect(beats.length - idleFrom).toBeGreaterThan(5);
    abort.abort();
    await running;
  });

  test("a long backoff still shows progress at least every fetchWaitMs", async () => {
    const beats: number[] = [];
    const store = new SlowStore();
    store.head = async () => {
      throw new Error("database unavailable");
    };
    const sequencer = beatingSequencer(new ScriptedSource([]), store, 20, beats);
    const abort = new AbortController();
    const running = sequencer.run(abort.signal);
    await Bun.sleep(1_500); // backoff grows past 400 ms by then
    abort.abort();
    await running;
    const gaps = beats.slice(1).map((at, i) => at - (beats[i] as number));
    expect(Math.max(...gaps)).toBeLessThan(100);
    expect(sequencer.status().lastError).toBe("database unavailable");
  });
});
