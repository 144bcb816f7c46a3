/**
 * The ports: every interface the use cases (intake, idempotency, sequencer, leadership) and the HTTP read routes
 * depend on, written in the domain's terms only. Adapters implement them and import them from here; nothing in
 * src/app imports an adapter, a driver or a framework (test/unit/layering.unit.test.ts keeps it so). The errors
 * the use cases decide on are in ./errors.ts. The logger's interface is src/logger.ts's `Logger`.
 */
import type { IntakeEvent, SequencedEvent } from "../domain/events.ts";
import type { Head } from "../domain/sequencing.ts";

/**
 * One event of the sequenced log as it goes out (to TRADING, to a reader): its position, the type that picks the
 * TRADING subject, its exact body, and its chain digest (64 hex characters, src/app/log-digest.ts).
 */
export type SequencedRecord = { sequenceId: bigint; type: string; payload: string; digest: string };

/** An event to store: the event, its exact TRADING body, and its chain digest (64 hex characters). */
export type StoredEvent = { event: SequencedEvent; payload: string; digest: string };

/** An intake message that does not decode: stored beside the log, never sequenced. */
export type RejectedMessage = { streamSeq: bigint; subject: string; reason: string; data: string };

/** The three ways to name one event: its number, its referenceId, or the idempotency key it was sent with. */
export type EventKey = { sequenceId: bigint } | { referenceId: bigint } | { idempotencyKey: string };

/** The sequenced log. Implemented by DrizzleEventStore (src/adapters/db/event-store.ts). */
export interface EventStore {
  head(): Promise<Head>;
  /** Which of these referenceIds and idempotency keys are already in the log. */
  findStored(
    referenceIds: readonly bigint[],
    idempotencyKeys: readonly string[],
  ): Promise<{ references: Set<bigint>; idempotencyKeys: Set<string> }>;
  /**
   * Stores a sequenced batch and the rejected messages that came with it, all or nothing. `chainedFrom` is the
   * digest the batch's first event was chained from (the zero digest for sequenceId 1): the row before the batch
   * must carry it, or nothing is written (LogContinuityError). Unused when the batch has no events.
   */
  append(
    batch: readonly StoredEvent[],
    rejected: readonly RejectedMessage[],
    chainedFrom: string,
  ): Promise<void>;
  /** Events with sequenceId > after, in order, at most `limit`. */
  readAfter(after: bigint, limit: number): Promise<SequencedRecord[]>;
  /** One event by its sequenceId, its referenceId or its idempotency key. */
  find(by: EventKey): Promise<SequencedRecord | null>;
}

/** A user's view of the log (GET /me/events). Implemented by DrizzleEventStore (src/adapters/db/event-store.ts). */
export interface UserEventReader {
  /** Events with sequenceId > after that concern one user (theirs, and transfers to them), in order, at most `limit`. */
  readConcerning(userId: bigint, after: bigint, limit: number): Promise<SequencedRecord[]>;
}

/**
 * The part of an intake message the sequencer uses. Made by JetStreamIntakeSource
 * (src/adapters/nats/intake-consumer.ts) from a JetStream JsMsg.
 */
export type IntakeMessage = {
  readonly seq: number;
  readonly subject: string;
  readonly data: Uint8Array;
  ack(): void;
  working(): void;
};

/**
 * The intake stream as the sequencer takes it, in batches. Implemented by JetStreamIntakeSource
 * (src/adapters/nats/intake-consumer.ts).
 */
export interface IntakeSource {
  /**
   * Waits up to waitMs for at least one message, then returns up to `max` buffered messages, oldest first.
   * With waitMs ≤ 0 it only takes what is buffered (possibly nothing) and does not wait at all.
   */
  next(max: number, waitMs: number): Promise<IntakeMessage[]>;
  close(): Promise<void>;
}

/** The TRADING stream, the log's outbox. Implemented by JetStreamTradingLog (src/adapters/nats/trading-publisher.ts). */
export interface TradingLog {
  /** The position of the last message on TRADING (0 when empty). */
  lastSequence(): Promise<bigint>;
  /** Publishes contiguous records in order; resolves once every one is confirmed at its own position. */
  append(records: readonly SequencedRecord[]): Promise<void>;
  /**
   * Reads the message at record.sequenceId and resolves if it is this record (subject, bytes, msg id digest), or
   * if TRADING's retention limits already removed it (below the stream's first sequence); throws
   * TradingMismatchError if it is not this record, or if there is none at or above the first sequence.
   */
  verify(record: SequencedRecord): Promise<void>;
}

/**
 * Writes an accepted request to the intake stream; resolves once it is stored there. Implemented by
 * JetStreamIntakePublisher (src/adapters/nats/intake-publisher.ts).
 */
export interface IntakePublisher {
  publish(event: IntakeEvent): Promise<void>;
}

/** Pending: on the intake stream, concerning these users (decimal ids). */
export type PendingAnswer =
  | { state: "pending"; parties: string[] }
  | { state: "absent" }
  | { state: "unknown" };

/**
 * "Is this referenceId on the intake stream, not yet sequenced?" (GET /references/:id). Implemented by
 * JetStreamIntakeLookup (src/adapters/nats/intake-lookup.ts).
 */
export interface IntakeLookup {
  /** "unknown" when more messages wait than the scan bound allows: the caller cannot say "absent". */
  find(referenceId: bigint): Promise<PendingAnswer>;
}

/** What a client is answered for an accepted request (202): the ids, as decimal strings. */
export type Answer = { referenceId: string; orderId?: string };

/** What the idempotency store keeps under one key. */
export type IdempotencyRecord = {
  /** The canonical request; a retry must match it exactly. */
  request: string;
  /** The encoded intake event the first attempt built. */
  event: string;
  answer: Answer | null;
};

/**
 * A create-if-absent key/value store with a retention window. Implemented by KvIdempotencyStore
 * (src/adapters/nats/idempotency-kv.ts, a JetStream KV bucket).
 */
export interface IdempotencyStore {
  get(key: string): Promise<IdempotencyRecord | null>;
  /** False when the key already exists. */
  create(key: string, record: IdempotencyRecord): Promise<boolean>;
  put(key: string, record: IdempotencyRecord): Promise<void>;
}

/**
 * The single-writer lease the sequencer role runs under (app/leadership.ts). Implemented by PostgresWriterLease
 * and InProcessWriterLease (src/adapters/db/writer-lease.ts), which also hand the event store its fenced session
 * at composition (src/service.ts).
 */
export interface WriterLease {
  /** Waits (as a standby) until this process is the single writer. False if the signal aborted first. */
  acquire(signal: AbortSignal): Promise<boolean>;
  /** Aborts when the lease is lost; a fresh signal after each acquire. */
  readonly lost: AbortSignal;
  /**
   * The sequencing loop's sign of progress. The lease is renewed only while this keeps being called: a loop that
   * stops (stuck, frozen) lets the lease run out and a standby take over.
   */
  alive(): void;
  /** Who writes, as last seen: for readiness ("holds the writer lease, term 7" / "standby; …"). */
  describe(): string;
  /** Gives the lease up (another process may take it); acquire may be called again. */
  release(): Promise<void>;
  close(): Promise<void>;
}

/** One committed batch: messages taken, events numbered, dropped as duplicates or rejected, commit time. */
export type BatchStats = {
  size: number;
  sequenced: number;
  duplicates: number;
  rejected: number;
  transactionMs: number;
};

/** What the sequencer reports about its work. Implemented by Metrics (src/adapters/metrics.ts). */
export interface SequencerObserver {
  batch(stats: BatchStats): void;
  catchUp(count: number): void;
  /**
   * TRADING differs from the log at this sequenceId and the sequencer stopped writing; null: TRADING's tail was
   * checked against the log and matches (each recovery).
   */
  tradingMismatch?(sequenceId: bigint | null): void;
}
