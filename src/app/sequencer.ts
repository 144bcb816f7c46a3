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
 * Three stages overlap: while batch N is being published to TRADING and acked, batch N+1 is committed (its
 * numbers follow N's, already committed), and while N+1's append statement runs, batch N+2 is taken, decoded and
 * filtered (a read on a pool connection sees everything committed up to N; N+1's referenceIds and keys are
 * checked in memory; the unique constraints stay the second filter). Numbering and committing stay strictly one
 * batch after the other, and publishing strictly in order: N+1 is only published once N is confirmed. Any
 * failure drains the pipeline and falls back to recover + one batch at a time (filtered afresh), so the outcome
 * is the same as the plain loop's, only faster.
 *
 * Batches form from whatever is buffered: a lone order is sequenced at once, and during a backlog a batch takes
 * up to maxBatchSize messages, which amortizes the per-batch round trips (filter, commit, PubAck).
 */

import type { EventStore, RejectedMessage, StoredEvent } from "../adapters/db/event-store.ts";
import type { IntakeMessage, IntakeSource } from "../adapters/nats/intake-consumer.ts";
import type { TradingLog, TradingRecord } from "../adapters/nats/trading-publisher.ts";
import { decodeIntakeEvent, encodeSequencedEvent, type IntakeEvent } from "../domain/events.ts";
import { EMPTY_HEAD, type Head, sequenceBatch } from "../domain/sequencing.ts";
import type { Logger } from "../logger.ts";
import { backoffDelay, sleep } from "./backoff.ts";

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
};

/** A committed batch whose publish-and-ack may still be running; `release` stops its keep-alive. */
type InFlight = { batch: readonly IntakeMessage[]; done: Promise<void>; release(): void };

/** A batch decoded and filtered against the log, ready to be numbered. */
type Prepared = {
  valid: IntakeEvent[];
  rejected: RejectedMessage[];
  isStored(referenceId: bigint): boolean;
  isKeyStored(idempotencyKey: string): boolean;
};

/** A batch taken from the source whose decode and filter may still be running. */
type Taken = { batch: readonly IntakeMessage[]; prepared: Promise<Prepared>; release(): void };

/** What the batch being committed stores: the next batch's filter counts these as stored already. */
type Committing = { references: ReadonlySet<bigint>; idempotencyKeys: ReadonlySet<string> };

export class TradingAheadError extends Error {
  override readonly name = "TradingAheadError";
}

export type SequencerStatus = { head: bigint; tradingInSync: boolean; lastError: string | null };

/**
 * Named points in a batch's life where fault-injection tests make the process die (see FAILPOINT in config.ts):
 * after the commit, after TRADING confirmed the batch, and after half of the batch was acked.
 */
export type Failpoint = "after-commit" | "after-publish" | "mid-ack";
export type FailpointHook = (point: Failpoint) => void;

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
}

const NO_OBSERVER: SequencerObserver = { batch: () => {}, catchUp: () => {} };

export class Sequencer {
  private head: Head = EMPTY_HEAD;
  private recovered = false;
  private lastError: string | null = null;
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
    return { head: this.head.sequenceId, tradingInSync: this.recovered, lastError: this.lastError };
  }

  /** Runs until the signal aborts. Never throws: every failure is logged, backed off and retried. */
  async run(signal: AbortSignal): Promise<void> {
    await this.retrying(signal, () => this.recover());
    let inFlight: InFlight | null = null;
    const lookahead: { taken: Taken | null } = { taken: null }; // set while a commit runs
    while (!signal.aborted) {
      let current = lookahead.taken;
      lookahead.taken = null;
      if (!current) {
        // With a publish in flight, do not sit idle waiting for a new batch: finish the publish first.
        const batch = await this.source.next(this.maxBatchSize, inFlight ? 0 : this.options.fetchWaitMs);
        if (batch.length === 0) {
          if (inFlight) {
            const previous: typeof inFlight = inFlight;
            inFlight = null;
            await this.settle(signal, [previous]);
          }
          continue;
        }
        current = this.take(batch, null);
      }
      try {
        const committed = await this.commit(current.batch, await current.prepared, async (committing) => {
          // While the append statement runs: take what is buffered, decode it and filter it.
          if (signal.aborted) return;
          const next = await this.source.next(this.maxBatchSize, 0);
          if (next.length > 0) lookahead.taken = this.take(next, committing);
        });
        if (inFlight) await inFlight.done; // TRADING order: the previous batch first
        inFlight?.release();
        inFlight = {
          batch: current.batch,
          done: this.publishAndAck(committed, current.batch),
          release: current.release,
        };
        inFlight.done.catch(() => {}); // observed when awaited; never an unhandled rejection meanwhile
      } catch (error) {
        // Something failed in this batch's filter or commit, or the previous batch's publish. Drain and redo all
        // of them the safe way: recover (head from the database, TRADING caught up), then one batch at a time.
        this.noteFailure(error, 0);
        const ahead = lookahead.taken;
        const pending = [
          ...(inFlight ? [inFlight] : []),
          this.entry(current),
          ...(ahead ? [this.entry(ahead)] : []),
        ];
        inFlight = null;
        lookahead.taken = null;
        await this.redo(signal, pending);
      }
    }
    if (inFlight) await this.settle(signal, [inFlight]);
    // On shutdown mid-retry (or with a batch taken ahead) a batch stays unacked: the source hands it back and the
    // next sequencer filters it.
    const ahead = lookahead.taken;
    if (ahead) {
      await ahead.prepared.catch(() => {});
      ahead.release();
    }
  }

  private get maxBatchSize(): number {
    return Math.max(this.options.batchSize, this.options.maxBatchSize ?? this.options.batchSize);
  }

  /** Keeps a new batch alive and starts its decode and filter (against the log, and `committing` if given). */
  private take(batch: readonly IntakeMessage[], committing: Committing | null): Taken {
    const prepared = this.prepare(batch, committing);
    prepared.catch(() => {}); // observed when awaited
    return { batch, prepared, release: this.keepAlive(batch) };
  }

  /** A taken batch as a pipeline entry to redo: "done" once nothing of ours runs for it any more. */
  private entry(taken: Taken): InFlight {
    return {
      batch: taken.batch,
      done: taken.prepared.then(() => {}),
      release: taken.release,
    };
  }

  /** Waits for an in-flight publish; on failure redoes its batch safely. */
  private async settle(signal: AbortSignal, entries: InFlight[]): Promise<void> {
    try {
      for (const entry of entries) {
        await entry.done;
        entry.release();
      }
    } catch (error) {
      this.noteFailure(error, 0);
      await this.redo(signal, entries);
    }
  }

  /** Recover, then process each batch start to finish, in order, retrying each with backoff. */
  private async redo(signal: AbortSignal, entries: InFlight[]): Promise<void> {
    for (const entry of entries) await entry.done.catch(() => {}); // nothing of ours still running
    for (const entry of entries) {
      await this.retrying(signal, async (attempt) => {
        if (attempt === 0 || !this.recovered) await this.recover();
        await this.processBatch(entry.batch);
      });
      entry.release();
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
   * were published that the log does not hold (a restored database, a hand-published message): sequencing on
   * top of that would fork history, so it stops with a clear error and retries until an operator fixes it.
   */
  async recover(): Promise<void> {
    this.recovered = false;
    this.head = await this.store.head();
    let published = await this.trading.lastSequence();
    if (published > this.head.sequenceId) {
      throw new TradingAheadError(
        `TRADING is at ${published} but the database head is ${this.head.sequenceId}; refusing to sequence`,
      );
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
  }

  /** One batch, start to finish. Exposed for tests that drive the sequencer step by step. */
  async processBatch(batch: readonly IntakeMessage[]): Promise<void> {
    await this.publishAndAck(await this.commit(batch, await this.prepare(batch, null)), batch);
  }

  /**
   * Decodes a batch and finds which of its events are already stored. `committing` is the batch whose append
   * statement may still be running (a read cannot see it yet): its events count as stored. That is only right
   * if it commits; if it fails, the pipeline is drained and every batch is prepared again from scratch.
   */
  private async prepare(batch: readonly IntakeMessage[], committing: Committing | null): Promise<Prepared> {
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
    if (committing === null) {
      return {
        valid,
        rejected,
        isStored: (id) => stored.references.has(id),
        isKeyStored: (key) => stored.idempotencyKeys.has(key),
      };
    }
    return {
      valid,
      rejected,
      isStored: (id) => stored.references.has(id) || committing.references.has(id),
      isKeyStored: (key) => stored.idempotencyKeys.has(key) || committing.idempotencyKeys.has(key),
    };
  }

  /**
   * Numbers a prepared batch after the head and stores it in one statement; returns what TRADING must receive.
   * `meanwhile` runs while the statement commits (the pipeline's look-ahead); it is told what this batch stores.
   */
  private async commit(
    batch: readonly IntakeMessage[],
    prepared: Prepared,
    meanwhile?: (committing: Committing) => Promise<void>,
  ): Promise<TradingRecord[]> {
    const { rejected } = prepared;
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
    const keys = new Set<string>();
    result.sequenced.forEach((event, i) => {
      const payload = encodeSequencedEvent(event);
      toStore[i] = { event, payload };
      records[i] = { sequenceId: event.sequenceId, type: event.type, payload };
      references.add(event.referenceId);
      if (event.idempotencyKey !== undefined) keys.add(event.idempotencyKey);
    });

    const started = performance.now();
    const appending = this.store.append(toStore, rejected);
    if (meanwhile) {
      try {
        await meanwhile({ references, idempotencyKeys: keys });
      } finally {
        await appending; // never leave the statement running behind an error
      }
    } else {
      await appending;
    }
    this.head = result.head;
    this.failpoint("after-commit");
    this.observer.batch({
      size: batch.length,
      sequenced: toStore.length,
      duplicates: result.duplicates.length,
      rejected: rejected.length,
      transactionMs: performance.now() - started,
    });
    for (const r of rejected) {
      this.log.warn("rejected intake message", { streamSeq: r.streamSeq, reason: r.reason });
    }
    return records;
  }

  /** Publish a committed batch to TRADING (in order, confirmed), then ack its intake messages. */
  private async publishAndAck(
    records: readonly TradingRecord[],
    batch: readonly IntakeMessage[],
  ): Promise<void> {
    await this.trading.append(records);
    this.failpoint("after-publish");
    const half = Math.floor(batch.length / 2);
    batch.forEach((msg, i) => {
      if (i === half) this.failpoint("mid-ack");
      msg.ack();
    });
    this.lastError = null;
  }

  private rejection(msg: IntakeMessage, reason: string): RejectedMessage {
    // Postgres text cannot hold NUL; keep everything else as received (invalid UTF-8 becomes U+FFFD).
    const data = this.decoder.decode(msg.data).replaceAll("\u0000", "\\u0000");
    return { streamSeq: BigInt(msg.seq), subject: msg.subject, reason, data };
  }

  /** Records a failure for status and logs; returns the backoff delay for this attempt. */
  private noteFailure(error: unknown, attempt: number): number {
    this.recovered = false;
    this.lastError = error instanceof Error ? error.message : String(error);
    const delayMs = backoffDelay(attempt);
    this.log.error("sequencer step failed; retrying", { attempt, delayMs, error });
    return delayMs;
  }

  private async retrying(signal: AbortSignal, step: (attempt: number) => Promise<void>): Promise<void> {
    for (let attempt = 0; !signal.aborted; attempt++) {
      try {
        await step(attempt);
        return;
      } catch (error) {
        await sleep(this.noteFailure(error, attempt), signal);
      }
    }
  }
}
