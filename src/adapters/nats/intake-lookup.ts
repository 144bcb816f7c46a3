/**
 * "Is this referenceId on the intake stream, not yet sequenced?" — for GET /references/:id.
 *
 * SEQUENCE has work-queue retention: it holds exactly the messages the sequencer has not acked yet, normally a
 * handful. They are walked in stream order with "next message from this sequence on" gets (holes left by acked
 * messages are skipped by the server), matching the Nats-Msg-Id header (= referenceId); the one found says whom
 * it concerns (a user may see only their own). Bounded: beyond maxScan waiting messages the answer is "unknown".
 * Nothing is written on the request path for this, and no consumer is created (a work-queue stream allows none
 * but the sequencer's).
 */
import type { JetStreamManager, MsgRequest } from "@nats-io/jetstream";
import type { IntakeLookup, PendingAnswer } from "../../app/ports.ts";
import { partiesOfJson } from "../../domain/events.ts";
import { INTAKE_STREAM, INTAKE_SUBJECT_PREFIX } from "./topology.ts";

const ABSENT: PendingAnswer = { state: "absent" };

export class JetStreamIntakeLookup implements IntakeLookup {
  constructor(
    private readonly jsm: JetStreamManager,
    private readonly maxScan = 1_000,
  ) {}

  async find(referenceId: bigint): Promise<PendingAnswer> {
    const { state } = await this.jsm.streams.info(INTAKE_STREAM);
    if (state.messages === 0) return ABSENT;
    if (state.messages > this.maxScan) return { state: "unknown" };
    const wanted = referenceId.toString();
    let seq = state.first_seq;
    for (let read = 0; read < this.maxScan && seq <= state.last_seq; read++) {
      // nats-server 2.9 answers `next_by_subj` on STREAM.MSG.GET; nats.js types it only for direct gets.
      const next = { seq, next_by_subj: `${INTAKE_SUBJECT_PREFIX}.>` } as unknown as MsgRequest;
      const msg = await this.jsm.streams.getMessage(INTAKE_STREAM, next);
      // Sequenced (and so removed) meanwhile, up to the end: not pending any more.
      if (!msg || msg.seq > state.last_seq) return ABSENT;
      if (msg.header?.get("Nats-Msg-Id") === wanted) {
        return { state: "pending", parties: partiesOfJson(msg.string()) };
      }
      seq = msg.seq + 1;
    }
    return seq > state.last_seq ? ABSENT : { state: "unknown" };
  }
}
