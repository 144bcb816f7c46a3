/**
 * Names and provisioning of the JetStream objects this service owns. Provisioning is idempotent: create what is
 * missing, update what may change (subjects, duplicate window, storage limits and discard policy, ack settings),
 * and refuse with a clear message when an existing object differs in something JetStream cannot change in place
 * (storage, retention, ack policy).
 *
 * SEQUENCE has work-queue retention: the broker removes an intake message once the `sequencer` consumer acked it,
 * and the sequencer acks only after the message's event is committed (or found already stored). So the intake
 * keeps exactly what is not yet in the log, with nothing to trim. Two alternatives lose accepted orders on
 * nats-server 2.9 and were measured to (docs/storage.md): a purge resets every consumer's pending list (a message
 * delivered but not yet acked is never redelivered), and interest retention drops messages published while a
 * restarting server has not yet restored the consumer (no interest yet). A work queue keeps a message until a
 * consumer acks it, consumer or not. The broker's duplicate filter does not depend on the message being stored (it
 * remembers msg ids for the duplicate window), and a publish that comes after the window anyway is stored as a
 * new intake message that the sequencer's filter — and behind it the unique reference_id — turns into no event.
 * A work-queue stream takes no consumer but the sequencer's; GET /references reads it by message gets instead.
 */
import {
  AckPolicy,
  DeliverPolicy,
  DiscardPolicy,
  JetStreamApiCodes,
  JetStreamApiError,
  type JetStreamClient,
  type JetStreamManager,
  RetentionPolicy,
  StorageType,
  type StreamConfig,
} from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { nanos } from "@nats-io/transport-node";
import { IDEMPOTENCY_BUCKET } from "./idempotency-kv.ts";
import { WORKER_LEASE_TTL_MS, WORKERS_BUCKET } from "./worker-lease.ts";

export const INTAKE_STREAM = "SEQUENCE";
export const INTAKE_SUBJECT_PREFIX = "sequence";
export const SEQUENCER_CONSUMER = "sequencer";
export const TRADING_STREAM = "TRADING";
export const TRADING_SUBJECT_PREFIX = "trading";
/**
 * The largest intake message SEQUENCE stores. A valid intake event is a few hundred bytes (every field is
 * bounded); the cap keeps junk — from a misconfigured broker or a bug — from filling the store.
 */
export const INTAKE_MAX_MESSAGE_BYTES = 4096;

export type TopologyOptions = {
  /** Stream replicas: 1 on a single server, 3 (or 5) on a JetStream cluster. */
  replicas?: number;
  /** SEQUENCE's duplicate window: covers the API's and its clients' re-publishes of one referenceId. */
  duplicateWindowMs: number;
  /**
   * TRADING's duplicate window (default: duplicateWindowMs). Only the sequencer's re-publish of a batch in flight
   * at a failure needs it; outside it such a re-publish is refused for its expected last sequence and catch-up
   * reads TRADING's tail again, so it can be short: nats-server holds every msg id of a window in memory.
   */
  tradingDuplicateWindowMs?: number | undefined;
  /** How long the server waits for an ack before redelivering; the sequencer extends it while it retries. */
  ackWaitMs: number;
  /** Upper bound on delivered-but-unacked intake messages: bounds the sequencer's memory. */
  maxAckPending: number;
  /**
   * TRADING's max age (TRADING_MAX_AGE). With it or tradingMaxBytes, TRADING discards its OLDEST messages to make
   * room (it must never refuse the sequencer's publish); readers of older events go to PostgreSQL (GET /events).
   * Both unset: TRADING keeps everything, with discard New, as before these limits existed.
   */
  tradingMaxAgeMs?: number | undefined;
  /** TRADING's max bytes (TRADING_MAX_BYTES); see tradingMaxAgeMs. Unset: unlimited. */
  tradingMaxBytes?: number | undefined;
  /**
   * SEQUENCE's max bytes (INTAKE_MAX_BYTES), with discard New: when full the broker refuses the API's publish (and
   * the API answers 503) instead of dropping intake that is not sequenced yet. Unset: unlimited.
   */
  intakeMaxBytes?: number | undefined;
};

/** The limits of one stream: -1 / 0 mean none, as JetStream spells it. */
type StreamLimits = {
  /** max_msg_size: the largest message stored (-1: no cap beyond the server's). */
  maxMessageBytes: number;
  /** max_bytes (-1: unlimited). */
  maxBytes: number;
  /** max_age in ms (0: forever). */
  maxAgeMs: number;
  /** What JetStream does at a limit: refuse the new message (New) or drop the oldest ones (Old). */
  discard: DiscardPolicy;
  /** Limits (TRADING: the replay source) or WorkQueue (SEQUENCE: kept until the sequencer acked it). */
  retention: RetentionPolicy;
};

function isNotFound(error: unknown): boolean {
  return (
    error instanceof JetStreamApiError &&
    (error.code === JetStreamApiCodes.StreamNotFound || error.code === JetStreamApiCodes.ConsumerNotFound)
  );
}

async function ensureStream(
  jsm: JetStreamManager,
  name: string,
  prefix: string,
  duplicateWindowMs: number,
  replicas: number,
  limits: StreamLimits,
) {
  const mutable = {
    subjects: [`${prefix}.>`],
    discard: limits.discard,
    duplicate_window: nanos(duplicateWindowMs),
    num_replicas: replicas,
    max_msg_size: limits.maxMessageBytes,
    max_bytes: limits.maxBytes,
    max_age: nanos(limits.maxAgeMs),
  } satisfies Partial<StreamConfig>;
  const wanted = {
    name,
    storage: StorageType.File,
    retention: limits.retention,
    ...mutable,
  } satisfies Partial<StreamConfig>;
  let existing: StreamConfig;
  try {
    existing = (await jsm.streams.info(name)).config;
  } catch (error) {
    if (!isNotFound(error)) throw error;
    await jsm.streams.add(wanted);
    return;
  }
  if (existing.storage !== StorageType.File) {
    throw new Error(
      `stream ${name} exists with storage=${existing.storage} retention=${existing.retention}; ` +
        `this service needs file storage and ${limits.retention} retention (delete or migrate the stream)`,
    );
  }
  if (name === INTAKE_STREAM && existing.retention !== limits.retention) {
    await recreateDrainedIntake(jsm);
    await jsm.streams.add(wanted);
    return;
  }
  if (existing.retention !== limits.retention) {
    throw new Error(
      `stream ${name} exists with retention=${existing.retention}; this service needs ${limits.retention} ` +
        "retention (delete or migrate the stream)",
    );
  }
  const subjectsDiffer = existing.subjects?.length !== 1 || existing.subjects[0] !== `${prefix}.>`;
  // Unset limits read back as -1 (sizes) and 0 (age); a stream from before the limits existed has them so.
  if (
    subjectsDiffer ||
    (existing.discard ?? DiscardPolicy.Old) !== limits.discard ||
    existing.duplicate_window !== mutable.duplicate_window ||
    (existing.num_replicas || 1) !== replicas ||
    (existing.max_msg_size ?? -1) !== limits.maxMessageBytes ||
    (existing.max_bytes ?? -1) !== limits.maxBytes ||
    (existing.max_age ?? 0) !== mutable.max_age
  ) {
    await jsm.streams.update(name, mutable);
  }
}

/**
 * A SEQUENCE made by an earlier version (limits retention, keeping every message) cannot be changed to work-queue
 * retention in place. Once its consumer has nothing left to sequence, it is deleted (with the consumer) and made
 * again; before that, provisioning refuses with what to do. Admin only (runtime roles may not delete streams).
 */
async function recreateDrainedIntake(jsm: JetStreamManager): Promise<void> {
  let waiting = 0;
  try {
    const info = await jsm.consumers.info(INTAKE_STREAM, SEQUENCER_CONSUMER);
    waiting = info.num_pending + info.num_ack_pending;
  } catch (error) {
    if (!isNotFound(error)) throw error;
    const { state } = await jsm.streams.info(INTAKE_STREAM);
    waiting = state.messages; // no consumer: nothing says what was sequenced
  }
  if (waiting > 0) {
    throw new Error(
      `stream ${INTAKE_STREAM} has limits retention (an earlier version) and ${waiting} messages not yet sequenced; ` +
        "let the sequencer drain it (stop the API first), then provision again: SEQUENCE is then recreated with " +
        "work-queue retention, keeping only what is not yet sequenced",
    );
  }
  await jsm.streams.delete(INTAKE_STREAM);
}

async function ensureSequencerConsumer(jsm: JetStreamManager, options: TopologyOptions) {
  const mutable = {
    ack_wait: nanos(options.ackWaitMs),
    max_ack_pending: options.maxAckPending,
    max_deliver: -1,
  };
  try {
    const info = await jsm.consumers.info(INTAKE_STREAM, SEQUENCER_CONSUMER);
    if (
      info.config.ack_policy !== AckPolicy.Explicit ||
      info.config.deliver_subject ||
      info.config.filter_subject
    ) {
      throw new Error(
        `consumer ${INTAKE_STREAM}/${SEQUENCER_CONSUMER} exists but is not a pull consumer with explicit acks over ` +
          "the whole stream; delete it and restart to let the service create it",
      );
    }
    const c = info.config;
    if (
      c.ack_wait !== mutable.ack_wait ||
      c.max_ack_pending !== mutable.max_ack_pending ||
      c.max_deliver !== -1
    ) {
      await jsm.consumers.update(INTAKE_STREAM, SEQUENCER_CONSUMER, mutable);
    }
  } catch (error) {
    if (!isNotFound(error)) throw error;
    await jsm.consumers.add(INTAKE_STREAM, {
      durable_name: SEQUENCER_CONSUMER,
      ack_policy: AckPolicy.Explicit,
      deliver_policy: DeliverPolicy.All,
      ...mutable,
    });
  }
}

/**
 * Creates or updates SEQUENCE, TRADING and the durable pull consumer `sequencer`. Where everything exists as
 * wanted it only reads (stream and consumer info), so a runtime role, which may not create or change anything
 * (permissions.ts), passes; otherwise it needs the admin role (`sequencer provision`, or the embedded broker's
 * start).
 */
export async function ensureTopology(jsm: JetStreamManager, options: TopologyOptions): Promise<void> {
  const replicas = options.replicas ?? 1;
  const intakeLimits: StreamLimits = {
    maxMessageBytes: INTAKE_MAX_MESSAGE_BYTES,
    maxBytes: options.intakeMaxBytes ?? -1,
    maxAgeMs: 0,
    discard: DiscardPolicy.New,
    retention: RetentionPolicy.Workqueue,
  };
  await ensureStream(
    jsm,
    INTAKE_STREAM,
    INTAKE_SUBJECT_PREFIX,
    options.duplicateWindowMs,
    replicas,
    intakeLimits,
  );
  await ensureStream(jsm, TRADING_STREAM, TRADING_SUBJECT_PREFIX, tradingWindowMs(options), replicas, {
    maxMessageBytes: -1,
    maxBytes: options.tradingMaxBytes ?? -1,
    maxAgeMs: options.tradingMaxAgeMs ?? 0,
    discard: tradingLimited(options) ? DiscardPolicy.Old : DiscardPolicy.New,
    retention: RetentionPolicy.Limits,
  });
  await ensureSequencerConsumer(jsm, options);
}

/** TRADING's duplicate window: its own when given, else SEQUENCE's. */
export function tradingWindowMs(
  options: Pick<TopologyOptions, "duplicateWindowMs" | "tradingDuplicateWindowMs">,
): number {
  return options.tradingDuplicateWindowMs ?? options.duplicateWindowMs;
}

/** Whether TRADING has a size or age limit (and so discards its oldest messages). */
export function tradingLimited(
  options: Pick<TopologyOptions, "tradingMaxAgeMs" | "tradingMaxBytes">,
): boolean {
  return options.tradingMaxAgeMs !== undefined || options.tradingMaxBytes !== undefined;
}

/**
 * Creates the IDEMPOTENCY and WORKERS buckets when missing (Kvm.create only reads a bucket's info when it exists,
 * so the API role, which may not create streams, opens them the same way once they exist).
 */
export async function ensureBuckets(
  js: JetStreamClient,
  options: { idempotencyWindowMs: number; replicas?: number },
): Promise<void> {
  const kvm = new Kvm(js);
  const replicas = options.replicas ?? 1;
  await kvm.create(IDEMPOTENCY_BUCKET, { ttl: options.idempotencyWindowMs, history: 1, replicas });
  await kvm.create(WORKERS_BUCKET, { ttl: WORKER_LEASE_TTL_MS, history: 1, replicas });
}
