/**
 * Errors the use cases raise on purpose. Delivery layers map them (HTTP: src/adapters/http/errors.ts); anything
 * else is a bug and answers 500 without details.
 */
export class InvalidInputError extends Error {
  override readonly name = "InvalidInputError";
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(message);
  }
}

/** A dependency (NATS, the database) cannot take the request now; the client may retry later. */
export class UnavailableError extends Error {
  override readonly name = "UnavailableError";
  constructor(
    message: string,
    readonly retryAfterSeconds = 1,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}

/** The request contradicts earlier state (an Idempotency-Key reused for another request). */
export class ConflictError extends Error {
  override readonly name = "ConflictError";
}

/** Authenticated, but not allowed (a user token on an admin route). */
export class ForbiddenError extends Error {
  override readonly name = "ForbiddenError";
}

/** The thing asked for does not exist. */
export class NotFoundError extends Error {
  override readonly name = "NotFoundError";
}

/** Why a stored idempotency record was not used; a fixed set, so a log line never echoes the record itself. */
export type IdempotencyRecordProblem =
  /** The stored event does not decode as an intake event. */
  | "undecodable-event"
  /** The stored event's type and fields are not this request. */
  | "event-differs-from-request"
  /** The stored event carries another idempotency key than `<userId>:<key>`. */
  | "event-key-differs"
  /** The stored answer is not the one the stored event gives. */
  | "answer-differs-from-event";

/**
 * The record stored under an Idempotency-Key is inconsistent with itself or with the request (a corrupted or
 * planted record): it is not used and nothing is published. Unlike a ConflictError the client did nothing wrong
 * that a corrected body would fix; the key is unusable and a new one is needed. Delivery layers log it as a
 * security event. `userId` and `key` are the caller's (the key as the client sent it, unscoped).
 */
export class IdempotencyRecordRejected extends Error {
  override readonly name = "IdempotencyRecordRejected";
  constructor(
    readonly userId: string,
    readonly key: string,
    readonly problem: IdempotencyRecordProblem,
    /** The stored event's type when it decoded (one of the four event types), else undefined. */
    readonly eventType: string | undefined,
  ) {
    super("the record stored for this Idempotency-Key cannot be used; retry with a new Idempotency-Key");
  }
}

/**
 * The message of the innermost cause: what actually failed. Drivers and query builders wrap errors (drizzle's
 * "Failed query: <the whole statement> params: <every value>"), which is neither readable on a status page nor
 * fit for one (it carries request data); the driver's own error underneath says what is wrong.
 */
export function rootMessage(error: unknown): string {
  let current = error;
  for (let depth = 0; depth < 8 && current instanceof Error && current.cause !== undefined; depth++) {
    current = current.cause;
  }
  return current instanceof Error ? current.message : String(current);
}

/**
 * The intake store refused the write for want of space (SEQUENCE at INTAKE_MAX_BYTES, or the broker's store
 * full): the request is not accepted (503), nothing is lost, and it works again once the sequencer catches up or
 * space returns. Raised by the intake publisher.
 */
export class IntakeFullError extends Error {
  override readonly name = "IntakeFullError";
}

/**
 * An append whose first event does not follow the log's last one: the batch before it did not commit (the
 * sequencer sends appends ahead, pipelined), or the row before it does not carry the digest the batch was chained
 * from. Nothing was written; the sequencer recovers and redoes the batch. Raised by the event store.
 */
export class LogContinuityError extends Error {
  override readonly name = "LogContinuityError";
}

/**
 * TRADING holds, at `sequenceId`, a message that is not the log's event there (or one past the log's head): the
 * published history differs from the stored one. Never retried: the sequencer stops writing and says so. Raised
 * by the TRADING log and by the sequencer's recovery.
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
