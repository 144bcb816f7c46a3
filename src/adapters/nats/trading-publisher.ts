/**
 * Appends sequenced events to TRADING so that the stream position equals the sequenceId.
 *
 * Every message carries msgID = sequenceId and expects the stream's last sequence to be sequenceId - 1. This
 * process is the only writer, so a message can land only after all earlier ones landed, in order; a retried
 * publish is either dropped as a duplicate (the PubAck says so and names the original position) or refused for
 * a wrong last sequence. Either way nothing is stored twice or out of order, and each PubAck is checked.
 */
import { type JetStreamClient, type JetStreamManager, PubHeaders } from "@nats-io/jetstream";
import { MsgHdrsImpl, type NatsConnection } from "@nats-io/transport-node";
import { TRADING_STREAM, TRADING_SUBJECT_PREFIX } from "./topology.ts";

export type TradingRecord = { sequenceId: bigint; type: string; payload: string };

export interface TradingLog {
  /** The position of the last message on TRADING (0 when empty). */
  lastSequence(): Promise<bigint>;
  /** Publishes contiguous records in order; resolves once every one is confirmed at its own position. */
  append(records: readonly TradingRecord[]): Promise<void>;
}

export class TradingPositionError extends Error {
  override readonly name = "TradingPositionError";
}

export class JetStreamTradingLog implements TradingLog {
  constructor(
    private readonly nc: NatsConnection,
    private readonly js: JetStreamClient,
    private readonly jsm: JetStreamManager,
    private readonly timeoutMs: number,
  ) {}

  async lastSequence(): Promise<bigint> {
    const info = await this.jsm.streams.info(TRADING_STREAM);
    return BigInt(info.state.last_seq);
  }

  /**
   * All but the last record go out as plain publishes carrying the JetStream headers (msg id, expected stream,
   * expected last sequence); only the last one waits for a PubAck. The expected-last-sequence chain means the
   * last one can only be stored at its position if every earlier one was stored at its own, in order — so one
   * confirmed PubAck confirms the batch, and any earlier loss or refusal makes the last one fail too.
   */
  async append(records: readonly TradingRecord[]): Promise<void> {
    const last = records[records.length - 1];
    if (!last) return;
    for (let i = 0; i < records.length - 1; i++) {
      const record = records[i] as TradingRecord;
      // fromRecord takes the (already canonical) names as given: MsgHdrs.set canonicalizes and searches the keys
      // on every call, which was a tenth of the sequencer's CPU during a backlog.
      const h = MsgHdrsImpl.fromRecord({
        [PubHeaders.MsgIdHdr]: [record.sequenceId.toString()],
        [PubHeaders.ExpectedStreamHdr]: [TRADING_STREAM],
        [PubHeaders.ExpectedLastSeqHdr]: [(record.sequenceId - 1n).toString()],
      });
      this.nc.publish(subjectOf(record), record.payload, { headers: h });
    }
    const ack = await this.js.publish(subjectOf(last), last.payload, {
      msgID: last.sequenceId.toString(),
      expect: { streamName: TRADING_STREAM, lastSequence: Number(last.sequenceId - 1n) },
      timeout: this.timeoutMs,
    });
    if (BigInt(ack.seq) !== last.sequenceId) {
      throw new TradingPositionError(
        `TRADING stored sequenceId ${last.sequenceId} at position ${ack.seq}${ack.duplicate ? " (duplicate)" : ""}`,
      );
    }
  }
}

function subjectOf(record: TradingRecord): string {
  return `${TRADING_SUBJECT_PREFIX}.${record.type.toLowerCase()}`;
}
