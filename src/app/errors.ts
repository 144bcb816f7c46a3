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
