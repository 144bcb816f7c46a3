/**
 * The sequencer use case (ConsumeSequenceMessages in the original Go design), with that design's crash windows
 * closed:
 *
 *   take a batch from SEQUENCE → decode → filter what is stored → number and encode (pure: domain/batch-plan.ts)
 *   → chain the digests → one DB transaction → publish to TRADING → ack.
 *
 * Postgres is the durable point; TRADING is an outbox fed from it. Before taking work, and after any failure,
 * the sequencer reloads its head from the database and republishes whatever TRADING lacks, in order (catch-up,
 * ./catch-up.ts). So:
 * - a crash after commit but before publish or ack loses nothing (catch-up publishes; the redelivered batch is
 *   filtered as already stored and acked);
 * - a partially duplicate batch stores and publishes only its new events (the Go design saved but never published);
 * - a failing batch is retried as the same batch, in the same order, with backoff, kept alive with working().
 *
 * Batches flow through a pipeline of at most PIPELINE_DEPTH batches in hand (each a BatchStage: running,
 * finished, failed or not started). For each one, in order: take it, decode it and filter it (a read on a pool
 * connection, plus an in-memory check against every batch in hand that may not have committed yet), number it
 * after the previous batch's numbers, and send its append statement on the writer's session at once, queued
 * behind the previous batch's (postgres.js pipelines them, so PostgreSQL goes from one commit straight to the
 * next). Each statement checks that the log's last row is the one its numbers follow, so a batch whose
 * predecessor failed stores nothing. A batch is published to TRADING once its own append committed and the
 * previous batch is published, then acked. Numbering and committing stay strictly one batch after the other, and
 * publishing strictly in order. Any failure drains the pipeline and falls back to recover + one batch at a time
 * (filtered afresh), so the outcome is the same as the plain loop's, only faster.
 *
 * Batches form from whatever is buffered: a lone order is sequenced at once, and during a backlog a batch takes
 * up to maxBatchSize messages, which amortizes the per-batch round trips (filter, commit, PubAck). Without a
 * backlog (BACKLOG_SHARE) a new batch waits for the one in hand instead of starting beside it with a few events.
 *
 * Every event carries a digest chained from the previous one (src/app/log-digest.ts), computed when its batch is
 * numbered (in memory, after the previous batch's) and checked by the append against the stored row before the
 * batch. TRADING carries it too. When TRADING is found to hold something other than the log (a duplicate PubAck
 * whose stored message is not ours, or TRADING's last message differing from the log's event there when the
 * sequencer catches up), the sequencer stops writing for good (TradingMismatchError): status() names the
 * sequenceId, readiness says not ready, and it stays stopped — holding (and renewing) the writer lease, so that no
 * standby builds on that history either — until an operator has looked (`sequencer inspect --verify`) and
 * restarts it.
 *
 * Fault-injection tests stop the process at named points of a batch's life by decorating the ports at
 * composition (./failpoints.ts); nothing here knows of it.
 */

import { type BatchPlan, type DecodedBatch, decodeBatch, planBatch } from "../domain/batch-plan.ts";
import { EMPTY_HEAD, type Head } from "../domain/sequencing.ts";
import type { Logger } from "../logger.ts";
import { backoffDelay } from "./backoff.ts";
import { BatchStage, PreviousBatchFailed, type Stores, Take } from "./batch-stage.ts";
import { catchUpTrading } from "./catch-up.ts";
import { LogContinuityError, rootMessage, TradingMismatchError } from "./errors.ts";
import { DigestChain } from "./log-digest.ts";
import type {
  EventStore,
  IntakeMessage,
  IntakeSource,
  RejectedMessage,
  SequencedRecord,
  SequencerObserver,
  StoredEvent,
  TradingLog,
} from "./ports.ts";
import { sleep } from "./sleep.ts";

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

export type SequencerPorts = {
  source: IntakeSource;
  store: EventStore;
  trading: TradingLog;
  observer?: SequencerObserver;
};

/** The wall clock (sequencedAt) and the waits (backoff, idle while stopped); tests pass virtual ones. */
export type Clock = { now(): Date; sleep(ms: number, signal?: AbortSignal): Promise<void> };

const SYSTEM_CLOCK: Clock = { now: () => new Date(), sleep };

export type SequencerStatus = { head: bigint; tradingInSync: boolean; lastError: string | null };

/**
 * How many batches may be in hand at once: typically one publishing and acking, one committing, one queued
 * behind it on the writer's session. More would only hold more messages (the consumer's max_ack_pending caps
 * them anyway) without keeping PostgreSQL any busier.
 */
const PIPELINE_DEPTH = 3;

/**
 * A batch at least this share of batchSize means messages are waiting (a backlog): keep the pipeline full. A
 * smaller one means the sequencer keeps up; then a new batch waits for the oldest in hand to settle (within one
 * commit and PubAck) and takes everything that arrived meanwhile, instead of starting beside it with a few
 * events. Every batch costs a filter read, a commit, a PubAck and a pull whatever its size: at 6k events/s the
 * batches were 32–36 events, and the sequencer, PostgreSQL and nats-server spent 2–3× the CPU per event they spend
 * in a drain (docs/performance.md, "Second wave").
 */
const BACKLOG_SHARE = 0.25;

/** A batch decoded and filtered against the log, ready to be numbered. */
type Prepared = {
  decoded: DecodedBatch;
  rejected: RejectedMessage[];
  isStored(referenceId: bigint): boolean;
  isKeyStored(idempotencyKey: string): boolean;
};

/** A batch numbered and encoded, its digests chained: its rows for the log, its records for TRADING. */
type Numbered = {
  toStore: StoredEvent[];
  records: SequencedRecord[];
  rejected: RejectedMessage[];
  stores: Stores;
  /** The digest of the event before the batch: the append checks that the stored row there carries it. */
  chainedFrom: string;
  /** The last sequenceId once the batch is stored (the head before it when it numbers nothing). */
  last: bigint;
  duplicates: number;
};

const NO_OBSERVER: SequencerObserver = { batch: () => {}, catchUp: () => {} };

export class Sequencer {
  /** The head the next batch is numbered after: ahead of the log while appends are in flight. */
  private head: Head = EMPTY_HEAD;
  /** The last sequenceId known committed (for status). */
  private committedHead = 0n;
  /** TRADING was checked against the log and holds all of it (since the last recover; cleared by any failure). */
  private tradingInSync = false;
  private lastError: string | null = null;
  /** Set once TRADING was found to differ from the log: nothing more is written in this term. */
  private halted: TradingMismatchError | null = null;
  private readonly source: IntakeSource;
  private readonly store: EventStore;
  private readonly trading: TradingLog;
  private readonly observer: SequencerObserver;
  private readonly decoder = new TextDecoder();

  constructor(
    ports: SequencerPorts,
    private readonly options: SequencerOptions,
    private readonly log: Logger,
    private readonly clock: Clock = SYSTEM_CLOCK,
  ) {
    this.source = ports.source;
    this.store = ports.store;
    this.trading = ports.trading;
    this.observer = ports.observer ?? NO_OBSERVER;
  }

  status(): SequencerStatus {
    return {
      head: this.committedHead,
      tradingInSync: this.tradingInSync && this.halted === null,
      lastError: this.lastError,
    };
  }

  /**
   * Runs until the signal aborts. Never throws on a failed step: every failure is logged, backed off and retried —
   * except a TradingMismatchError, after which it stops taking work and waits for the signal (see the header).
   * Each turn does one thing: release the batches that finished, redo the batches in hand after a failure, wait
   * for a place in a full pipeline, or take new messages (or see the oldest batch finish first).
   */
  async run(signal: AbortSignal): Promise<void> {
    await this.retrying(signal, () => this.recover());
    const stages: BatchStage[] = [];
    let take: Take | null = null;
    /** Whether the last batch taken was large (see BACKLOG_SHARE). */
    let backlog = true;
    try {
      while (!signal.aborted && this.halted === null) {
        this.releaseFinished(stages);
        const oldest = stages[0];
        if (stages.some((stage) => stage.needsRedo)) {
          // A filter, commit or publish failed: drain and redo every batch in hand the safe way (recover, then one
          // batch at a time, filtered afresh).
          await this.redo(signal, stages.splice(0));
        } else if (oldest && (stages.length >= PIPELINE_DEPTH || (!backlog && take === null))) {
          await oldest.settled;
        } else {
          // New messages, or the oldest batch finishing first (it frees a place and its messages' keep-alive).
          take ??= new Take(this.source.next(this.maxBatchSize, this.options.fetchWaitMs));
          await (oldest ? Promise.race([take.arrived, oldest.settled]) : take.arrived);
          const batch = take.batch;
          if (batch) take = null;
          if (batch && batch.length > 0) {
            backlog = batch.length >= this.options.batchSize * BACKLOG_SHARE;
            stages.push(await this.start(batch, stages));
          }
        }
      }
    } finally {
      // Nothing of ours may still run for a batch when we return: wait for every one (redo does), and release
      // them all; unless shutting down, a batch that failed is redone first.
      await this.redo(signal, stages.splice(0));
    }
    // On shutdown mid-retry, or with a wait for messages still open, messages stay unacked: the source hands them
    // back and the next sequencer filters them.
    if (take) await take.arrived;
    // Stopped on a mismatch: stay (holding the writer lease, reporting status) until shutdown or the lease is lost.
    while (this.halted !== null && !signal.aborted) {
      this.alive();
      await this.clock.sleep(this.options.fetchWaitMs, signal);
    }
  }

  /**
   * Releases the batches at the head of the pipeline that finished, each a sign of progress; with no batch in
   * hand, the turn itself is one. A loop that keeps turning (new messages, idle waits) while its oldest batch is
   * stuck shows none, so a stuck append lets the writer lease run out.
   */
  private releaseFinished(stages: BatchStage[]): void {
    while (stages[0]?.finished) {
      this.alive();
      stages.shift()?.release();
    }
    if (stages.length === 0) this.alive();
  }

  /** Takes a batch into the pipeline: filtered and launched, or not started when that cannot be done now. */
  private async start(batch: readonly IntakeMessage[], inHand: readonly BatchStage[]): Promise<BatchStage> {
    const release = this.keepAlive(batch);
    // A batch in hand failed meanwhile: this one is not started, only redone with the others.
    if (inHand.some((stage) => stage.needsRedo)) return BatchStage.notStarted(batch, release);
    try {
      const prepared = await this.prepare(
        batch,
        inHand.map((stage) => stage.stores),
      );
      return this.launch(batch, release, this.number(prepared), inHand[inHand.length - 1]);
    } catch (error) {
      this.noteFailure(error); // its filter read failed
      return BatchStage.notStarted(batch, release);
    }
  }

  private alive(): void {
    this.options.alive?.();
  }

  /** Waits delayMs, still showing progress at least every fetchWaitMs (a backoff longer than the lease is fine). */
  private async backOff(delayMs: number, signal: AbortSignal): Promise<void> {
    for (let left = delayMs; left > 0 && !signal.aborted; left -= this.options.fetchWaitMs) {
      this.alive();
      await this.clock.sleep(Math.min(left, this.options.fetchWaitMs), signal);
    }
  }

  private get maxBatchSize(): number {
    return Math.max(this.options.batchSize, this.options.maxBatchSize ?? this.options.batchSize);
  }

  /**
   * Sends a numbered batch's append (queued behind `previous`'s on the writer's session) and chains its publish
   * behind `previous`'s publish. Failures end up in the stage's state, never thrown here.
   */
  private launch(
    batch: readonly IntakeMessage[],
    release: () => void,
    numbered: Numbered,
    previous: BatchStage | undefined,
  ): BatchStage {
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
      .then(() => this.publishAndAck(numbered.records, batch))
      .catch((error: unknown) => {
        // A batch behind a failed one fails too (not published, or its append does not continue the log): the
        // first failure is the one worth reporting.
        const consequence =
          error instanceof PreviousBatchFailed ||
          (error instanceof LogContinuityError && previous !== undefined);
        if (!consequence) this.noteFailure(error);
        throw error;
      });
    return BatchStage.launched(batch, release, numbered.stores, done);
  }

  /**
   * Recovers, then processes each batch that did not finish start to finish, in order, retrying each with
   * backoff. A batch that finished (committed, published, acked) before the failure is only released. Once
   * stopped on a mismatch, every batch is only released.
   */
  private async redo(signal: AbortSignal, stages: readonly BatchStage[]): Promise<void> {
    for (const stage of stages) await stage.settled; // nothing of ours still running
    // The pipeline's head was ahead of the log: reload it before the first batch, even if TRADING is in sync.
    let headReloaded = false;
    for (const stage of stages) {
      if (stage.needsRedo && this.halted === null) {
        await this.retrying(signal, async () => {
          if (!headReloaded || !this.tradingInSync) await this.recover();
          headReloaded = true;
          await this.processBatch(stage.batch);
        });
      }
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

  /** Reloads the head from the database and makes TRADING match it (./catch-up.ts). */
  private async recover(): Promise<void> {
    this.tradingInSync = false;
    this.head = await this.store.head();
    this.committedHead = this.head.sequenceId;
    await catchUpTrading(this.head.sequenceId, {
      store: this.store,
      trading: this.trading,
      observer: this.observer,
      log: this.log,
      pageSize: this.options.catchUpPageSize,
    });
    this.tradingInSync = true;
    this.observer.tradingMismatch?.(null);
  }

  /** One batch, start to finish, filtered against the log alone (nothing else is in hand). */
  private async processBatch(batch: readonly IntakeMessage[]): Promise<void> {
    const numbered = this.number(await this.prepare(batch, []));
    await this.append(batch, numbered);
    await this.publishAndAck(numbered.records, batch);
  }

  /** Stores a numbered batch (one statement), then records the commit: status, metrics, rejections. */
  private async append(batch: readonly IntakeMessage[], numbered: Numbered): Promise<void> {
    const started = performance.now();
    await this.store.append(numbered.toStore, numbered.rejected, numbered.chainedFrom);
    this.committedHead = numbered.last;
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
    const decoded = decodeBatch(batch.map((msg) => msg.data));
    const rejected = decoded.invalid.map(({ index, reason }) =>
      this.rejection(batch[index] as IntakeMessage, reason),
    );
    const stored = await this.store.findStored(decoded.referenceIds, decoded.idempotencyKeys);
    return {
      decoded,
      rejected,
      isStored: (id) => stored.references.has(id) || inHand.some((s) => s.references.has(id)),
      isKeyStored: (key) => stored.idempotencyKeys.has(key) || inHand.some((s) => s.idempotencyKeys.has(key)),
    };
  }

  /**
   * Numbers a prepared batch after the head (src/domain/batch-plan.ts), chains each event's digest after the
   * previous one's, and moves the head past the batch: the one place the head advances (recover resets it).
   */
  private number(prepared: Prepared): Numbered {
    const chainedFrom = this.head.digest;
    const plan: BatchPlan = planBatch(
      this.head,
      prepared.decoded.events,
      prepared.isStored,
      prepared.isKeyStored,
      this.clock.now().toISOString(),
    );
    const chain = new DigestChain(chainedFrom);
    const toStore: StoredEvent[] = plan.planned.map(({ event, payload }) => ({
      event,
      payload,
      digest: chain.next(payload),
    }));
    const references = new Set<bigint>();
    const idempotencyKeys = new Set<string>();
    for (const { event } of toStore) {
      references.add(event.referenceId);
      if (event.idempotencyKey !== undefined) idempotencyKeys.add(event.idempotencyKey);
    }
    this.head = { ...plan.position, digest: chain.head };
    return {
      toStore,
      records: toStore.map(({ event, payload, digest }) => ({
        sequenceId: event.sequenceId,
        type: event.type,
        payload,
        digest,
      })),
      rejected: prepared.rejected,
      stores: { references, idempotencyKeys },
      chainedFrom,
      last: plan.position.sequenceId,
      duplicates: plan.duplicates,
    };
  }

  /** Publish a committed batch to TRADING (in order, confirmed), then ack its intake messages. */
  private async publishAndAck(records: readonly SequencedRecord[], batch: readonly IntakeMessage[]) {
    await this.trading.append(records);
    for (const msg of batch) msg.ack();
    if (this.halted === null) this.lastError = null;
  }

  private rejection(msg: IntakeMessage, reason: string): RejectedMessage {
    // Postgres text cannot hold NUL; keep everything else as received (invalid UTF-8 becomes U+FFFD).
    const data = this.decoder.decode(msg.data).replaceAll("\u0000", "\\u0000");
    return { streamSeq: BigInt(msg.seq), subject: msg.subject, reason, data };
  }

  /**
   * Records a failure for status and logs it (with the retry's attempt and backoff, when it is retried at once;
   * a batch failing in the pipeline is retried by the redo). A TradingMismatchError stops the sequencer instead;
   * once stopped, later failures (its consequences) change nothing. True when the sequencer goes on.
   */
  private noteFailure(error: unknown, retry?: { attempt: number; delayMs: number }): boolean {
    this.tradingInSync = false;
    if (error instanceof TradingMismatchError) this.halt(error);
    if (this.halted !== null) return false;
    this.lastError = rootMessage(error);
    this.log.error("sequencer step failed; retrying", { ...retry, error });
    return true;
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

  /** Runs `step` until it succeeds, backing off after each failure; gives up on shutdown or once stopped. */
  private async retrying(signal: AbortSignal, step: () => Promise<void>): Promise<void> {
    for (let attempt = 0; !signal.aborted && this.halted === null; attempt++) {
      this.alive(); // backing off on purpose is progress: a standby would meet the same failure
      try {
        await step();
        return;
      } catch (error) {
        const delayMs = backoffDelay(attempt);
        if (!this.noteFailure(error, { attempt, delayMs })) return;
        await this.backOff(delayMs, signal);
      }
    }
  }
}
