/**
 * Appends sequenced events to TRADING so that the stream position equals the sequenceId.
 *
 * Every message carries msgID = `<sequenceId>:<the first 32 hex characters of the event's chain digest>`
 * (tradingMsgId; the digest is src/app/log-digest.ts's, 128 bits of it) and expects the stream's last sequence to
 * be sequenceId - 1. This process is the only writer, so a message can land only after all earlier ones landed, in
 * order; a retried publish is either dropped as a duplicate (the PubAck says so and names the original position)
 * or refused for a wrong last sequence. Either way nothing is stored twice or out of order, and each PubAck is
 * checked.
 *
 * Against a message published on `trading.*` by someone else (defence in depth: the broker's permissions are the
 * first line): the msg id holds 128 bits of the digest of an event that does not exist yet, so a forger cannot
 * make JetStream drop our publish as a duplicate of theirs; a message after the first of a batch also expects the
 * last msg id to be its predecessor's, so a message slipped in between ours refuses the rest of the batch instead
 * of sitting silently at one of its positions; and a duplicate PubAck counts only once the stored message is read
 * back and found to be ours (TradingMismatchError otherwise).
 */
import { type JetStreamClient, type JetStreamManager, PubHeaders } from "@nats-io/jetstream";
import type { MsgHdrs, MsgHdrsImpl, NatsConnection } from "@nats-io/transport-node";
import { TradingMismatchError } from "../../app/errors.ts";
import type { SequencedRecord, TradingLog } from "../../app/ports.ts";
import { encodedHeaders } from "./encoded-headers.ts";
import { TRADING_STREAM, TRADING_SUBJECT_PREFIX } from "./topology.ts";

/**
 * How much of an event's digest its TRADING msg id carries: the first 32 hex characters (128 bits). A forger would
 * have to guess 128 bits of the digest of an event that does not exist yet; a consumer recomputing the chain
 * compares its digests' first 32 hex characters with the msg ids. The log keeps all 32 bytes (`events.digest`).
 */
export const MSG_ID_DIGEST_HEX = 32;

/** The part of a digest (64 hex characters) that a TRADING msg id carries. */
export function msgIdDigest(digest: string): string {
  return digest.slice(0, MSG_ID_DIGEST_HEX);
}

/** The msg id of an event on TRADING: `<sequenceId>:<the first 32 hex characters of its digest>`. */
export function tradingMsgId(record: Pick<SequencedRecord, "sequenceId" | "digest">): string {
  return `${record.sequenceId}:${msgIdDigest(record.digest)}`;
}

/**
 * The digest part (32 hex characters) of a TRADING msg id, or null when it has none: a msg id that is just the
 * sequenceId (published before the digest chain existed), or no msg id at all.
 */
export function digestOfMsgId(msgId: string | undefined | null): string | null {
  if (!msgId) return null;
  const colon = msgId.indexOf(":");
  return colon < 0 ? null : msgId.slice(colon + 1);
}

/** The msg id of a message read from TRADING ("" when it has none). */
export function msgIdOf(message: Pick<TradingMessage, "header">): string {
  return message.header?.get(PubHeaders.MsgIdHdr) ?? "";
}

export class TradingPositionError extends Error {
  override readonly name = "TradingPositionError";
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
 * Why a message read from TRADING is not this record, or null when it is: its body bytes and subject, and its msg
 * id, which must be tradingMsgId(record) (so its digest part is the log's digest's first 32 hex characters). A
 * message with the log's exact bytes and subject and a msg id that is just the sequenceId was published before
 * the digest chain existed (an upgraded deployment): its content is the log's, so it matches.
 */
export function tradingDifference(message: TradingMessage, record: SequencedRecord): string | null {
  if (!sameBytes(message.data, encoder.encode(record.payload)))
    return "the message body differs from the log's";
  if (message.subject !== subjectOf(record)) {
    return `the message is on ${message.subject}, the log's event goes on ${subjectOf(record)}`;
  }
  const msgId = msgIdOf(message);
  const expected = tradingMsgId(record);
  if (msgId === expected || msgId === record.sequenceId.toString()) return null;
  const digest = digestOfMsgId(msgId);
  if (digest === null || msgId !== `${record.sequenceId}:${digest}`) {
    return `its msg id ${JSON.stringify(msgId)} is not the log's ${expected} (nor ${record.sequenceId}, as before the digest chain)`;
  }
  return `its msg id carries the digest ${digest}, the log's digest begins ${msgIdDigest(record.digest)} (msg id ${expected})`;
}

/** Whether a message read from TRADING carries a digest in its msg id (not: published before the digest chain). */
export function carriesDigest(message: Pick<TradingMessage, "header">): boolean {
  return digestOfMsgId(msgIdOf(message)) !== null;
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
  async append(records: readonly SequencedRecord[]): Promise<void> {
    const last = records[records.length - 1];
    if (!last) return;
    let previousMsgId: string | undefined;
    for (let i = 0; i < records.length - 1; i++) {
      const record = records[i] as SequencedRecord;
      const msgId = tradingMsgId(record);
      this.nc.publish(subjectOf(record), record.payload, {
        headers: tradingHeaders(record, msgId, previousMsgId),
      });
      previousMsgId = msgId;
    }
    const ack = await this.js.publish(subjectOf(last), last.payload, {
      headers: tradingHeaders(last, tradingMsgId(last), previousMsgId),
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

  /**
   * A message absent below TRADING's first sequence was removed by its retention limits (TRADING_MAX_AGE,
   * TRADING_MAX_BYTES): there is nothing to compare, and that is no mismatch. Absent at or above it is one.
   */
  async verify(record: SequencedRecord): Promise<void> {
    const stored = await this.jsm.streams.getMessage(TRADING_STREAM, { seq: Number(record.sequenceId) });
    if (!stored) {
      const { state } = await this.jsm.streams.info(TRADING_STREAM);
      // An empty stream reports first_seq = last_seq + 1: everything up to last_seq is gone.
      if (record.sequenceId < BigInt(state.first_seq)) return;
      throw new TradingMismatchError(record.sequenceId, "TRADING has no message at that position");
    }
    const difference = tradingDifference(stored, record);
    if (difference !== null) throw new TradingMismatchError(record.sequenceId, difference);
  }
}

/**
 * The JetStream headers of one record: msg id, expected stream, expected last sequence and, after the first of a
 * batch, expected last msg id (wire text written once: encoded-headers.ts).
 */
export function tradingHeaders(
  record: Pick<SequencedRecord, "sequenceId">,
  msgId: string,
  previousMsgId: string | undefined,
): MsgHdrsImpl {
  const entries: [string, string][] = [
    [PubHeaders.MsgIdHdr, msgId],
    [PubHeaders.ExpectedStreamHdr, TRADING_STREAM],
    [PubHeaders.ExpectedLastSeqHdr, (record.sequenceId - 1n).toString()],
  ];
  if (previousMsgId !== undefined) entries.push([PubHeaders.ExpectedLastMsgIdHdr, previousMsgId]);
  return encodedHeaders(entries);
}

export function subjectOf(record: Pick<SequencedRecord, "type">): string {
  return `${TRADING_SUBJECT_PREFIX}.${record.type.toLowerCase()}`;
}
