/**
 * "Is this referenceId on the intake stream, not yet sequenced?" — for GET /references/:id.
 *
 * Only messages past the sequencer consumer's ack floor can be waiting; that range is normally a handful of
 * messages, so it is scanned (bounded) from the floor up, matching the Nats-Msg-Id header (= referenceId)
 * without decoding bodies; only the one found is read whole, to say whom it concerns (a user may see only their
 * own). Nothing is written on the request path for this.
 */
import { DeliverPolicy, type JetStreamClient, type JetStreamManager, type JsMsg } from "@nats-io/jetstream";
import { partiesOfJson } from "../../domain/events.ts";
import { INTAKE_STREAM, SEQUENCER_CONSUMER } from "./topology.ts";

/** Pending: on the intake stream, concerning these users (decimal ids). */
export type PendingAnswer =
  | { state: "pending"; parties: string[] }
  | { state: "absent" }
  | { state: "unknown" };

export interface IntakeLookup {
  /** "unknown" when more messages wait than the scan bound allows: the caller cannot say "absent". */
  find(referenceId: bigint): Promise<PendingAnswer>;
}

const ABSENT: PendingAnswer = { state: "absent" };

export class JetStreamIntakeLookup implements IntakeLookup {
  constructor(
    private readonly js: JetStreamClient,
    private readonly jsm: JetStreamManager,
    private readonly maxScan = 10_000,
  ) {}

  async find(referenceId: bigint): Promise<PendingAnswer> {
    const [consumer, stream] = await Promise.all([
      this.jsm.consumers.info(INTAKE_STREAM, SEQUENCER_CONSUMER),
      this.jsm.streams.info(INTAKE_STREAM),
    ]);
    const from = consumer.ack_floor.stream_seq + 1;
    const last = stream.state.last_seq;
    if (last < from) return ABSENT;
    if (last - from + 1 > this.maxScan) return { state: "unknown" };
    const wanted = referenceId.toString();
    const reader = await this.js.consumers.get(INTAKE_STREAM, {
      deliver_policy: DeliverPolicy.StartSequence,
      opt_start_seq: from,
      headers_only: true,
    });
    const messages = await reader.fetch({ max_messages: last - from + 1, expires: 5_000 });
    let foundAt: number | undefined;
    for await (const msg of messages as AsyncIterable<JsMsg>) {
      if (msg.headers?.get("Nats-Msg-Id") === wanted) foundAt = msg.seq;
      if (foundAt !== undefined || msg.seq >= last) break;
    }
    await messages.close();
    if (foundAt === undefined) return ABSENT;
    const stored = await this.jsm.streams.getMessage(INTAKE_STREAM, { seq: foundAt });
    // Sequenced and trimmed meanwhile: the caller looks in the log again; it is not pending any more.
    if (!stored) return ABSENT;
    return { state: "pending", parties: partiesOfJson(stored.string()) };
  }
}
