/**
 * The log line of an error: name, message, code, the stack's call frames and the cause chain — and never the
 * request data a query builder puts in its message. Written to a memory destination and parsed back.
 */
import { describe, expect, test } from "bun:test";
import { Elysia } from "elysia";
import { errorMapping } from "../../src/adapters/http/errors.ts";
import { createLogger, type Logger } from "../../src/logger.ts";

type LoggedError = {
  name: string;
  message: string;
  code?: string | number;
  stack?: string;
  cause?: LoggedError;
};
type Line = { level: string; msg: string; error?: LoggedError } & Record<string, unknown>;

function memoryLogger(): { log: Logger; lines: Line[] } {
  const lines: Line[] = [];
  const log = createLogger({}, "info", { write: (line: string) => void lines.push(JSON.parse(line)) });
  return { log, lines };
}

function failInTheStore(): never {
  throw Object.assign(new Error("connection reset by peer"), { code: "ECONNRESET" });
}

function failInTheService(): never {
  try {
    failInTheStore();
  } catch (cause) {
    throw new Error("append failed", { cause });
  }
}

/** A bug two calls deep (a 500, not a dependency that is down). */
function readLimit(settings: { limits?: { max: number } }): number {
  if (settings.limits === undefined) throw new TypeError("settings.limits is undefined");
  return settings.limits.max;
}

function handleRequest(): never {
  throw new Error(`limit ${readLimit({})}`);
}

describe("logger", () => {
  test("an error keeps its name, message, code, stack frames and cause chain", () => {
    const { log, lines } = memoryLogger();
    try {
      failInTheService();
    } catch (error) {
      log.error("batch failed", { error, sequenceId: 7n });
    }
    expect(lines).toHaveLength(1);
    const [line] = lines;
    expect(line?.level).toBe("error");
    expect(line?.sequenceId).toBe("7");
    const error = line?.error;
    expect(error).toMatchObject({ name: "Error", message: "append failed" });
    expect(error?.stack).toContain("failInTheService");
    expect(error?.stack?.split("\n").every((frame) => frame.startsWith("at "))).toBe(true);
    expect(error?.cause).toMatchObject({
      name: "Error",
      message: "connection reset by peer",
      code: "ECONNRESET",
    });
    expect(error?.cause?.stack).toContain("failInTheStore");
  });

  test("a failed query's parameters reach neither the message nor the stack", () => {
    const { log, lines } = memoryLogger();
    const secret = "user-42-secret-payload";
    const error = new Error(`Failed query: insert into events (payload)\n  values ($1)\nparams: ${secret}`, {
      cause: Object.assign(new Error("duplicate key value violates unique constraint"), { code: "23505" }),
    });
    log.warn("append refused", { error });
    const text = JSON.stringify(lines);
    expect(text).not.toContain(secret);
    expect(lines[0]?.error?.message).toBe("Failed query: insert into events (payload) values ($1)");
    expect(lines[0]?.error?.stack).toContain("logger.unit.test.ts");
    expect(lines[0]?.error?.cause?.code).toBe("23505");
  });

  test("a 500 answered by the HTTP error mapping is logged with the stack of what threw", async () => {
    const { log, lines } = memoryLogger();
    const app = new Elysia().use(errorMapping(log)).get("/boom", () => handleRequest());
    const response = await app.handle(new Request("http://localhost/boom"));
    expect(response.status).toBe(500);
    expect(await response.json()).toEqual({ error: { code: "INTERNAL", message: "internal error" } });
    const logged = lines.find((line) => line.msg === "unhandled error");
    expect(logged?.level).toBe("error");
    expect(logged?.error).toMatchObject({ name: "TypeError", message: "settings.limits is undefined" });
    expect(logged?.error?.stack).toContain("readLimit");
    expect(logged?.error?.stack).toContain("handleRequest");
  });
});
