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
  type JetStreamManager,
  RetentionPolicy,
  StorageType,
  type StreamConfig,
} from "@nats-io/jetstream";
import { nanos } from "@nats-io/transport-node";

export const INTAKE_STREAM = "SEQUENCE";
export const INTAKE_SUBJECT_PREFIX = "sequence";
export const SEQUENCER_CONSUMER = "sequencer";
export const TRADING_STREAM = "TRADING";
export const TRADING_SUBJECT_PREFIX = "trading";

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
) {
  const wanted = {
    name,
    subjects: [`${prefix}.>`],
    storage: StorageType.File,
    retention: RetentionPolicy.Limits,
    discard: DiscardPolicy.New,
    duplicate_window: nanos(duplicateWindowMs),
    num_replicas: replicas,
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
    (existing.num_replicas || 1) !== replicas
  ) {
    await jsm.streams.update(name, {
      subjects: wanted.subjects,
      discard: DiscardPolicy.New,
      duplicate_window: wanted.duplicate_window,
      num_replicas: replicas,
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

/** Creates or updates SEQUENCE, TRADING and the durable pull consumer `sequencer`. */
export async function ensureTopology(jsm: JetStreamManager, options: TopologyOptions): Promise<void> {
  const replicas = options.replicas ?? 1;
  await ensureStream(jsm, INTAKE_STREAM, INTAKE_SUBJECT_PREFIX, options.duplicateWindowMs, replicas);
  await ensureStream(jsm, TRADING_STREAM, TRADING_SUBJECT_PREFIX, options.duplicateWindowMs, replicas);
  await ensureSequencerConsumer(jsm, options);
}
