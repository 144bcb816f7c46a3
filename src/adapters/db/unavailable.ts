/**
 * Which database failures mean "the database cannot answer now" (the caller may retry: HTTP 503) rather than a
 * bug (500): a statement cancelled by statement_timeout, a server shutting down or starting, a disk or memory
 * that is full, a lost or refused connection. Read from the error and its causes (drizzle wraps the driver's).
 */
const UNAVAILABLE_SQLSTATES = new Set([
  "57014", // query_canceled: statement_timeout (QUERY_TIMEOUT, STATEMENT_TIMEOUT)
  "57P01", // admin_shutdown
  "57P02", // crash_shutdown
  "57P03", // cannot_connect_now (starting up, recovering)
  "53000", // insufficient_resources
  "53100", // disk_full
  "53200", // out_of_memory
  "53300", // too_many_connections
  "55P03", // lock_not_available (lock_timeout)
  "40001", // serialization_failure
  "40P01", // deadlock_detected
]);

/** postgres.js's own connection errors, and the socket's. */
const UNAVAILABLE_CODES = new Set([
  "CONNECTION_CLOSED",
  "CONNECTION_ENDED",
  "CONNECTION_DESTROYED",
  "CONNECT_TIMEOUT",
  "ECONNREFUSED",
  "ECONNRESET",
  "EPIPE",
  "ETIMEDOUT",
]);

export function isDatabaseUnavailable(error: unknown): boolean {
  for (let e = error, depth = 0; e instanceof Error && depth < 8; e = e.cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code !== "string") continue;
    // SQLSTATE class 08: connection exceptions.
    if (UNAVAILABLE_CODES.has(code) || UNAVAILABLE_SQLSTATES.has(code) || code.startsWith("08")) return true;
  }
  return false;
}
