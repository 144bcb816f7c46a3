/**
 * The sequencer use case (the seed's ConsumeSequenceMessages), with the seed's crash windows closed:
 *
 *   take a batch from SEQUENCE → decode → filter what is stored → sequence (pure rule) → one DB transaction
 *   → publish to TRADING → ack.
 *
 * Postgres is the durable point; TRADING is an outbox fed from it. Before taking work, and after any failure,
 * the sequencer reloads its head from the database and republishes whatever TRADING lacks, in order. So:
 * - a crash after commit but before publish or ack loses nothing (catch-up publishes; the redelivered batch is
 *   filtered as already stored and acked);
 * - a partially duplicate batch stores and publishes only its new events (the seed saved but never published);
 * - a failing batch is retried as the same batch, in the same order, with backoff, kept alive with working().
 *
 * Batches flow through a pipeline of at most PIPELINE_DEPTH batches in hand. For each one, in order: take it,
 * decode it and filter it (a read on a pool connection, plus an in-memory check against every batch in hand that
 * may not have committed yet), number it after the previous batch's numbers, and send its append statement on
 * the writer's session at once, queued behind the previous batch's (postgres.js pipelines them, so PostgreSQL
 * goes from one commit straight to the next). Each statement checks that the log's last row is the one its
 * numbers follow, so a batch whose predecessor failed stores nothing. A batch is published to TRADING once its
 * own append committed and the previous batch is published, then acked. Numbering and committing stay strictly
 * one batch after the other, and publishing strictly in order. Any failure drains the pipeline and falls back to
 * recover + one batch at a time (filtered afresh), so the outcome is the same as the plain loop's, only faster.
 *
 * Batches form from whatever is buffered: a lone order is sequenced at once, and during a backlog a batch takes
 * up to maxBatchSize messages, which amortizes the per-batch round trips (filter, commit, PubAck).
 *
 * Every event carries a digest chained from the previous one (src/app/log-digest.ts), computed when its batch is
 * numbered (in memory, after the previous batch's) and checked by the append against the stored row before the
 * batch. TRADING carries it too. When TRADING is found to hold something other than the log (a duplicate PubAck
 * whose stored message is not ours, or TRADING's last message differing from the log's event there when the
 * sequencer catches up), the sequencer stops writing for good (TradingMismatchError): status() names the
 * sequenceId, readiness says not ready, and it stays stopped — holding (and renewing) the writer lease, so that no standby
 * builds on that history either — until an operator has looked (`sequencer inspect --verify`) and restarts it.
 */

import {
  type EventStore,
  LogContinuityError,
  type RejectedMessage,
  type StoredEvent,
} from "../adapters/db/event-store.ts";
import type { IntakeMessage, IntakeSource } from "../adapters/nats/intake-consumer.ts";
import {
  type TradingLog,
  TradingMismatchError,
  type TradingRecord,
} from "../adapters/nats/trading-publisher.ts";
import { decodeIntakeEvent, encodeSequencedEvent, type IntakeEvent } from "../domain/events.ts";
import { EMPTY_HEAD, type Head, sequenceBatch } from "../domain/sequencing.ts";
import type { Logger } from "../logger.ts";
import { backoffDelay, sleep } from "./backoff.ts";
import { rootMessage } from "./errors.ts";
import { DigestChain } from "./log-digest.ts";

export type SequencerOptions = {
  batchSize: number;
  /**
   * Most messages taken in one batch when more than batchSize are already buffered (a backlog). Bigger batches
   * drain faster and cost memory; defaults to batchSize.
   */
  maxBatchSize?: number;
  /**
   * While a batch is in hand (a slow commit, a retry), tell the server every this many ms that we are still
   * working on it, so it is not redelivered after ack_wait. A third of ack_wait is a safe choice.
   */
  keepAliveMs: number;
  /** How long to wait for the first message of a batch before looping (keeps shutdown prompt). */
  fetchWaitMs: number;
  /** Page size when republishing missing events to TRADING. */
  catchUpPageSize: number;
  /**
   * Called whenever a batch finishes, at every turn of an idle loop (no batch in hand), every retry, and while
   * stopped on a mismatch: the sign of progress the writer lease is renewed on (WriterLease.alive). A batch that
   * never finishes (a stuck append) lets the lease run out. The idle loop turns at least every fetchWaitMs, so
   * that must be well under the lease's TTL.
   */
  alive?: () => void;
};

/**
 * How many batches may be in hand at once: typically one publishing and acking, one committing, one queued
 * behind it on the writer's session. More would only hold more messages (the consumer's max_ack_pending caps
 * them anyway) without keeping PostgreSQL any busier.
 */
const PIPELINE_DEPTH = 3;

/** A batch decoded and filtered against the log, ready to be numbered. */
type Prepared = {
  valid: IntakeEvent[];
  rejected: RejectedMessage[];
  isStored(referenceId: bigint): boolean;
  isKeyStored(idempotencyKey: string): boolean;
};

/** What a batch stores: the filters of later batches count these as stored until it is out of the pipeline. */
type Stores = { references: ReadonlySet<bigint>; idempotencyKeys: ReadonlySet<string> };

/** A batch numbered and encoded: its rows for the log, its records for TRADING. */
type Numbered = {
  toStore: StoredEvent[];
  records: TradingRecord[];
  rejected: RejectedMessage[];
  stores: Stores;
  /** The digest of the event before the batch: the append checks that the stored row there carries it. */
  chainedFrom: string;
  head: Head;
  duplicates: number;
};

/** A batch in the pipeline. `done` settles only once nothing of ours runs for it any more. */
type Stage = {
  batch: readonly IntakeMessage[];
  stores: Stores;
  /** Resolves once the batch is committed, published and acked; rejects if any of that failed. */
  done: Promise<void>;
  /** `done` settled, either way (null: the run loop's "the oldest batch finished"). */
  finished: Promise<null>;
  failed: boolean;
  settled: boolean;
  release(): void;
};

/** A batch that committed but cannot be published because an earlier one failed; it is redone with it. */
class PreviousBatchFailed extends Error {
  override readonly name = "PreviousBatchFailed";
}

const EMPTY_STORES: Stores = { references: new Set(), idempotencyKeys: new Set() };

/** A batch taken but not started (its filter failed, or an earlier batch had failed): redone with the rest. */
function notStarted(batch: readonly IntakeMessage[], release: () => void): Stage {
  const done = Promise.resolve();
  return {
    batch,
    stores: EMPTY_STORES,
    done,
    finished: done.then(() => null),
    failed: true,
    settled: true,
    release,
  };
}

export { TradingMismatchError };

export type SequencerStatus = { head: bigint; tradingInSync: boolean; lastError: string | null };

/**
 * Named points in a batch's life where fault-injection tests make the process die (see FAILPOINT in config.ts):
 * after the commit, after TRADING confirmed the batch, and after half of the batch was acked.
 */
export type Failpoint = "after-commit" | "after-publish" | "mid-ack";
/** `head`: the last sequenceId of the batch at that point (what a test checks the crash window against). */
export type FailpointHook = (point: Failpoint, head: bigint) => void;

/** One committed batch: messages taken, events numbered, dropped as duplicates or rejected, commit time. */
export type BatchStats = {
  size: number;
  sequenced: number;
  duplicates: number;
  rejected: number;
  transactionMs: number;
};

/** What the sequencer reports about its work (implemented by the metrics adapter). */
export interface SequencerObserver {
  batch(stats: BatchStats): void;
  catchUp(count: number): void;
  /**
   * TRADING differs from the log at this sequenceId and the sequencer stopped writing; null: TRADING's tail was
   * checked against the log and matches (each recovery).
   */
  tradingMismatch?(sequenceId: bigint | null): void;
}

const NO_OBSERVER: SequencerObserver = { batch: () => {}, catchUp: () => {} };

export class Sequencer {
  /** The head the next batch is numbered after: ahead of the log while appends are in flight. */
  private head: Head = EMPTY_HEAD;
  /** The last sequenceId known committed (for status). */
  private committedHead = 0n;
  private recovered = false;
  private lastError: string | null = null;
  /** Set once TRADING was found to differ from the log: nothing more is written in this term. */
  private halted: TradingMismatchError | null = null;
  private readonly decoder = new TextDecoder();

  constructor(
    private readonly source: IntakeSource,
    private readonly store: EventStore,
    private readonly trading: TradingLog,
    private readonly options: SequencerOptions,
    private readonly log: Logger,
    private readonly now: () => Date = () => new Date(),
    private readonly failpoint: FailpointHook = () => {},
    private readonly observer: SequencerObserver = NO_OBSERVER,
  ) {}

  status(): SequencerStatus {
    return {
      head: this.committedHead,
      tradingInSync: this.recovered && this.halted === null,
      lastError: this.lastError,
    };
  }

  /**
   * Runs until the signal aborts. Never throws: every failure is logged, backed off and retried — except a
   * TradingMismatchError, after which it stops taking work and waits for the signal (see the header).
   */
  async run(signal: AbortSignal): Promise<void> {
    await this.retrying(signal, () => this.recover());
    const stages: Stage[] = [];
    let incoming: Promise<IntakeMessage[]> | null = null;
    try {
      while (!signal.aborted && this.halted === null) {
        // Progress is a batch finishing, or having none in hand: a loop that keeps turning (new messages, idle
        // waits) while its oldest batch is stuck shows none, so a stuck append lets the writer lease run out.
        if (stages.length === 0) this.alive();
        if (stages.some((stage) => stage.failed)) {
          // A filter, commit or publish failed: drain and redo every batch in hand the safe way (recover, then one
          // batch at a time, filtered afresh).
          await this.redo(signal, stages.splice(0));
          continue;
        }
        const oldest = stages[0];
        if (oldest?.settled) {
          this.alive();
          stages.shift();
          oldest.release();
          continue;
        }
        if (oldest && stages.length >= PIPELINE_DEPTH) {
          await oldest.finished;
          continue;
        }
        // Wait for new messages, or for the oldest batch to finish (it frees a place and its messages' keep-alive).
        // A wait for messages that loses the race is kept for the next turn, so no taken message is ever dropped.
        incoming ??= this.source.next(this.maxBatchSize, this.options.fetchWaitMs);
        const batch = await (oldest ? Promise.race([incoming, oldest.finished]) : incoming);
        if (batch === null) continue;
        incoming = null;
        if (batch.length === 0) continue;
        const release = this.keepAlive(batch);
        if (stages.some((stage) => stage.failed)) {
          // A batch in hand failed meanwhile: this one is not started, only redone with the others.
          stages.push(notStarted(batch, release));
          continue;
        }
        try {
          const prepared = await this.prepare(
            batch,
            stages.map((stage) => stage.stores),
          );
          stages.push(this.launch(batch, this.number(prepared), stages[stages.length - 1], release));
        } catch (error) {
          this.noteFailure(error, 0); // its filter read failed
          stages.push(notStarted(batch, release));
        }
      }
    } finally {
      // Nothing of ours may still run for a batch when we return: wait for every one, and release them all.
      for (const stage of stages) await stage.finished;
      if (this.halted === null && stages.some((stage) => stage.failed)) {
        await this.redo(signal, stages.splice(0));
      }
      for (const stage of stages) stage.release();
    }
    // On shutdown mid-retry, or with a wait for messages still open, messages stay unacked: the source hands them
    // back and the next sequencer filters them.
    if (incoming) await incoming;
    // Stopped on a mismatch: stay (holding the writer lease, reporting status) until shutdown or the lease is lost.
    while (this.halted !== null && !signal.aborted) {
      this.alive();
      await sleep(this.options.fetchWaitMs, signal);
    }
  }

  private alive(): void {
    this.options.alive?.();
  }

  /** Waits delayMs, still showing progress at least every fetchWaitMs (a backoff longer than the lease is fine). */
  private async backOff(delayMs: number, signal: AbortSignal): Promise<void> {
    const until = performance.now() + delayMs;
    for (let left = delayMs; left > 0 && !signal.aborted; left = until - performance.now()) {
      this.alive();
      await sleep(Math.min(left, this.options.fetchWaitMs), signal);
    }
  }

  private get maxBatchSize(): number {
    return Math.max(this.options.batchSize, this.options.maxBatchSize ?? this.options.batchSize);
  }

  /**
   * Sends a numbered batch's append (queued behind `previous`'s on the writer's session) and chains its publish
   * behind `previous`'s publish. Failures are recorded on the stage, never thrown here.
   */
  private launch(
    batch: readonly IntakeMessage[],
    numbered: Numbered,
    previous: Stage | undefined,
    release: () => void,
  ): Stage {
    this.head = numbered.head; // the next batch is numbered after this one; a failure resets it (recover)
    const committed = this.append(batch, numbered);
    // TRADING order: this batch is published only after its own commit and the previous batch's publish. `done`
    // waits for the commit even when the previous batch failed, so that a redo never races a running statement.
    const previousDone = previous?.done ?? Promise.resolve();
    const done = committed
      .then(() =>
        previousDone.catch(() => {
          throw new PreviousBatchFailed();
        }),
      )
      .then(() => this.publishAndAck(numbered.records, batch, numbered.head.sequenceId));
    const stage: Stage = {
      batch,
      stores: numbered.stores,
      done,
      finished: done.then(
        () => {
          stage.settled = true;
          return null;
        },
        (error) => {
          // A batch behind a failed one fails too (not published, or its append does not continue the log): the
          // first failure is the one worth reporting.
          const consequence =
            error instanceof PreviousBatchFailed ||
            (error instanceof LogContinuityError && previous !== undefined);
          if (!consequence) this.noteFailure(error, 0);
          stage.failed = true;
          stage.settled = true;
          return null;
        },
      ),
      failed: false,
      settled: false,
      release,
    };
    return stage;
  }

  /**
   * Recover, then process each batch that did not finish start to finish, in order, retrying each with backoff.
   * A batch that finished (committed, published, acked) before the failure is only released.
   */
  private async redo(signal: AbortSignal, stages: Stage[]): Promise<void> {
    for (const stage of stages) await stage.finished; // nothing of ours still running
    let recovered = false;
    for (const stage of stages) {
      if (!stage.failed || this.halted !== null) {
        stage.release();
        continue;
      }
      await this.retrying(signal, async (attempt) => {
        // Once at the start (the pipeline's head was ahead of the log), and again after any failed attempt.
        if (!recovered || attempt > 0 || !this.recovered) await this.recover();
        recovered = true;
        await this.processBatch(stage.batch);
      });
      stage.release();
    }
  }

  /** Tells the server, every keepAliveMs, that we still own these messages (no redelivery while we work). */
  private keepAlive(batch: readonly IntakeMessage[]): () => void {
    const timer = setInterval(() => {
      for (const msg of batch) msg.working();
    }, this.options.keepAliveMs);
    return () => clearInterval(timer);
  }

  /**
   * Reloads the head from the database and makes TRADING match it. TRADING ahead of the database means events
   * were published that the log does not hold (a restored database, a hand-published message), and TRADING's
   * last message differing from the log's event at that position means someone else's message took one of ours:
   * sequencing on top of either would fork history, so it stops for good (TradingMismatchError).
   */
  async recover(): Promise<void> {
    this.recovered = false;
    this.head = await this.store.head();
    this.committedHead = this.head.sequenceId;
    let published = await this.trading.lastSequence();
    if (published > this.head.sequenceId) {
      throw new TradingMismatchError(
        published,
        `TRADING is at ${published} but the database head is ${this.head.sequenceId}`,
      );
    }
    if (published > 0n) {
      // The tail must be the log's own event (its digest commits to every earlier one).
      const stored = await this.store.find({ sequenceId: published });
      if (!stored) throw new Error(`event ${published} is missing from the database; cannot check TRADING`);
      await this.trading.verify(stored);
    }
    if (published < this.head.sequenceId) {
      this.log.warn("republishing events missing from TRADING", {
        from: published + 1n,
        to: this.head.sequenceId,
      });
    }
    while (published < this.head.sequenceId) {
      const page = await this.store.readAfter(published, this.options.catchUpPageSize);
      const first = page[0];
      if (!first || first.sequenceId !== published + 1n) {
        throw new Error(`event ${published + 1n} is missing from the database; cannot republish`);
      }
      await this.trading.append(page);
      this.observer.catchUp(page.length);
      published = page[page.length - 1]?.sequenceId ?? published;
    }
    this.recovered = true;
    this.observer.tradingMismatch?.(null);
  }

  /** One batch, start to finish. Exposed for tests that drive the sequencer step by step. */
  async processBatch(batch: readonly IntakeMessage[]): Promise<void> {
    const numbered = this.number(await this.prepare(batch, []));
    await this.append(batch, numbered);
    this.head = numbered.head;
    await this.publishAndAck(numbered.records, batch, numbered.head.sequenceId);
  }

  /** Stores a numbered batch (one statement), then records the commit: status, failpoint, metrics, rejections. */
  private async append(batch: readonly IntakeMessage[], numbered: Numbered): Promise<void> {
    const started = performance.now();
    await this.store.append(numbered.toStore, numbered.rejected, numbered.chainedFrom);
    this.committedHead = numbered.head.sequenceId;
    this.failpoint("after-commit", numbered.head.sequenceId);
    this.observer.batch({
      size: batch.length,
      sequenced: numbered.toStore.length,
      duplicates: numbered.duplicates,
      rejected: numbered.rejected.length,
      transactionMs: performance.now() - started,
    });
    for (const r of numbered.rejected) {
      this.log.warn("rejected intake message", { streamSeq: r.streamSeq, reason: r.reason });
    }
  }

  /**
   * Decodes a batch and finds which of its events are already stored. `inHand` are the batches still in the
   * pipeline, whose append may not have committed yet (a read cannot see them): their events count as stored.
   * That is only right if they commit. If one of them fails before committing, this batch cannot commit either
   * when that one had events (its append does not continue the log: their last row is missing), and when it had
   * none it counted nothing as stored; a batch that failed after its commit has its events stored. Either way
   * the pipeline is then drained and every batch prepared again.
   */
  private async prepare(batch: readonly IntakeMessage[], inHand: readonly Stores[]): Promise<Prepared> {
    const valid: IntakeEvent[] = [];
    const rejected: RejectedMessage[] = [];
    const references: bigint[] = [];
    const keys: string[] = [];
    for (const msg of batch) {
      const decoded = decodeIntakeEvent(msg.data);
      if (decoded.ok) {
        valid.push(decoded.event);
        references.push(decoded.event.referenceId);
        if (decoded.event.idempotencyKey !== undefined) keys.push(decoded.event.idempotencyKey);
      } else rejected.push(this.rejection(msg, decoded.reason));
    }
    const stored = await this.store.findStored(references, keys);
    return {
      valid,
      rejected,
      isStored: (id) => stored.references.has(id) || inHand.some((s) => s.references.has(id)),
      isKeyStored: (key) => stored.idempotencyKeys.has(key) || inHand.some((s) => s.idempotencyKeys.has(key)),
    };
  }

  /**
   * Numbers a prepared batch after the head (the pure rule), encodes what the log and TRADING receive, and chains
   * each event's digest after the previous one's.
   */
  private number(prepared: Prepared): Numbered {
    const chainedFrom = this.head.digest;
    const result = sequenceBatch(
      this.head,
      prepared.valid,
      prepared.isStored,
      this.now().toISOString(),
      prepared.isKeyStored,
    );
    const toStore: StoredEvent[] = new Array(result.sequenced.length);
    const records: TradingRecord[] = new Array(result.sequenced.length);
    const references = new Set<bigint>();
    const idempotencyKeys = new Set<string>();
    const chain = new DigestChain(chainedFrom);
    result.sequenced.forEach((event, i) => {
      const payload = encodeSequencedEvent(event);
      const digest = chain.next(payload);
      toStore[i] = { event, payload, digest };
      records[i] = { sequenceId: event.sequenceId, type: event.type, payload, digest };
      references.add(event.referenceId);
      if (event.idempotencyKey !== undefined) idempotencyKeys.add(event.idempotencyKey);
    });
    return {
      toStore,
      records,
      rejected: prepared.rejected,
      stores: { references, idempotencyKeys },
      chainedFrom,
      head: {
        sequenceId: result.head.sequenceId,
        sequencedAt: result.head.sequencedAt,
        digest: chain.head,
      },
      duplicates: result.duplicates.length,
    };
  }

  /** Publish a committed batch to TRADING (in order, confirmed), then ack its intake messages. */
  private async publishAndAck(
    records: readonly TradingRecord[],
    batch: readonly IntakeMessage[],
    head: bigint,
  ): Promise<void> {
    await this.trading.append(records);
    this.failpoint("after-publish", head);
    const half = Math.floor(batch.length / 2);
    batch.forEach((msg, i) => {
      if (i === half) this.failpoint("mid-ack", head);
      msg.ack();
    });
    if (this.halted === null) this.lastError = null;
  }

  private rejection(msg: IntakeMessage, reason: string): RejectedMessage {
    // Postgres text cannot hold NUL; keep everything else as received (invalid UTF-8 becomes U+FFFD).
    const data = this.decoder.decode(msg.data).replaceAll("\u0000", "\\u0000");
    return { streamSeq: BigInt(msg.seq), subject: msg.subject, reason, data };
  }

  /**
   * Records a failure for status and logs; returns the backoff delay for this attempt. A TradingMismatchError
   * stops the sequencer instead; once stopped, later failures (its consequences) change nothing.
   */
  private noteFailure(error: unknown, attempt: number): number {
    this.recovered = false;
    if (error instanceof TradingMismatchError) this.halt(error);
    if (this.halted !== null) return 0;
    this.lastError = rootMessage(error);
    const delayMs = backoffDelay(attempt);
    this.log.error("sequencer step failed; retrying", { attempt, delayMs, error });
    return delayMs;
  }

  /** Stops writing for good: TRADING holds something the log does not (see the header). */
  private halt(error: TradingMismatchError): void {
    if (this.halted !== null) return;
    this.halted = error;
    this.lastError = `${error.message}; sequencing stopped (compare with \`sequencer inspect --verify\`, then restart)`;
    this.log.error("TRADING does not match the log: sequencing stopped", {
      sequenceId: error.sequenceId.toString(),
      reason: error.reason,
    });
    this.observer.tradingMismatch?.(error.sequenceId);
  }

  private async retrying(signal: AbortSignal, step: (attempt: number) => Promise<void>): Promise<void> {
    for (let attempt = 0; !signal.aborted && this.halted === null; attempt++) {
      this.alive(); // backing off on purpose is progress: a standby would meet the same failure
      try {
        await step(attempt);
        return;
      } catch (error) {
        const delayMs = this.noteFailure(error, attempt);
        if (this.halted === null) await this.backOff(delayMs, signal);
      }
    }
  }
}
