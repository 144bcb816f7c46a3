/**
 * Structured JSON logs (pino) on stderr, behind a small interface so the use cases do not depend on pino.
 * Fields carry the ids a reader greps for (referenceId, sequenceId, streamSeq); bigint values are written as
 * decimal strings and errors as {name, message, code, stack, cause} (the cause chain says what actually failed
 * under a wrapper, the stack where). Writes are synchronous: the last lines before a crash matter.
 */
import pino from "pino";

export type Fields = Record<string, unknown>;
export type Level = "info" | "warn" | "error" | "silent";
export type Logger = {
  info(msg: string, fields?: Fields): void;
  warn(msg: string, fields?: Fields): void;
  error(msg: string, fields?: Fields): void;
  child(fields: Fields): Logger;
};

/**
 * The call frames of an error's stack ("at f (file:line:column)" lines), without the "Name: message" head the
 * engine puts first: the message is logged on its own (shortened where it holds data, see describeError), and
 * repeating it here would bring back what that left out.
 */
function framesOf(error: Error): string | undefined {
  const frames = (error.stack ?? "")
    .split("\n")
    .filter((line) => /^\s+at /.test(line))
    .map((line) => line.trim());
  return frames.length > 0 ? frames.join("\n") : undefined;
}

/**
 * An error as a log field. A query builder's "Failed query: <statement> params: <values>" keeps only the
 * statement's start: the values are request data, and the cause underneath names the failure.
 */
function describeError(error: Error, depth = 0): Fields {
  const failedQuery = /^Failed query: ([\s\S]*?)\nparams: [\s\S]*$/.exec(error.message);
  const message = failedQuery
    ? `Failed query: ${(failedQuery[1] ?? "").replace(/\s+/g, " ").trim().slice(0, 120)}`
    : error.message;
  const out: Fields = { name: error.name, message };
  const code = (error as { code?: unknown }).code;
  if (typeof code === "string" || typeof code === "number") out.code = code;
  const stack = framesOf(error);
  if (stack !== undefined) out.stack = stack;
  if (error.cause instanceof Error && depth < 4) out.cause = describeError(error.cause, depth + 1);
  return out;
}

function plain(fields: Fields | undefined): Fields | undefined {
  if (!fields) return undefined;
  const out: Fields = {};
  for (const [key, value] of Object.entries(fields)) {
    if (typeof value === "bigint") out[key] = value.toString();
    else if (value instanceof Error) out[key] = describeError(value);
    else out[key] = value;
  }
  return out;
}

function wrap(log: pino.Logger): Logger {
  return {
    info: (msg, fields) => log.info(plain(fields), msg),
    warn: (msg, fields) => log.warn(plain(fields), msg),
    error: (msg, fields) => log.error(plain(fields), msg),
    child: (fields) => wrap(log.child(plain(fields) ?? {})),
  };
}

/** `destination` is stderr, written synchronously; tests pass a stream of their own to read the lines. */
export function createLogger(
  base: Fields = {},
  level: Level = "info",
  destination: pino.DestinationStream = pino.destination({ dest: 2, sync: true }),
): Logger {
  const root = pino(
    {
      level,
      base: plain(base) ?? {},
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    destination,
  );
  return wrap(root);
}
