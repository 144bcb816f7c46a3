/**
 * Appends sequenced events to TRADING so that the stream position equals the sequenceId.
 *
 * Every message carries msgID = sequenceId and expects the stream's last sequence to be sequenceId - 1. This
 * process is the only writer, so a message can land only after all earlier ones landed, in order; a retried
 * publish is either dropped as a duplicate (the PubAck says so and names the original position) or refused for
 * a wrong last sequence. Either way nothing is stored twice or out of order, and each PubAck is checked.
 */
import type { JetStreamClient, JetStreamManager } from "@nats-io/jetstream";
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
    private readonly js: JetStreamClient,
    private readonly jsm: JetStreamManager,
    private readonly timeoutMs: number,
  ) {}

  async lastSequence(): Promise<bigint> {
    const info = await this.jsm.streams.info(TRADING_STREAM);
    return BigInt(info.state.last_seq);
  }

  async append(records: readonly TradingRecord[]): Promise<void> {
    // Pipelined: all publishes go out before the first answer is awaited. The expected-last-sequence header keeps
    // them in order on the server even though they are in flight together.
    const acks = records.map((record) => {
      const position = Number(record.sequenceId);
      return this.js.publish(`${TRADING_SUBJECT_PREFIX}.${record.type.toLowerCase()}`, record.payload, {
        msgID: record.sequenceId.toString(),
        expect: { streamName: TRADING_STREAM, lastSequence: position - 1 },
        timeout: this.timeoutMs,
      });
    });
    const results = await Promise.allSettled(acks);
    results.forEach((result, i) => {
      if (result.status === "rejected") throw result.reason;
      const expected = records[i]?.sequenceId;
      if (expected === undefined || BigInt(result.value.seq) !== expected) {
        throw new TradingPositionError(
          `TRADING stored sequenceId ${expected} at position ${result.value.seq}` +
            (result.value.duplicate ? " (duplicate)" : ""),
        );
      }
    });
  }
}
