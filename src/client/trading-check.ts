/**
 * The checks a TRADING reader applies to each message at the position it expects next, without any I/O (so they
 * are unit-tested on their own): the body is a sequenced event whose sequenceId is the position and whose
 * previousId is the one before; its subject is its type's; its msg id is `<position>:<32 hex>`; and those 32 hex
 * characters are the start of the digest chained from the previous event's digest and this body's bytes
 * (src/app/log-digest.ts, tradingMsgId in src/adapters/nats/trading-publisher.ts).
 *
 * The chain needs the FULL digest (32 bytes) of the event before the first one read; a msg id carries only its
 * first 16 bytes, so it cannot be picked up from the stream part-way. From sequenceId 1 it starts at the zero
 * digest; from a later position the caller passes the digest it stored with its resume point (each checked
 * TradingEvent carries its own), or null to read without the chain check (positions and order are checked all the
 * same).
 */
import { digestOfMsgId, msgIdDigest, subjectOf } from "../adapters/nats/trading-publisher.ts";
import { DigestChain } from "../app/log-digest.ts";
import type { SequencedEvent } from "../domain/events.ts";
import { TradingDigestError, TradingInvalidEventError, TradingOrderError } from "./trading-errors.ts";
import { decodeTradingEvent } from "./trading-event.ts";

/** One event read from TRADING, checked. */
export type TradingEvent = {
  /** Its TRADING position, which is its sequenceId. */
  sequenceId: bigint;
  /** The decoded event: ids as bigint, decimals as strings. */
  event: SequencedEvent;
  /** The exact published body (UTF-8 text): what the digest chain hashes. */
  payload: string;
  subject: string;
  /**
   * This event's full chain digest (64 lowercase hex characters): keep it with sequenceId as the resume point and
   * pass it back as `previousDigest` with `after: sequenceId`. Null when the chain is not checked
   * (previousDigest: null).
   */
  digest: string | null;
};

/** A message as the checker needs it. */
export type RawTradingMessage = { position: bigint; subject: string; msgId: string; payload: string };

const MSG_ID_DIGEST = /^[0-9a-f]{32}$/;

export class TradingChecker {
  private readonly chain: DigestChain | null;
  private nextPosition: bigint;

  /** `previousDigest`: the full digest of event `after` (hex), or null to leave the chain unchecked. */
  constructor(after: bigint, previousDigest: string | null) {
    this.nextPosition = after + 1n;
    this.chain = previousDigest === null ? null : new DigestChain(previousDigest);
  }

  /** The position the next message must have. */
  get expected(): bigint {
    return this.nextPosition;
  }

  /** Checks the message at the expected position and moves on; throws a TradingStreamError otherwise. */
  accept(message: RawTradingMessage): TradingEvent {
    const position = this.nextPosition;
    if (message.position !== position) {
      throw new TradingOrderError(position, `delivered position ${message.position}, expected ${position}`);
    }
    const decoded = decodeTradingEvent(message.payload);
    if (!decoded.ok) throw new TradingInvalidEventError(position, decoded.reason);
    const { event } = decoded;
    if (event.sequenceId !== position)
      throw new TradingOrderError(position, `it carries sequenceId ${event.sequenceId}`);
    if (event.previousId !== position - 1n)
      throw new TradingOrderError(
        position,
        `it carries previousId ${event.previousId}, not ${position - 1n}`,
      );
    if (message.subject !== subjectOf(event)) {
      throw new TradingInvalidEventError(
        position,
        `a ${event.type} event on ${message.subject}, not ${subjectOf(event)}`,
      );
    }
    // `<position>:<32 hex>`, or just `<position>` for a message published before the digest chain existed (its
    // bytes still extend the chain; there is nothing to compare).
    const published = message.msgId === position.toString() ? null : digestOfMsgId(message.msgId);
    if (published !== null && message.msgId !== `${position}:${published}`) {
      throw new TradingOrderError(
        position,
        `its msg id ${JSON.stringify(message.msgId)} names another position`,
      );
    }
    if (message.msgId !== position.toString() && (published === null || !MSG_ID_DIGEST.test(published))) {
      throw new TradingInvalidEventError(
        position,
        `its msg id ${JSON.stringify(message.msgId)} is not <sequenceId>:<32 hex characters>`,
      );
    }
    const digest = this.chain ? this.chain.next(message.payload) : null;
    if (digest !== null && published !== null && msgIdDigest(digest) !== published) {
      throw new TradingDigestError(position, msgIdDigest(digest), published);
    }
    this.nextPosition = position + 1n;
    return { sequenceId: position, event, payload: message.payload, subject: message.subject, digest };
  }
}
