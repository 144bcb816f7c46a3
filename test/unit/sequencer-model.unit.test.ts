/**
 * The sequencer against in-memory models of its three ports, under a randomized schedule and randomized faults
 * (fast-check: `fc.scheduler` decides in which order every pending I/O completes, so the pipeline's appends,
 * filter reads, publishes and fetches interleave differently in every case).
 *
 * The models keep the real adapters' rules and throw their real error types:
 * - the event store (src/adapters/db/event-store.ts): one writer session whose statements run in the order they
 *   were sent; an append stores nothing unless the row before it carries the digest it was chained from
 *   (LogContinuityError); unique referenceId, idempotency key and sequenceId; rejected messages once per stream
 *   sequence. Filter reads run on a pool, at any time, and see what has committed;
 * - TRADING (src/adapters/nats/trading-publisher.ts): msg-id deduplication, expected last sequence and expected
 *   last msg id per message, only the last message of an append acknowledged; a duplicate PubAck is checked by
 *   reading the message back; JetStreamApiError, TimeoutError, TradingPositionError, TradingMismatchError;
 * - the intake source (src/adapters/nats/intake-consumer.ts): hands a message out once until it is acked; an ack
 *   that is lost sends it again later; closing hands every unacked message back (a new term gets them again).
 *
 * Faults, each at a chosen call: a fetch that throws (the term ends and a new one starts, as runWhileLeader
 * does), a filter read that fails, an append that fails before or after its commit, a publish that fails before
 * anything lands, after some of it landed, or after all of it landed (the PubAck lost), an ack that throws or is
 * lost, the wall clock jumping back, and the sequencer being stopped and started again.
 *
 * Checked: every distinct valid request is stored exactly once, with sequenceIds 1..N, previousId chained, the
 * digest chain intact and sequencedAt never going back; TRADING holds exactly the log (same bytes, same order, the
 * log's msg ids); every poison message is recorded as rejected; every message is acked in the end; and at every
 * ack, what the message asked for is already committed and published.
 */
import { describe, expect, test } from "bun:test";
import { JetStreamApiCodes, JetStreamApiError } from "@nats-io/jetstream";
import { ClosedConnectionError, TimeoutError } from "@nats-io/transport-node";
import fc from "fast-check";
import { subjectOf, TradingPositionError, tradingMsgId } from "../../src/adapters/nats/trading-publisher.ts";
import { LogContinuityError, TradingMismatchError } from "../../src/app/errors.ts";
import { chainDigests, ZERO_DIGEST } from "../../src/app/log-digest.ts";
import type {
  EventKey,
  EventStore,
  IntakeMessage,
  IntakeSource,
  RejectedMessage,
  SequencedRecord,
  StoredEvent,
  TradingLog,
} from "../../src/app/ports.ts";
import { type Clock, Sequencer } from "../../src/app/sequencer.ts";
import { encodeIntakeEvent, type IntakeEvent, type SequencedEvent } from "../../src/domain/events.ts";
import { EMPTY_HEAD, type Head } from "../../src/domain/sequencing.ts";
import { createLogger } from "../../src/logger.ts";

const RUNS = 1_000;

type Scheduler = fc.Scheduler;

/** At which call (1-based, counted over the whole case) each fault strikes. */
type Faults = {
  fetch: number[];
  filter: number[];
  appendBeforeCommit: number[];
  appendAfterCommit: number[];
  publishBefore: number[];
  publishPartly: number[];
  publishAckLost: number[];
  ackThrows: number[];
  ackLost: number[];
  clockBack: number[];
  /** Driver steps at which the running term is stopped (a new one starts). */
  restart: number[];
};

/** What a message on the intake stream is, as the test wrote it. */
type Sent = { seq: number; data: Uint8Array; event: IntakeEvent | null };

const encoder = new TextEncoder();

/** A gate every model operation passes: the scheduler decides when it opens. */
function gate(s: Scheduler, label: string): Promise<void> {
  return s.schedule(Promise.resolve(), label);
}

class ModelStore implements EventStore {
  readonly rows: StoredEvent[] = [];
  readonly rejected = new Map<bigint, RejectedMessage>();
  private writer: Promise<void> = Promise.resolve();
  private appends = 0;
  private filters = 0;

  constructor(
    private readonly s: Scheduler,
    private readonly faults: Faults,
  ) {}

  /** Statements on the writer's session run one after the other, in the order they were sent. */
  private onWriter<T>(step: () => Promise<T>): Promise<T> {
    const result = this.writer.then(step);
    this.writer = result.then(
      () => {},
      () => {},
    );
    return result;
  }

  head(): Promise<Head> {
    return this.onWriter(async () => {
      await gate(this.s, "store.head");
      const last = this.rows[this.rows.length - 1];
      return last
        ? { sequenceId: last.event.sequenceId, sequencedAt: last.event.sequencedAt, digest: last.digest }
        : EMPTY_HEAD;
    });
  }

  async findStored(referenceIds: readonly bigint[], keys: readonly string[]) {
    const call = ++this.filters;
    await gate(this.s, `store.findStored#${call}`);
    if (this.faults.filter.includes(call)) throw new Error("filter read failed: connection reset");
    const refs = new Set(this.rows.map((row) => row.event.referenceId));
    const storedKeys = new Set(this.rows.flatMap((row) => row.event.idempotencyKey ?? []));
    return {
      references: new Set(referenceIds.filter((id) => refs.has(id))),
      idempotencyKeys: new Set(keys.filter((key) => storedKeys.has(key))),
    };
  }

  append(batch: readonly StoredEvent[], rejected: readonly RejectedMessage[], chainedFrom: string) {
    const call = ++this.appends;
    return this.onWriter(async () => {
      await gate(this.s, `store.append#${call} commit`);
      if (this.faults.appendBeforeCommit.includes(call)) throw new Error("connection lost before commit");
      this.commit(batch, rejected, chainedFrom);
      await gate(this.s, `store.append#${call} reply`);
      if (this.faults.appendAfterCommit.includes(call)) throw new Error("connection lost after commit");
    });
  }

  /** The append statement: all or nothing, with its continuity check and the table's unique constraints. */
  private commit(batch: readonly StoredEvent[], rejected: readonly RejectedMessage[], chainedFrom: string) {
    if (batch.length === 0 && rejected.length === 0) return;
    const first = batch[0]?.event.sequenceId;
    if (first !== undefined) {
      const before = this.rows[Number(first) - 2];
      const expected = first === 1n ? ZERO_DIGEST : before?.digest;
      if (expected === undefined) throw new LogContinuityError(`event ${first - 1n} is not stored`);
      if (expected !== chainedFrom) throw new LogContinuityError(`event ${first - 1n}'s digest differs`);
    }
    const sequenceIds = new Set(this.rows.map((row) => row.event.sequenceId));
    const refs = new Set(this.rows.map((row) => row.event.referenceId));
    const keys = new Set(this.rows.flatMap((row) => row.event.idempotencyKey ?? []));
    for (const { event } of batch) {
      const key = event.idempotencyKey;
      if (sequenceIds.has(event.sequenceId) || refs.has(event.referenceId) || (key && keys.has(key))) {
        throw new Error(`duplicate key value violates unique constraint (event ${event.sequenceId})`);
      }
      sequenceIds.add(event.sequenceId);
      refs.add(event.referenceId);
      if (key) keys.add(key);
    }
    this.rows.push(...batch);
    for (const r of rejected) if (!this.rejected.has(r.streamSeq)) this.rejected.set(r.streamSeq, r);
  }

  async readAfter(after: bigint, limit: number): Promise<SequencedRecord[]> {
    await gate(this.s, "store.readAfter");
    return this.rows
      .filter((row) => row.event.sequenceId > after)
      .slice(0, limit)
      .map(recordOf);
  }

  async find(by: EventKey): Promise<SequencedRecord | null> {
    await gate(this.s, "store.find");
    const row = this.rows.find((r) =>
      "sequenceId" in by
        ? r.event.sequenceId === by.sequenceId
        : "referenceId" in by
          ? r.event.referenceId === by.referenceId
          : r.event.idempotencyKey === by.idempotencyKey,
    );
    return row ? recordOf(row) : null;
  }
}

function recordOf({ event, payload, digest }: StoredEvent): SequencedRecord {
  return { sequenceId: event.sequenceId, type: event.type, payload, digest };
}

type TradingMessage = { subject: string; payload: string; msgId: string };

class ModelTrading implements TradingLog {
  readonly messages: TradingMessage[] = [];
  private readonly positions = new Map<string, number>();
  private connection: Promise<void> = Promise.resolve();
  private appends = 0;

  constructor(
    private readonly s: Scheduler,
    private readonly faults: Faults,
  ) {}

  async lastSequence(): Promise<bigint> {
    await gate(this.s, "trading.lastSequence");
    return BigInt(this.messages.length);
  }

  /** One connection: publishes leave in the order they were made. */
  append(records: readonly SequencedRecord[]): Promise<void> {
    if (records.length === 0) return Promise.resolve();
    const call = ++this.appends;
    const result = this.connection.then(() => this.publish(records, call));
    this.connection = result.then(
      () => {},
      () => {},
    );
    return result;
  }

  private async publish(records: readonly SequencedRecord[], call: number): Promise<void> {
    await gate(this.s, `trading.append#${call}`);
    if (this.faults.publishBefore.includes(call)) throw new TimeoutError();
    // Plain publishes first (refused ones vanish), the last one with a PubAck, as the adapter does.
    const landing = this.faults.publishPartly.includes(call) ? Math.ceil(records.length / 2) : records.length;
    let previousMsgId: string | undefined;
    let ack: { seq: number; duplicate: boolean } | { refused: string } = { refused: "not sent" };
    for (const [i, record] of records.entries()) {
      if (i >= landing) throw new TimeoutError(); // the connection dropped mid-batch
      const msgId = tradingMsgId(record);
      ack = this.store(record, msgId, previousMsgId);
      previousMsgId = msgId;
    }
    await gate(this.s, `trading.append#${call} puback`);
    if (this.faults.publishAckLost.includes(call)) throw new TimeoutError();
    if ("refused" in ack) {
      throw new JetStreamApiError({
        code: 400,
        err_code: JetStreamApiCodes.StreamWrongLastSequence,
        description: ack.refused,
      });
    }
    const last = records[records.length - 1] as SequencedRecord;
    if (BigInt(ack.seq) !== last.sequenceId) {
      throw new TradingPositionError(`TRADING stored sequenceId ${last.sequenceId} at position ${ack.seq}`);
    }
    if (ack.duplicate) await this.verify(last);
  }

  /** JetStream's checks for one message: duplicate msg id, expected last sequence, expected last msg id. */
  private store(
    record: SequencedRecord,
    msgId: string,
    previousMsgId: string | undefined,
  ): { seq: number; duplicate: boolean } | { refused: string } {
    const original = this.positions.get(msgId);
    if (original !== undefined) return { seq: original, duplicate: true };
    if (record.sequenceId - 1n !== BigInt(this.messages.length)) {
      return { refused: `wrong last sequence: ${this.messages.length}` };
    }
    const lastMsgId = this.messages[this.messages.length - 1]?.msgId;
    if (previousMsgId !== undefined && lastMsgId !== previousMsgId) {
      return { refused: `wrong last msg ID: ${lastMsgId}` };
    }
    this.messages.push({ subject: subjectOf(record), payload: record.payload, msgId });
    this.positions.set(msgId, this.messages.length);
    return { seq: this.messages.length, duplicate: false };
  }

  async verify(record: SequencedRecord): Promise<void> {
    await gate(this.s, "trading.verify");
    const stored = this.messages[Number(record.sequenceId) - 1];
    if (!stored) throw new TradingMismatchError(record.sequenceId, "TRADING has no message at that position");
    if (
      stored.payload !== record.payload ||
      stored.subject !== subjectOf(record) ||
      stored.msgId !== tradingMsgId(record)
    ) {
      throw new TradingMismatchError(record.sequenceId, "the message differs from the log's");
    }
  }
}

class ModelSource implements IntakeSource {
  /** Deliverable now, in stream order. */
  private pending: Sent[] = [];
  /** Handed out and not acked: not handed out again (the adapter drops a redelivered copy it still holds). */
  private readonly outstanding = new Map<number, Sent>();
  /** Acks lost on the way: the server sends these again after ack_wait. */
  private lost = 0;
  readonly acked = new Set<number>();
  private fetches = 0;
  private acks = 0;

  constructor(
    private readonly s: Scheduler,
    private readonly faults: Faults,
    /** Called at every ack, before it takes effect: the test checks the message is committed and published. */
    private readonly onAck: (sent: Sent) => void,
  ) {}

  add(messages: readonly Sent[]): void {
    this.requeue(messages);
  }

  private requeue(messages: readonly Sent[]): void {
    this.pending = [...this.pending, ...messages].sort((a, b) => a.seq - b.seq);
  }

  get quiescent(): boolean {
    return this.pending.length === 0 && this.outstanding.size === 0 && this.lost === 0;
  }

  async next(max: number, _waitMs: number): Promise<IntakeMessage[]> {
    const call = ++this.fetches;
    await gate(this.s, `source.next#${call}`);
    if (this.faults.fetch.includes(call)) throw new ClosedConnectionError();
    const batch = this.pending.slice(0, max);
    this.pending = this.pending.slice(batch.length);
    for (const sent of batch) this.outstanding.set(sent.seq, sent);
    return batch.map((sent) => this.message(sent));
  }

  private message(sent: Sent): IntakeMessage {
    return {
      seq: sent.seq,
      subject: "sequence.create_order",
      data: sent.data,
      ack: () => {
        const call = ++this.acks;
        if (this.faults.ackThrows.includes(call)) throw new ClosedConnectionError();
        this.onAck(sent);
        if (!this.outstanding.delete(sent.seq)) return; // acked again (a redone batch): nothing changes
        if (this.faults.ackLost.includes(call)) {
          this.lost++;
          void gate(this.s, `source.redeliver ${sent.seq}`).then(() => {
            this.lost--;
            this.requeue([sent]);
          });
          return;
        }
        this.acked.add(sent.seq);
      },
      working() {},
    };
  }

  /** A term ends: every unacked message goes back to the stream for the next one. */
  async close(): Promise<void> {
    this.requeue([...this.outstanding.values()]);
    this.outstanding.clear();
  }
}

/** One generated request: new, an exact republish of an earlier one, a retry with its key, or a poison message. */
type Spec =
  | { kind: "new"; keyed: boolean; type: "CREATE_ORDER" | "DEPOSIT" }
  | { kind: "republish"; of: number }
  | { kind: "retry"; of: number }
  | { kind: "poison"; variant: number };

const POISON = ["not json", "{}", '{"type":"CREATE_ORDER","referenceId":"0"}', "\u0000\uffff", "[1,2]"];

function buildMessages(specs: readonly Spec[]): Sent[] {
  const sent: Sent[] = [];
  let nextRef = 1n;
  specs.forEach((spec, i) => {
    const seq = i + 1;
    const earlier = sent.filter((m) => m.event !== null);
    let event: IntakeEvent | null;
    if (spec.kind === "poison") event = null;
    else if (spec.kind !== "new" && earlier.length > 0) {
      const original = earlier[spec.of % earlier.length]?.event as IntakeEvent;
      event =
        spec.kind === "republish"
          ? original
          : { ...original, referenceId: nextRef++, idempotencyKey: original.idempotencyKey ?? `7:k${seq}` };
    } else {
      const referenceId = nextRef++;
      const createdAt = "2026-01-01T00:00:00.000Z";
      const keyed = spec.kind === "new" ? spec.keyed : false;
      const envelope = { referenceId, createdAt, ...(keyed ? { idempotencyKey: `7:k${seq}` } : {}) };
      event =
        spec.kind === "new" && spec.type === "DEPOSIT"
          ? { ...envelope, type: "DEPOSIT", userId: 7n, assetId: 1n, amount: "10" }
          : {
              ...envelope,
              type: "CREATE_ORDER",
              userId: 7n,
              orderId: referenceId + 1000n,
              direction: "BUY",
              price: "1.5",
              quantity: "2",
            };
    }
    const data =
      event === null
        ? encoder.encode(POISON[(spec as { variant: number }).variant % POISON.length])
        : encoder.encode(encodeIntakeEvent(event));
    sent.push({ seq, data, event });
  });
  return sent;
}

const specArb: fc.Arbitrary<Spec> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record({
      kind: fc.constant("new" as const),
      keyed: fc.boolean(),
      type: fc.constantFrom("CREATE_ORDER" as const, "DEPOSIT" as const),
    }),
  },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant("republish" as const), of: fc.nat(30) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("retry" as const), of: fc.nat(30) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("poison" as const), variant: fc.nat(10) }) },
);

const calls = (max: number, maxLength = 2) => fc.uniqueArray(fc.integer({ min: 1, max }), { maxLength });

const faultsArb: fc.Arbitrary<Faults> = fc.record({
  fetch: calls(40, 1),
  filter: calls(15),
  appendBeforeCommit: calls(15),
  appendAfterCommit: calls(15),
  publishBefore: calls(12),
  publishPartly: calls(12),
  publishAckLost: calls(12),
  ackThrows: calls(40),
  ackLost: calls(40),
  clockBack: calls(30, 1),
  restart: calls(300, 1),
});

const caseArb = fc.record({
  specs: fc.array(specArb, { minLength: 1, maxLength: 40 }),
  /** Where the stream is cut into waves that arrive one after the other. */
  waveBreaks: fc.uniqueArray(fc.integer({ min: 1, max: 39 }), { maxLength: 6 }),
  batchSize: fc.integer({ min: 1, max: 4 }),
  maxBatchSize: fc.integer({ min: 1, max: 8 }),
  faults: faultsArb,
});

type Case = typeof caseArb extends fc.Arbitrary<infer T> ? T : never;

/** The wall clock and the sleeps: virtual, each sleep a scheduled step; the clock may jump back. */
function virtualClock(s: Scheduler, faults: Faults): Clock {
  let ms = Date.parse("2026-01-01T00:00:00.000Z");
  let reads = 0;
  return {
    now: () => {
      if (faults.clockBack.includes(++reads)) ms -= 3_600_000;
      return new Date(ms);
    },
    sleep: async (delayMs) => {
      await gate(s, "sleep");
      ms += delayMs;
    },
  };
}

const silent = createLogger({ test: true }, "silent");

/** Runs one case to quiescence; returns what a failing check needs. */
async function runCase(s: Scheduler, c: Case) {
  const messages = buildMessages(c.specs);
  const store = new ModelStore(s, c.faults);
  const trading = new ModelTrading(s, c.faults);
  const violations: string[] = [];
  const source = new ModelSource(s, c.faults, (sent) => {
    // Acked only once what the message asked for is committed and published.
    if (sent.event === null) {
      if (!store.rejected.has(BigInt(sent.seq)))
        violations.push(`poison ${sent.seq} acked before it was recorded`);
      return;
    }
    const { referenceId, idempotencyKey } = sent.event;
    const row = store.rows.find(
      (r) =>
        r.event.referenceId === referenceId ||
        (idempotencyKey !== undefined && r.event.idempotencyKey === idempotencyKey),
    );
    if (!row) violations.push(`message ${sent.seq} acked before its event was committed`);
    else if (BigInt(trading.messages.length) < row.event.sequenceId) {
      violations.push(`message ${sent.seq} acked before event ${row.event.sequenceId} was published`);
    }
  });
  const clock = virtualClock(s, c.faults);
  const options = {
    batchSize: c.batchSize,
    maxBatchSize: c.maxBatchSize,
    fetchWaitMs: 50,
    catchUpPageSize: 3,
    keepAliveMs: 1_000_000,
  };

  type Term = { abort: AbortController; running: Promise<void>; ended: boolean };
  const startTerm = (): Term => {
    const sequencer = new Sequencer({ source, store, trading }, options, silent, clock);
    const abort = new AbortController();
    const term: Term = { abort, running: Promise.resolve(), ended: false };
    term.running = sequencer.run(abort.signal).then(
      () => {
        term.ended = true;
      },
      () => {
        term.ended = true; // a term that failed: the leadership loop starts another
      },
    );
    return term;
  };

  // The stream's waves: each arrives once the previous one did, at a point the scheduler picks.
  const breaks = [
    0,
    ...c.waveBreaks.filter((b) => b < messages.length).sort((a, b) => a - b),
    messages.length,
  ];
  let arrived = 0;
  let wave = Promise.resolve();
  for (let i = 0; i + 1 < breaks.length; i++) {
    const part = messages.slice(breaks[i], breaks[i + 1]);
    wave = wave
      .then(() => gate(s, `arrive ${part.length}`))
      .then(() => {
        source.add(part);
        arrived++;
      });
  }

  let term = startTerm();
  let idleTurns = 0;
  for (let step = 1; !(arrived === breaks.length - 1 && source.quiescent); step++) {
    if (step > 20_000) throw new Error("no progress after 20000 steps");
    if (c.faults.restart.includes(step)) term.abort.abort();
    if (term.ended) {
      await source.close();
      term = startTerm();
    }
    if (s.count() === 0) {
      // Nothing scheduled yet: what was released is still running its microtasks. Let them, but not forever (the
      // models use no timers, so a sequencer waiting on anything else is stuck).
      if (++idleTurns > 1_000) throw new Error("stuck outside the scheduler");
      await new Promise((resolve) => setImmediate(resolve));
      continue;
    }
    idleTurns = 0;
    await s.waitNext(1);
  }
  term.abort.abort();
  await s.waitFor(term.running);
  return { messages, store, trading, source, violations };
}

function check({ messages, store, trading, source, violations }: Awaited<ReturnType<typeof runCase>>) {
  expect(violations).toEqual([]);
  // The log: 1..N, previousId chained, the digest chain, sequencedAt never back, no repeat of a request.
  const events: SequencedEvent[] = store.rows.map((row) => row.event);
  expect(events.map((e) => e.sequenceId)).toEqual(events.map((_, i) => BigInt(i + 1)));
  expect(events.map((e) => e.previousId)).toEqual(events.map((_, i) => BigInt(i)));
  expect(store.rows.map((r) => r.digest)).toEqual(
    chainDigests(
      ZERO_DIGEST,
      store.rows.map((r) => r.payload),
    ),
  );
  events.forEach((e, i) => {
    if (i > 0) expect(e.sequencedAt >= (events[i - 1] as SequencedEvent).sequencedAt).toBe(true);
  });
  expect(new Set(events.map((e) => e.referenceId)).size).toBe(events.length);
  const keys = events.flatMap((e) => e.idempotencyKey ?? []);
  expect(new Set(keys).size).toBe(keys.length);
  // Every valid request is in the log (as itself, or as the first request with its key), and nothing else is.
  const valid = messages.flatMap((m) => m.event ?? []);
  for (const request of valid) {
    const stored = events.find(
      (e) =>
        e.referenceId === request.referenceId ||
        (request.idempotencyKey !== undefined && e.idempotencyKey === request.idempotencyKey),
    );
    expect(stored).toBeDefined();
  }
  for (const e of events) {
    const { sequenceId: _s, previousId: _p, sequencedAt: _t, ...intake } = e;
    expect(valid.map((v) => encodeIntakeEvent(v))).toContain(encodeIntakeEvent(intake as IntakeEvent));
  }
  // TRADING is the log, message for message.
  expect(trading.messages).toEqual(
    store.rows.map((row) => ({
      subject: subjectOf(row.event),
      payload: row.payload,
      msgId: tradingMsgId(recordOf(row)),
    })),
  );
  // Poison is recorded, and every message is acked.
  for (const m of messages) if (m.event === null) expect(store.rejected.has(BigInt(m.seq))).toBe(true);
  expect([...source.acked].sort((a, b) => a - b)).toEqual(messages.map((m) => m.seq));
}

describe("sequencer model", () => {
  test(`${RUNS} randomized schedules with faults: stored, published and acked exactly once, in order`, async () => {
    let faultsPlanned = 0;
    await fc.assert(
      fc.asyncProperty(fc.scheduler(), caseArb, async (s, c) => {
        const outcome = await runCase(s, c);
        check(outcome);
        if (Object.values(c.faults).some((at) => at.length > 0)) faultsPlanned++;
      }),
      { numRuns: RUNS },
    );
    expect(faultsPlanned).toBeGreaterThan(RUNS / 2);
  }, 60_000);
});
