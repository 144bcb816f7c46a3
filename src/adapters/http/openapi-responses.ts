/**
 * The documented side of the API contract that the routes' validation schemas do not carry: who may call each
 * route, the shapes of answers the handlers build as raw JSON (the sequenced events), and every error answer.
 * Routes declare theirs with `documented()` in their `detail`; openapi-contract.ts adds what the app-wide hooks
 * can answer on every route and puts the shared components into the document.
 */
import type { DocumentDecoration } from "elysia";
import { EVENT_FIELDS, type EventType } from "../../domain/events.ts";
import type { DecimalRule } from "../../domain/money.ts";
import { ERROR_CODES, type ErrorStatus } from "./errors.ts";

/** Who may call a route; `x-required-role` in the document. */
export type Access = "none" | "any-token" | "reader-or-admin" | "admin";

const ACCESS_TEXT: Record<Access, string> = {
  none: "No token needed.",
  "any-token": "Any valid bearer token; the request acts for the token's user (its `sub`).",
  "reader-or-admin": "A bearer token with role `reader` or `admin`; any other valid token is answered 403.",
  admin: "A bearer token with role `admin`; any other valid token is answered 403.",
};

/**
 * OpenAPI 3.1 lets a non-OAuth security requirement list the roles it needs; alternatives are separate
 * requirements. `[]` (no requirement) marks a route that needs no token.
 */
const SECURITY: Record<Access, Record<string, string[]>[]> = {
  none: [],
  "any-token": [{ bearer: [] }],
  "reader-or-admin": [{ bearer: ["reader"] }, { bearer: ["admin"] }],
  admin: [{ bearer: ["admin"] }],
};

const ref = (kind: "schemas" | "responses", name: string) => ({ $ref: `#/components/${kind}/${name}` });

/** The name of each error status's shared response (components.responses). */
const ERROR_RESPONSE_NAMES: Record<ErrorStatus, string> = {
  400: "BadRequest",
  401: "Unauthenticated",
  403: "Forbidden",
  404: "NotFound",
  408: "RequestTimeout",
  409: "Conflict",
  413: "PayloadTooLarge",
  415: "UnsupportedMediaType",
  429: "RateLimited",
  500: "Internal",
  503: "Unavailable",
};

const ERROR_DESCRIPTIONS: Record<ErrorStatus, string> = {
  400: "The request is malformed: a field or parameter fails validation (INVALID_INPUT, `field` names it), the body is not JSON, is nested too deep or repeats a key (INVALID_JSON), a query parameter is unknown or repeated, or a body was sent to a route that takes none.",
  401: "No token, or the token is invalid or expired.",
  403: "The token is valid but lacks the role this route needs.",
  404: "Nothing by that id that this token may see (an event of another user answers the same as an unknown id).",
  408: "The body did not arrive within the deadline (BODY_TIMEOUT); the connection is closed.",
  409: "The Idempotency-Key was used for a different request (CONFLICT), or its stored record cannot be used (IDEMPOTENCY_KEY_UNUSABLE: retry with a new key).",
  413: "The body is larger than the limit (BODY_LIMIT_BYTES); the connection is closed.",
  415: "A body was sent with a content type other than application/json.",
  429: "Too many requests: this user's write limit (RATE_LIMIT), or too many failed authentications from this address (AUTH_FAILURE_LIMIT). Retry after Retry-After seconds.",
  500: "A bug: nothing about the request is revealed.",
  503: "A dependency (NATS, the database, the token key set) cannot take the request now; nothing was accepted. Retry after Retry-After seconds (an Idempotency-Key makes the retry safe).",
};

const RETRY_AFTER = {
  "Retry-After": {
    description: "Whole seconds to wait before retrying.",
    required: true,
    schema: { type: "integer", minimum: 1 },
  },
};

const ERROR_HEADERS: Partial<Record<ErrorStatus, Record<string, unknown>>> = {
  401: {
    "WWW-Authenticate": {
      description: "The scheme to authenticate with.",
      required: true,
      schema: { type: "string", const: "Bearer" },
    },
  },
  429: RETRY_AFTER,
  503: RETRY_AFTER,
};

/** `{"error":{"code","message","field"?}}` with the codes a status can carry (errors.ts). */
function errorSchema(codes: readonly string[]) {
  return {
    type: "object",
    required: ["error"],
    additionalProperties: false,
    properties: {
      error: {
        type: "object",
        required: ["code", "message"],
        additionalProperties: false,
        properties: {
          code: { type: "string", enum: [...codes] },
          message: { type: "string", description: "What went wrong, for a person to read." },
          field: {
            type: "string",
            description: "The body field, parameter or header at fault, when there is one.",
          },
        },
      },
    },
  };
}

function errorResponses(): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, codes] of Object.entries(ERROR_CODES)) {
    const status = Number(key) as ErrorStatus;
    const headers = ERROR_HEADERS[status];
    out[ERROR_RESPONSE_NAMES[status]] = {
      description: ERROR_DESCRIPTIONS[status],
      ...(headers ? { headers } : {}),
      content: { "application/json": { schema: errorSchema(codes) } },
    };
  }
  return out;
}

/** The reference to an error status's shared response. */
export function errorResponseRef(status: ErrorStatus) {
  return ref("responses", ERROR_RESPONSE_NAMES[status]);
}

const ID = {
  type: "string",
  pattern: "^[1-9][0-9]{0,18}$",
  description: "A positive 64-bit integer as a decimal string.",
};

/** The canonical form the log stores a decimal in (no trailing fraction zeros), within its rule's bounds. */
function storedDecimal(rule: DecimalRule) {
  return {
    type: "string",
    pattern: `^(0|[1-9][0-9]{0,${rule.maxIntegerDigits - 1}})(\\.[0-9]{0,${rule.maxScale - 1}}[1-9])?$`,
    description: `A positive decimal string, at most ${rule.maxIntegerDigits} digits before and ${rule.maxScale} after the point.`,
  };
}

const EVENT_SCHEMA_NAMES: Record<EventType, string> = {
  CREATE_ORDER: "CreateOrderEvent",
  CANCEL_ORDER: "CancelOrderEvent",
  DEPOSIT: "DepositEvent",
  TRANSFER: "TransferEvent",
};

/** A sequenced event as stored and published on TRADING (encodeSequencedEvent), built from EVENT_FIELDS. */
function sequencedEventSchema(type: EventType) {
  const own: Record<string, unknown> = {};
  for (const [name, kind] of EVENT_FIELDS[type]) {
    own[name] =
      kind === "id"
        ? ID
        : kind === "direction"
          ? { type: "string", enum: ["BUY", "SELL"] }
          : storedDecimal(kind.decimal);
  }
  const properties = {
    sequenceId: { ...ID, description: "Its place in the log: 1, 2, 3, … without gaps." },
    previousId: { type: "string", pattern: "^(0|[1-9][0-9]{0,18})$", description: "sequenceId − 1." },
    referenceId: { ...ID, description: "The referenceId the request was answered with." },
    type: { type: "string", const: type },
    createdAt: { type: "string", format: "date-time", description: "When the API accepted the request." },
    sequencedAt: { type: "string", format: "date-time", description: "When the sequencer stored it." },
    ...own,
  };
  return { type: "object", required: Object.keys(properties), additionalProperties: false, properties };
}

function eventSchemas(): Record<string, unknown> {
  const types = Object.keys(EVENT_FIELDS) as EventType[];
  const out: Record<string, unknown> = {};
  for (const type of types) out[EVENT_SCHEMA_NAMES[type]] = sequencedEventSchema(type);
  out.SequencedEvent = {
    description: "One event of the sequenced log, as stored and as published on TRADING.",
    oneOf: types.map((type) => ref("schemas", EVENT_SCHEMA_NAMES[type])),
    discriminator: {
      propertyName: "type",
      mapping: Object.fromEntries(
        types.map((type) => [type, `#/components/schemas/${EVENT_SCHEMA_NAMES[type]}`]),
      ),
    },
  };
  out.EventPage = {
    type: "object",
    required: ["events", "next"],
    additionalProperties: false,
    properties: {
      events: { type: "array", items: ref("schemas", "SequencedEvent") },
      next: {
        description:
          "The last sequenceId of this page, to pass as `after` for the next one; null when empty.",
        oneOf: [{ type: "string", pattern: "^[1-9][0-9]{0,18}$" }, { type: "null" }],
      },
    },
  };
  out.Pending = {
    type: "object",
    required: ["status"],
    additionalProperties: false,
    properties: { status: { type: "string", const: "pending" } },
    description: "Accepted, on the intake stream, not sequenced yet.",
  };
  return out;
}

/** References for the routes' declarations. */
export const schemaRef = {
  event: ref("schemas", "SequencedEvent"),
  eventPage: ref("schemas", "EventPage"),
  pending: ref("schemas", "Pending"),
};

/** What openapi-contract.ts puts into components (beside the security scheme). */
export function contractComponents() {
  return { schemas: eventSchemas(), responses: errorResponses() };
}

/** A status answer of the health routes: `{"status": <one of values>}`. */
export function statusSchema(...values: string[]) {
  return {
    type: "object",
    required: ["status"],
    additionalProperties: false,
    properties: { status: { type: "string", enum: values } },
  };
}

type Success = { description: string; schema: unknown };

export type RouteDocs = {
  summary: string;
  description?: string;
  tags: string[];
  access: Access;
  /** Answers the handler builds itself (not under the route's `response` schema), by status. */
  answers?: Record<number, Success>;
  /** The error statuses the route's own code can answer; the app-wide ones are added by openapi-contract.ts. */
  errors: ErrorStatus[];
};

/**
 * A route's `detail`: its summary and description (with who may call it), tags, security and `x-required-role`,
 * and its responses.
 */
export function documented(docs: RouteDocs): DocumentDecoration {
  const responses: Record<string, unknown> = {};
  for (const [status, answer] of Object.entries(docs.answers ?? {})) {
    responses[status] = {
      description: answer.description,
      content: { "application/json": { schema: answer.schema } },
    };
  }
  for (const status of docs.errors) responses[status] = errorResponseRef(status);
  const detail = {
    summary: docs.summary,
    description: [docs.description, `Who may call it: ${ACCESS_TEXT[docs.access]}`]
      .filter(Boolean)
      .join("\n\n"),
    tags: docs.tags,
    security: SECURITY[docs.access],
    "x-required-role": docs.access,
    responses,
  };
  // The extension key and the plain-JSON response objects are beyond Elysia's OperationObject type.
  return detail as unknown as DocumentDecoration;
}

/** The access a route declared with documented(), read back from its `detail`. */
export function accessOf(detail: unknown): Access | undefined {
  const value = (detail as Record<string, unknown> | undefined)?.["x-required-role"];
  return typeof value === "string" && value in ACCESS_TEXT ? (value as Access) : undefined;
}
