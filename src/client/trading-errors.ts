/**
 * What a reader of TRADING is told when the stream is not the gap-free, digest-chained log it promises to be
 * (src/client/trading-subscriber.ts raises these). Each names the sequenceId where reading stopped, so a consumer
 * can log it, alert, and decide: none of these is retried by the subscriber, because reading on would hand the
 * consumer a log with a hole or a forged event in it.
 */

/** The base of every refusal below: `sequenceId` is the position the subscriber expected next. */
export class TradingStreamError extends Error {
  override readonly name: string = "TradingStreamError";
  constructor(
    readonly sequenceId: bigint,
    message: string,
  ) {
    super(message);
  }
}

/**
 * TRADING no longer holds `wanted` (its retention limits, TRADING_MAX_AGE / TRADING_MAX_BYTES, removed it): the
 * events from there are in PostgreSQL (GET /events), not lost. Raised before reading when the start is already
 * gone, and while reading when the limits remove a message before it is delivered.
 */
export class TradingTrimmedError extends TradingStreamError {
  override readonly name: string = "TradingTrimmedError";
  constructor(
    readonly wanted: bigint,
    /** The first sequenceId TRADING holds (last + 1 when it holds none). */
    readonly earliest: bigint,
    /** TRADING holds no message at all (every one was removed). */
    readonly holdsNone: boolean,
  ) {
    super(
      wanted,
      `TRADING no longer holds sequenceId ${wanted}: ${trimmedDetail(wanted, earliest, holdsNone)}, then subscribe again with after=${earliest - 1n}`,
    );
  }
}

/** Where the events TRADING no longer holds are, and how to read them (shared with `sequencer replay`'s line). */
export function trimmedDetail(wanted: bigint, earliest: bigint, holdsNone: boolean): string {
  const held = holdsNone
    ? `TRADING holds no events now (every one up to ${earliest - 1n} was removed by its retention limits)`
    : `the earliest TRADING still holds is ${earliest} (older ones were removed by its retention limits)`;
  return (
    `${held}; read sequenceIds ${wanted}..${earliest - 1n} from PostgreSQL with GET /events?after=${wanted - 1n} ` +
    "(a reader or admin token; pages of up to 1000, continue with after=<next>)"
  );
}

/**
 * A position is missing from TRADING although its retention limits did not remove it (the next message delivered
 * is past it, and TRADING's first position is at or below it): a message was deleted from the stream.
 */
export class TradingGapError extends TradingStreamError {
  override readonly name: string = "TradingGapError";
  constructor(
    expected: bigint,
    /** The position delivered instead. */
    readonly delivered: bigint,
  ) {
    super(
      expected,
      `TRADING has no message at sequenceId ${expected} (the next one is at ${delivered}, and its retention limits did not remove it): a gap`,
    );
  }
}

/**
 * The message at a position is not the event for that position: its sequenceId, previousId or msg id names
 * another one (a message published out of order, or by someone other than the sequencer).
 */
export class TradingOrderError extends TradingStreamError {
  override readonly name: string = "TradingOrderError";
  constructor(position: bigint, reason: string) {
    super(position, `TRADING's message at position ${position} is out of order: ${reason}`);
  }
}

/**
 * The digest in a message's msg id is not the one chained from the previous event's digest and this message's
 * bytes: the message (or one before it) is not the log's, or the caller's previousDigest is not event `after`'s.
 */
export class TradingDigestError extends TradingStreamError {
  override readonly name: string = "TradingDigestError";
  constructor(
    position: bigint,
    /** The first 32 hex characters of the digest chained here. */
    readonly computed: string,
    /** What the message's msg id carries. */
    readonly published: string,
  ) {
    super(
      position,
      `TRADING's message at sequenceId ${position} breaks the digest chain: its msg id carries ${published}, ` +
        `the chain gives ${computed} (the message or an earlier one is not the log's, or previousDigest is wrong)`,
    );
  }
}

/** A message at the right position that is not a sequenced event this library knows (bad JSON, shape, subject). */
export class TradingInvalidEventError extends TradingStreamError {
  override readonly name: string = "TradingInvalidEventError";
  constructor(position: bigint, reason: string) {
    super(position, `TRADING's message at sequenceId ${position} is not a valid sequenced event: ${reason}`);
  }
}

/**
 * The broker refused this connection reading TRADING (its NATS user lacks the reader permissions). Not retried:
 * connect as the `reader` role (src/adapters/nats/permissions.ts).
 */
export class TradingAccessError extends Error {
  override readonly name = "TradingAccessError";
}
