/**
 * Names and provisioning of the JetStream objects this service owns. Provisioning is idempotent: create what is
 * missing, update what may change (subjects, duplicate window, ack settings), and refuse with a clear message
 * when an existing object differs in something JetStream cannot change in place (storage, retention, ack policy).
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
  duplicateWindowMs: number;
  /** How long the server waits for an ack before redelivering; the sequencer extends it while it retries. */
  ackWaitMs: number;
  /** Upper bound on delivered-but-unacked intake messages: bounds the sequencer's memory. */
  maxAckPending: number;
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
  maxMessageBytes = -1,
) {
  const wanted = {
    name,
    subjects: [`${prefix}.>`],
    storage: StorageType.File,
    retention: RetentionPolicy.Limits,
    discard: DiscardPolicy.New,
    duplicate_window: nanos(duplicateWindowMs),
    num_replicas: replicas,
    max_msg_size: maxMessageBytes,
  } satisfies Partial<StreamConfig>;
  let existing: StreamConfig;
  try {
    existing = (await jsm.streams.info(name)).config;
  } catch (error) {
    if (!isNotFound(error)) throw error;
    await jsm.streams.add(wanted);
    return;
  }
  if (existing.storage !== StorageType.File || existing.retention !== RetentionPolicy.Limits) {
    throw new Error(
      `stream ${name} exists with storage=${existing.storage} retention=${existing.retention}; ` +
        "this service needs file storage and limits retention (delete or migrate the stream)",
    );
  }
  const subjectsDiffer = existing.subjects?.length !== 1 || existing.subjects[0] !== `${prefix}.>`;
  if (
    subjectsDiffer ||
    existing.discard !== DiscardPolicy.New ||
    existing.duplicate_window !== wanted.duplicate_window ||
    (existing.num_replicas || 1) !== replicas ||
    (existing.max_msg_size ?? -1) !== maxMessageBytes
  ) {
    await jsm.streams.update(name, {
      subjects: wanted.subjects,
      discard: DiscardPolicy.New,
      duplicate_window: wanted.duplicate_window,
      num_replicas: replicas,
      max_msg_size: maxMessageBytes,
    });
  }
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
  await ensureStream(
    jsm,
    INTAKE_STREAM,
    INTAKE_SUBJECT_PREFIX,
    options.duplicateWindowMs,
    replicas,
    INTAKE_MAX_MESSAGE_BYTES,
  );
  await ensureStream(jsm, TRADING_STREAM, TRADING_SUBJECT_PREFIX, options.duplicateWindowMs, replicas);
  await ensureSequencerConsumer(jsm, options);
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
