/**
 * The one place where failures become HTTP answers: `{"error":{"code","message","field"?}}` with a 4xx for
 * anything the client can fix, 503 + Retry-After for a dependency that is down, and a bare 500 for bugs.
 */
import { Elysia } from "elysia";
import { UnauthenticatedError } from "../../app/auth.ts";
import {
  ConflictError,
  ForbiddenError,
  IdempotencyRecordRejected,
  InvalidInputError,
  NotFoundError,
  UnavailableError,
} from "../../app/errors.ts";
import type { Logger } from "../../logger.ts";
import { isDatabaseUnavailable } from "../db/unavailable.ts";

/**
 * Every code an error answer carries, by status: the error schema of the API contract (openapi-responses.ts).
 * Documentation only; test/unit/error-codes.unit.test.ts checks it against the codes this folder answers with.
 */
export const ERROR_CODES = {
  400: ["INVALID_INPUT", "INVALID_JSON"],
  401: ["UNAUTHENTICATED"],
  403: ["FORBIDDEN"],
  404: ["NOT_FOUND"],
  408: ["REQUEST_TIMEOUT"],
  409: ["CONFLICT", "IDEMPOTENCY_KEY_UNUSABLE"],
  413: ["PAYLOAD_TOO_LARGE"],
  415: ["UNSUPPORTED_MEDIA_TYPE"],
  429: ["RATE_LIMITED"],
  500: ["INTERNAL"],
  503: ["UNAVAILABLE"],
} as const satisfies Record<number, readonly string[]>;

export type ErrorStatus = keyof typeof ERROR_CODES;

export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly field?: string,
    /** Extra answer headers, e.g. Retry-After on a 429, Connection: close on a 408/413. */
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

export function errorResponse(
  status: number,
  code: string,
  message: string,
  field?: string,
  headers: Record<string, string> = {},
): Response {
  return new Response(JSON.stringify({ error: field ? { code, message, field } : { code, message } }), {
    status,
    headers: { "content-type": "application/json", ...headers },
  });
}

/** "/price" → "price"; "" (the whole body) → undefined. */
function fieldOf(path: string | undefined): string | undefined {
  const field = path?.replace(/^\//, "").replaceAll("/", ".");
  return field ? field : undefined;
}

/** Told of every answer the mapping makes, with its request (the audit of 401, 403 and 429). */
export type AnswerObserver = (status: number, request: Request) => void;

export function errorMapping(log: Logger, observe?: AnswerObserver) {
  return new Elysia({ name: "error-mapping" }).onError({ as: "global" }, ({ code, error, set, request }) => {
    const response = ((): Response => {
      // Elysia wraps what a parse hook throws in a ParseError; the HttpError we threw is its cause.
      const own =
        error instanceof HttpError
          ? error
          : code === "PARSE" && error.cause instanceof HttpError
            ? error.cause
            : null;
      if (own) return errorResponse(own.status, own.code, own.message, own.field, own.headers);
      if (error instanceof InvalidInputError)
        return errorResponse(400, "INVALID_INPUT", error.message, error.field);
      if (error instanceof ForbiddenError) return errorResponse(403, "FORBIDDEN", error.message);
      if (error instanceof ConflictError)
        return errorResponse(409, "CONFLICT", error.message, "Idempotency-Key");
      if (error instanceof IdempotencyRecordRejected) {
        // A record planted in the bucket by someone other than this service, or corrupted: logged once, here, as
        // a security event. Only the fixed problem name and the stored event's type are logged, never the record.
        // 409: the key is in a state that contradicts the request, retrying with it cannot succeed, and a new
        // key can.
        log.warn("idempotency record rejected", {
          security: true,
          userId: error.userId,
          idempotencyKey: error.key,
          problem: error.problem,
          eventType: error.eventType,
        });
        return errorResponse(409, "IDEMPOTENCY_KEY_UNUSABLE", error.message, "Idempotency-Key");
      }
      if (error instanceof NotFoundError) return errorResponse(404, "NOT_FOUND", error.message);
      if (error instanceof UnauthenticatedError) {
        return errorResponse(401, "UNAUTHENTICATED", error.message, undefined, {
          "www-authenticate": "Bearer",
        });
      }
      if (error instanceof UnavailableError) {
        log.warn("dependency unavailable", { error: error.cause ?? error });
        return errorResponse(503, "UNAVAILABLE", error.message, undefined, {
          "retry-after": String(error.retryAfterSeconds),
        });
      }
      if (isDatabaseUnavailable(error)) {
        // A read that timed out or lost its connection: the database is the problem, not the request.
        log.warn("database unavailable", { error });
        return errorResponse(503, "UNAVAILABLE", "the database did not answer; retry later", undefined, {
          "retry-after": "1",
        });
      }
      switch (code) {
        case "VALIDATION": {
          const first = error.all[0];
          const path = first && "path" in first ? first.path : undefined;
          const field = fieldOf(path);
          const detail = first?.summary ?? first?.message ?? "invalid";
          const message = field
            ? `${field}: ${detail}`
            : `the request does not match the expected shape: ${detail}`;
          return errorResponse(400, "INVALID_INPUT", message, field);
        }
        case "PARSE":
          return errorResponse(400, "INVALID_JSON", "the request body is not valid JSON");
        case "NOT_FOUND":
          return errorResponse(404, "NOT_FOUND", "no such route");
        default:
          log.error("unhandled error", { code, error });
          return errorResponse(500, "INTERNAL", "internal error");
      }
    })();
    set.status = response.status; // so the request metrics see the status actually sent
    observe?.(response.status, request);
    return response;
  });
}
