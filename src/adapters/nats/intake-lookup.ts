/**
 * "Is this referenceId on the intake stream, not yet sequenced?" — for GET /references/:id.
 *
 * Only messages past the sequencer consumer's ack floor can be waiting; that range is normally a handful of
 * messages, so it is scanned (bounded) from the floor up, matching the Nats-Msg-Id header (= referenceId)
 * without decoding bodies. Nothing is written on the request path for this.
 */
import { DeliverPolicy, type JetStreamClient, type JetStreamManager, type JsMsg } from "@nats-io/jetstream";
import { INTAKE_STREAM, SEQUENCER_CONSUMER } from "./topology.ts";

export type PendingAnswer = "pending" | "absent" | "unknown";

export interface IntakeLookup {
  /** "unknown" when more messages wait than the scan bound allows: the caller cannot say "absent". */
  find(referenceId: bigint): Promise<PendingAnswer>;
}

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
    if (last < from) return "absent";
    if (last - from + 1 > this.maxScan) return "unknown";
    const wanted = referenceId.toString();
    const reader = await this.js.consumers.get(INTAKE_STREAM, {
      deliver_policy: DeliverPolicy.StartSequence,
      opt_start_seq: from,
      headers_only: true,
    });
    const messages = await reader.fetch({ max_messages: last - from + 1, expires: 5_000 });
    let found: PendingAnswer = "absent";
    for await (const msg of messages as AsyncIterable<JsMsg>) {
      if (msg.headers?.get("Nats-Msg-Id") === wanted) found = "pending";
      if (found === "pending" || msg.seq >= last) break;
    }
    await messages.close();
    return found;
  }
}
