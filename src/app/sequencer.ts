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
 * Two stages overlap: while batch N is being published to TRADING and acked, batch N+1 is decoded, filtered
 * and committed (its numbers follow N's, already committed). Publishing stays strictly in order: N+1 is only
 * published once N is confirmed. Any failure drains the pipeline and falls back to recover + one batch at a
 * time, so the outcome is the same as the plain loop's, only faster.
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
    while (!signal.aborted) {
      // With a publish in flight, do not sit idle waiting for a new batch: finish the publish first.
      const batch = await this.source.next(this.options.batchSize, inFlight ? 0 : this.options.fetchWaitMs);
      if (batch.length === 0) {
        if (inFlight) {
          const previous: typeof inFlight = inFlight;
          inFlight = null;
          await this.settle(signal, [previous]);
        }
        continue;
      }
      const release = this.keepAlive(batch);
      try {
        const committed = await this.commit(batch);
        if (inFlight) await inFlight.done; // TRADING order: the previous batch first
        inFlight?.release();
        inFlight = { batch, done: this.publishAndAck(committed, batch), release };
        inFlight.done.catch(() => {}); // observed when awaited; never an unhandled rejection meanwhile
      } catch (error) {
        // Something failed in this batch's commit or the previous batch's publish. Drain and redo both the safe
        // way: recover (head from the database, TRADING caught up), then one batch at a time.
        this.noteFailure(error, 0);
        const pending = [...(inFlight ? [inFlight] : []), { batch, done: Promise.resolve(), release }];
        inFlight = null;
        await this.redo(signal, pending);
      }
    }
    if (inFlight) await this.settle(signal, [inFlight]);
    // On shutdown mid-retry a batch stays unacked: the source hands it back and the next sequencer filters it.
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
    await this.publishAndAck(await this.commit(batch), batch);
  }

  /** Decode, filter, number and store one batch in one transaction; returns what TRADING must receive. */
  private async commit(batch: readonly IntakeMessage[]): Promise<TradingRecord[]> {
    const valid: IntakeEvent[] = [];
    const rejected: RejectedMessage[] = [];
    for (const msg of batch) {
      const decoded = decodeIntakeEvent(msg.data);
      if (decoded.ok) valid.push(decoded.event);
      else rejected.push(this.rejection(msg, decoded.reason));
    }

    const keys = valid.flatMap((event) => (event.idempotencyKey === undefined ? [] : [event.idempotencyKey]));
    const stored = await this.store.findStored(
      valid.map((event) => event.referenceId),
      keys,
    );
    const result = sequenceBatch(
      this.head,
      valid,
      (id) => stored.references.has(id),
      this.now().toISOString(),
      (key) => stored.idempotencyKeys.has(key),
    );
    const toStore: StoredEvent[] = result.sequenced.map((event) => ({
      event,
      payload: encodeSequencedEvent(event),
    }));

    const started = performance.now();
    await this.store.append(toStore, rejected);
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
    return toStore.map(({ event, payload }) => ({ sequenceId: event.sequenceId, type: event.type, payload }));
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
