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
import { Buffer } from "node:buffer";
import { MSG_ID_DIGEST_HEX, subjectOf } from "../adapters/nats/trading-publisher.ts";
import { ByteDigestChain, digestToHex } from "../app/log-digest.ts";
import { EVENT_TYPES, type SequencedEvent } from "../domain/events.ts";
import { digitsOfAt, EXACT_DIGITS_BELOW, textAt } from "./ascii-bytes.ts";
import { canonicalEventTypeAt } from "./trading-canonical.ts";
import { TradingDigestError, TradingInvalidEventError, TradingOrderError } from "./trading-errors.ts";
import { decodeTradingEvent } from "./trading-event.ts";

/** One event read from TRADING, checked. */
export type TradingEvent = {
  /** Its TRADING position, which is its sequenceId. */
  sequenceId: bigint;
  /**
   * The decoded event: ids as bigint, decimals as strings. Checked when the message arrived; built the first time
   * it is read (a reader that only forwards the bytes, like `sequencer replay`, never pays for it).
   */
  event: SequencedEvent;
  /** The exact published body (UTF-8 text): what the digest chain hashes. */
  payload: string;
  /**
   * The same body as the bytes received (a valid body is ASCII: these are its UTF-8 encoding), e.g. to write it
   * out without encoding it again. A view of the client's receive buffer: read it, do not modify it.
   */
  body: Uint8Array;
  subject: string;
  /**
   * This event's full chain digest (64 lowercase hex characters): keep it with sequenceId as the resume point and
   * pass it back as `previousDigest` with `after: sequenceId`. Null when the chain is not checked
   * (previousDigest: null).
   */
  digest: string | null;
};

/** A message as the checker needs it, as text. */
export type RawTradingMessage = { position: bigint; subject: string; msgId: string; payload: string };

/** A message as the checker needs it, as received: the msg id's and the body's bytes. */
export type ReceivedTradingMessage = {
  position: bigint;
  subject: string;
  msgId: Uint8Array;
  body: Uint8Array;
};

const utf8 = new TextDecoder();
const COLON = 58;
/** The digest bytes a msg id carries (tradingMsgId): the first 16 of 32, as 32 hex digits. */
const MSG_ID_DIGEST_BYTES = MSG_ID_DIGEST_HEX / 2;

/** Each type's TRADING subject, computed once. */
const SUBJECTS = new Map<unknown, string>(EVENT_TYPES.map((type) => [type, subjectOf({ type })]));

/** The value of a lowercase hex digit, or -1. */
function hexDigit(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  return c >= 97 && c <= 102 ? c - 87 : -1;
}

function isLowerHex(b: Uint8Array, from: number, to: number): boolean {
  for (let i = from; i < to; i++) if (hexDigit(b[i] as number) < 0) return false;
  return true;
}

/**
 * Whether b[from, from + 2n) writes the first n bytes of `digest` in lowercase hex: every character is compared
 * with its nibble, so anything but a lowercase hex digit is a mismatch.
 */
function hexWrites(b: Uint8Array, from: number, digest: Uint8Array, n: number): boolean {
  for (let i = 0; i < n; i++) {
    const byte = digest[i] as number;
    if (hexDigit(b[from + 2 * i] as number) !== byte >> 4) return false;
    if (hexDigit(b[from + 2 * i + 1] as number) !== (byte & 15)) return false;
  }
  return true;
}

/** A checked event whose text, domain object and hex digest are made when first read. */
class CheckedTradingEvent implements TradingEvent {
  #payload: string | undefined;
  #event: SequencedEvent | undefined;
  #digest: Uint8Array | null;
  #digestHex: string | undefined;

  constructor(
    readonly sequenceId: bigint,
    readonly body: Uint8Array,
    readonly subject: string,
    /** The text and decoded event when the full decode already ran (else the body was checked valid). */
    decoded: { payload: string; event: SequencedEvent } | undefined,
    digest: Uint8Array | null,
  ) {
    this.#payload = decoded?.payload;
    this.#event = decoded?.event;
    this.#digest = digest;
  }

  get payload(): string {
    this.#payload ??= utf8.decode(this.body);
    return this.#payload;
  }

  get event(): SequencedEvent {
    if (this.#event === undefined) {
      const decoded = decodeTradingEvent(this.payload);
      // Unreachable: the fast check accepts only what the full decode accepts (trading-canonical.unit.test.ts).
      if (!decoded.ok) throw new Error(`TRADING event ${this.sequenceId} does not decode: ${decoded.reason}`);
      this.#event = decoded.event;
    }
    return this.#event;
  }

  get digest(): string | null {
    if (this.#digest === null) return null;
    this.#digestHex ??= digestToHex(this.#digest);
    return this.#digestHex;
  }
}

export class TradingChecker {
  private readonly chain: ByteDigestChain | null;
  private nextPosition: bigint;
  /** nextPosition as a number, compared with the digits received without making text of either. */
  private nextNumber: number;

  /** `previousDigest`: the full digest of event `after` (hex), or null to leave the chain unchecked. */
  constructor(after: bigint, previousDigest: string | null) {
    this.nextPosition = after + 1n;
    this.nextNumber = Number(this.nextPosition);
    this.chain = previousDigest === null ? null : new ByteDigestChain(previousDigest);
  }

  /** The position the next message must have. */
  get expected(): bigint {
    return this.nextPosition;
  }

  /**
   * The same as a number (rounded past 2^53): a reader holding a received position as a safe integer compares it
   * with this and, when equal, passes `expected` on instead of making a BigInt of it.
   */
  get expectedNumber(): number {
    return this.nextNumber;
  }

  /** Checks the message at the expected position and moves on; throws a TradingStreamError otherwise. */
  accept(message: RawTradingMessage): TradingEvent {
    return this.acceptReceived({
      position: message.position,
      subject: message.subject,
      msgId: Buffer.from(message.msgId, "utf8"),
      body: Buffer.from(message.payload, "utf8"),
    });
  }

  /** accept, on the bytes as received (no text made of them unless a check fails or the caller asks). */
  acceptReceived(message: ReceivedTradingMessage): TradingEvent {
    const { msgId } = message;
    return this.acceptAt(message.position, message.subject, msgId, 0, msgId.length, message.body);
  }

  /**
   * acceptReceived with the msg id as idBytes[idStart, idEnd), e.g. inside the received header bytes: a reader
   * then makes no view of it unless a check fails.
   */
  acceptAt(
    received: bigint,
    receivedSubject: string,
    idBytes: Uint8Array,
    idStart: number,
    idEnd: number,
    body: Uint8Array,
  ): TradingEvent {
    const position = this.nextPosition;
    if (received !== position) {
      throw new TradingOrderError(position, `delivered position ${received}, expected ${position}`);
    }
    // The fast way for the encoder's layout; anything else gets the full decode, whose answer and reason stand.
    const canonicalType = canonicalEventTypeAt(body, this.nextNumber);
    const decoded = canonicalType === null ? this.decodeAt(position, body) : undefined;
    const type = canonicalType ?? (decoded as { event: SequencedEvent }).event.type;
    const subject = SUBJECTS.get(type) as string;
    if (receivedSubject !== subject) {
      throw new TradingInvalidEventError(position, `a ${type} event on ${receivedSubject}, not ${subject}`);
    }
    // With the chain checked, a msg id in the publisher's layout needs only the digest comparison (which refuses
    // any character but the right hex digit); anything else, or a mismatch, gets the full check and its error.
    const chain = this.chain;
    const laidOut = chain !== null ? this.laidOutDigestAt(idBytes, idStart, idEnd) : -1;
    if (chain !== null && laidOut >= 0) {
      // An accepted body is ASCII (every check allows only ASCII), so its bytes are the UTF-8 of its text.
      const digest = chain.next(body);
      if (!hexWrites(idBytes, laidOut, digest, MSG_ID_DIGEST_BYTES)) {
        const msgId = idBytes.subarray(idStart, idEnd);
        // A malformed msg id is refused as one (TradingInvalidEventError), as the full check would have first.
        this.publishedDigestAt(position, msgId);
        this.refuseDigest(position, digest, msgId, laidOut - idStart);
      }
      return this.advance(position, body, receivedSubject, decoded, digest);
    }
    const msgId = idStart === 0 && idEnd === idBytes.length ? idBytes : idBytes.subarray(idStart, idEnd);
    const publishedAt = this.publishedDigestAt(position, msgId);
    const digest = chain ? chain.next(body) : null;
    if (digest !== null && publishedAt >= 0 && !hexWrites(msgId, publishedAt, digest, MSG_ID_DIGEST_BYTES)) {
      this.refuseDigest(position, digest, msgId, publishedAt);
    }
    return this.advance(position, body, receivedSubject, decoded, digest);
  }

  private advance(
    position: bigint,
    body: Uint8Array,
    subject: string,
    decoded: { payload: string; event: SequencedEvent } | undefined,
    digest: Uint8Array | null,
  ): TradingEvent {
    this.nextPosition = position + 1n;
    this.nextNumber++;
    return new CheckedTradingEvent(position, body, subject, decoded, digest);
  }

  private refuseDigest(position: bigint, digest: Uint8Array, msgId: Uint8Array, publishedAt: number): never {
    throw new TradingDigestError(
      position,
      digestToHex(digest).slice(0, MSG_ID_DIGEST_HEX),
      utf8.decode(msgId.subarray(publishedAt)),
    );
  }

  /** The full decode of a body not in the encoder's layout: its text and event, or the error refusing it. */
  private decodeAt(position: bigint, body: Uint8Array): { payload: string; event: SequencedEvent } {
    const payload = utf8.decode(body);
    const decoded = decodeTradingEvent(payload);
    if (!decoded.ok) throw new TradingInvalidEventError(position, decoded.reason);
    const { event } = decoded;
    if (event.sequenceId !== position)
      throw new TradingOrderError(position, `it carries sequenceId ${event.sequenceId}`);
    if (event.previousId !== position - 1n)
      throw new TradingOrderError(
        position,
        `it carries previousId ${event.previousId}, not ${position - 1n}`,
      );
    return { payload, event };
  }

  /**
   * Where (in b) the digest part of the msg id b[start, end) starts when it is `<this position>:` and 32 more
   * characters (not checked to be hex: the digest comparison does that), else -1.
   */
  private laidOutDigestAt(b: Uint8Array, start: number, end: number): number {
    if (this.nextNumber >= EXACT_DIGITS_BELOW) return -1;
    const digitsEnd = digitsOfAt(b, start, this.nextNumber);
    // Digits running on past `end` (not in a received header, where a line end follows) fail the length.
    if (digitsEnd < 0 || b[digitsEnd] !== COLON || end !== digitsEnd + 1 + MSG_ID_DIGEST_HEX) return -1;
    return digitsEnd + 1;
  }

  /**
   * Where the digest part (32 lowercase hex digits) of a msg id `<position>:<32 hex>` starts, or -1 for just
   * `<position>`: a message published before the digest chain existed (its bytes still extend the chain; there
   * is nothing to compare).
   */
  private publishedDigestAt(position: bigint, msgId: Uint8Array): number {
    // Where the position's digits end when the msg id starts with exactly them, else -1.
    const digitsEnd =
      this.nextNumber < EXACT_DIGITS_BELOW
        ? digitsOfAt(msgId, 0, this.nextNumber)
        : textAt(msgId, 0, position.toString())
          ? position.toString().length
          : -1;
    if (digitsEnd === msgId.length) return -1;
    const colon = msgId.indexOf(COLON);
    if (colon >= 0 && colon !== digitsEnd) {
      throw new TradingOrderError(
        position,
        `its msg id ${JSON.stringify(utf8.decode(msgId))} names another position`,
      );
    }
    if (
      colon < 0 ||
      msgId.length - colon - 1 !== MSG_ID_DIGEST_HEX ||
      !isLowerHex(msgId, colon + 1, msgId.length)
    ) {
      throw new TradingInvalidEventError(
        position,
        `its msg id ${JSON.stringify(utf8.decode(msgId))} is not <sequenceId>:<32 hex characters>`,
      );
    }
    return colon + 1;
  }
}
