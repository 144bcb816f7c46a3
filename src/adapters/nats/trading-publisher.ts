/**
 * Appends sequenced events to TRADING so that the stream position equals the sequenceId.
 *
 * Every message carries the event's chain digest (header `Sequencer-Digest`, src/app/log-digest.ts), msgID =
 * `<sequenceId>:<digest>`, and expects the stream's last sequence to be sequenceId - 1. This process is the only
 * writer, so a message can land only after all earlier ones landed, in order; a retried publish is either dropped
 * as a duplicate (the PubAck says so and names the original position) or refused for a wrong last sequence.
 * Either way nothing is stored twice or out of order, and each PubAck is checked.
 *
 * Against a message published on `trading.*` by someone else (defence in depth: the broker's permissions are the
 * first line): the msg id holds the digest of an event that does not exist yet, so a forger cannot make JetStream
 * drop our publish as a duplicate of theirs; a message after the first of a batch also expects the last msg id
 * to be its predecessor's, so a message slipped in between ours refuses the rest of the batch instead of sitting
 * silently at one of its positions; and a duplicate PubAck counts only once the stored message is read back and
 * found to be ours (TradingMismatchError otherwise).
 */
import { type JetStreamClient, type JetStreamManager, PubHeaders } from "@nats-io/jetstream";
import { type MsgHdrs, MsgHdrsImpl, type NatsConnection } from "@nats-io/transport-node";
import { TRADING_STREAM, TRADING_SUBJECT_PREFIX } from "./topology.ts";

/** An event as TRADING carries it: its position, the type that picks the subject, the body, its digest (hex). */
export type TradingRecord = { sequenceId: bigint; type: string; payload: string; digest: string };

/** The header that carries each event's chain digest on TRADING (64 hex characters). */
export const DIGEST_HEADER = "Sequencer-Digest";

export interface TradingLog {
  /** The position of the last message on TRADING (0 when empty). */
  lastSequence(): Promise<bigint>;
  /** Publishes contiguous records in order; resolves once every one is confirmed at its own position. */
  append(records: readonly TradingRecord[]): Promise<void>;
  /**
   * Reads the message at record.sequenceId and resolves if it is this record (subject, bytes, digest header);
   * throws TradingMismatchError if it is not, or if there is none.
   */
  verify(record: TradingRecord): Promise<void>;
}

export class TradingPositionError extends Error {
  override readonly name = "TradingPositionError";
}

/**
 * TRADING holds, at `sequenceId`, a message that is not the log's event there (or one past the log's head): the
 * published history differs from the stored one. Never retried: the sequencer stops writing and says so.
 */
export class TradingMismatchError extends Error {
  override readonly name = "TradingMismatchError";
  constructor(
    readonly sequenceId: bigint,
    readonly reason: string,
  ) {
    super(`TRADING does not match the log at sequenceId ${sequenceId}: ${reason}`);
  }
}

/** A message as read back from TRADING. */
export type TradingMessage = { subject: string; data: Uint8Array; header: MsgHdrs | undefined };

const encoder = new TextEncoder();

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * Why a message read from TRADING is not this record, or null when it is: its body bytes and subject, and its
 * `Sequencer-Digest` header where it has one. A message with the log's exact bytes and no digest header was
 * published before the digest chain existed (an upgraded deployment): its content is the log's, so it matches.
 */
export function tradingDifference(message: TradingMessage, record: TradingRecord): string | null {
  if (!sameBytes(message.data, encoder.encode(record.payload)))
    return "the message body differs from the log's";
  if (message.subject !== subjectOf(record)) {
    return `the message is on ${message.subject}, the log's event goes on ${subjectOf(record)}`;
  }
  const digest = message.header?.get(DIGEST_HEADER) ?? "";
  if (digest !== "" && digest !== record.digest) {
    return `its ${DIGEST_HEADER} ${digest} is not the log's ${record.digest}`;
  }
  return null;
}

/** Whether a message read from TRADING carries a digest header (not: published before the digest chain). */
export function hasDigestHeader(message: Pick<TradingMessage, "header">): boolean {
  return (message.header?.get(DIGEST_HEADER) ?? "") !== "";
}

/** The msg id of an event on TRADING: its sequenceId and its digest. */
export function tradingMsgId(record: Pick<TradingRecord, "sequenceId" | "digest">): string {
  return `${record.sequenceId.toString()}:${record.digest}`;
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
   * expected last sequence, and after the first the expected last msg id); only the last one waits for a PubAck.
   * The expected-last-sequence chain means the last one can only be stored at its position if every earlier one
   * was stored at its own, in order, and the expected-last-msg-id chain that each one stored after the first
   * follows ours, not a message slipped in between: so one confirmed PubAck confirms the batch, and any earlier
   * loss or refusal makes the last one fail too. The first of a batch expects no msg id: after a restart the
   * server knows the last msg id only within the duplicate window, so that would refuse good publishes (a forged
   * message before the batch refuses the batch anyway, and recovery checks TRADING's tail).
   */
  async append(records: readonly TradingRecord[]): Promise<void> {
    const last = records[records.length - 1];
    if (!last) return;
    let previousMsgId: string | undefined;
    for (let i = 0; i < records.length - 1; i++) {
      const record = records[i] as TradingRecord;
      const msgId = tradingMsgId(record);
      this.nc.publish(subjectOf(record), record.payload, {
        headers: headersOf(record, msgId, previousMsgId),
      });
      previousMsgId = msgId;
    }
    const ack = await this.js.publish(subjectOf(last), last.payload, {
      headers: headersOf(last, tradingMsgId(last), previousMsgId),
      timeout: this.timeoutMs,
    });
    if (BigInt(ack.seq) !== last.sequenceId) {
      throw new TradingPositionError(
        `TRADING stored sequenceId ${last.sequenceId} at position ${ack.seq}${ack.duplicate ? " (duplicate)" : ""}`,
      );
    }
    // A duplicate is our own earlier publish (a retry) only if the message stored there is this one: a message
    // someone else published with our msg id must not pass for ours.
    if (ack.duplicate) await this.verify(last);
  }

  async verify(record: TradingRecord): Promise<void> {
    const stored = await this.jsm.streams.getMessage(TRADING_STREAM, { seq: Number(record.sequenceId) });
    if (!stored) throw new TradingMismatchError(record.sequenceId, "TRADING has no message at that position");
    const difference = tradingDifference(stored, record);
    if (difference !== null) throw new TradingMismatchError(record.sequenceId, difference);
  }
}

/**
 * The JetStream and digest headers of one record. fromRecord takes the (already canonical) names as given:
 * MsgHdrs.set canonicalizes and searches the keys on every call, which was a tenth of the sequencer's CPU during
 * a backlog.
 */
function headersOf(record: TradingRecord, msgId: string, previousMsgId: string | undefined): MsgHdrs {
  const h: Record<string, string[]> = {
    [PubHeaders.MsgIdHdr]: [msgId],
    [PubHeaders.ExpectedStreamHdr]: [TRADING_STREAM],
    [PubHeaders.ExpectedLastSeqHdr]: [(record.sequenceId - 1n).toString()],
    [DIGEST_HEADER]: [record.digest],
  };
  if (previousMsgId !== undefined) h[PubHeaders.ExpectedLastMsgIdHdr] = [previousMsgId];
  return MsgHdrsImpl.fromRecord(h);
}

export function subjectOf(record: Pick<TradingRecord, "type">): string {
  return `${TRADING_SUBJECT_PREFIX}.${record.type.toLowerCase()}`;
}
