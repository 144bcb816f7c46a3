/**
 * The HTTP application: feature modules behind one error mapping and a request guard for content type and size.
 * It knows nothing about how its services are built (see src/service.ts).
 */
import { openapi } from "@elysiajs/openapi";
import { Elysia } from "elysia";
import type { TokenService } from "../../app/auth.ts";
import type { IntakeService } from "../../app/intake.ts";
import type { Logger } from "../../logger.ts";
import type { EventStore } from "../db/event-store.ts";
import type { Metrics } from "../metrics.ts";
import type { IntakeLookup } from "../nats/intake-lookup.ts";
import { errorMapping, errorResponse, HttpError } from "./errors.ts";
import { eventsModule } from "./events.ts";
import { fundsModule } from "./funds.ts";
import { opsModule, type ReadinessCheck } from "./ops.ts";
import { ordersModule } from "./orders.ts";

export type HttpDeps = {
  metrics: Metrics;
  intake: IntakeService;
  tokens: TokenService;
  store: Pick<EventStore, "readAfter" | "find">;
  pending: IntakeLookup;
  readiness: ReadinessCheck;
  bodyLimitBytes: number;
  log: Logger;
};

/**
 * Answers 413/415 before any parsing when the headers already tell: a declared length over the limit, or a body
 * that is not JSON. Chunked bodies (no length) are measured as they are parsed (parseJsonBody).
 */
function guardBody(request: Request, limit: number): Response | undefined {
  const length = Number(request.headers.get("content-length") ?? "0");
  const hasBody = length > 0 || request.headers.has("transfer-encoding");
  if (!hasBody) return undefined;
  if (length > limit)
    return errorResponse(413, "PAYLOAD_TOO_LARGE", `the body must be at most ${limit} bytes`);
  const type = request.headers.get("content-type") ?? "";
  if (!/^application\/json\s*(;|$)/i.test(type)) {
    return errorResponse(415, "UNSUPPORTED_MEDIA_TYPE", "the body must be application/json");
  }
  return undefined;
}

/** JSON parsing under the size limit, for every body whatever its framing. */
async function parseJsonBody(request: Request, limit: number): Promise<unknown> {
  const bytes = await request.arrayBuffer();
  if (bytes.byteLength > limit) {
    throw new HttpError(413, "PAYLOAD_TOO_LARGE", `the body must be at most ${limit} bytes`);
  }
  // No body: an empty object, so a route without a body works and a route with one names the missing fields.
  if (bytes.byteLength === 0) return {};
  let body: unknown;
  try {
    body = JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    throw new HttpError(400, "INVALID_JSON", "the request body is not valid JSON");
  }
  refuseUnprintable(body);
  return body;
}

/**
 * Elysia 1.4 writes the offending value into a validation error's summary with a template literal. A JSON object
 * with a "toString" member (e.g. `{"quantity":{"toString":1}}`, also inside an array) cannot be turned into text,
 * so building that error throws and the request would end as a 500. No such value is valid in any of our bodies
 * (their fields are strings), so it is refused here, as a 400 naming the top-level field it came in.
 */
function refuseUnprintable(body: unknown): void {
  if (typeof body !== "object" || body === null) return;
  for (const [field, value] of Object.entries(body)) {
    if (hasToStringMember(value)) {
      throw new HttpError(
        400,
        "INVALID_INPUT",
        `${field}: not a valid value (an object with a "toString" member)`,
        field,
      );
    }
  }
}

function hasToStringMember(value: unknown): boolean {
  if (typeof value !== "object" || value === null) return false;
  if (Array.isArray(value)) return value.some(hasToStringMember);
  return Object.hasOwn(value, "toString") || Object.values(value).some(hasToStringMember);
}

/** Request counts and latency by route pattern (never by raw path: ids would explode the label set). */
function requestMetrics(metrics: Metrics) {
  const started = new WeakMap<Request, number>();
  return new Elysia({ name: "request-metrics" })
    .onRequest(({ request }) => {
      started.set(request, performance.now());
    })
    .onAfterResponse({ as: "global" }, ({ request, route, set, responseValue }) => {
      const status = responseValue instanceof Response ? responseValue.status : Number(set.status ?? 200);
      const seconds = (performance.now() - (started.get(request) ?? performance.now())) / 1000;
      metrics.request(route || "unmatched", request.method, status, seconds);
    })
    .get("/metrics", async ({ set }) => {
      set.headers["content-type"] = metrics.registry.contentType;
      return metrics.registry.metrics();
    });
}

export function createHttpApp(deps: HttpDeps) {
  // normalize: false — unknown body fields are rejected, not silently stripped.
  return new Elysia({ normalize: false })
    .use(errorMapping(deps.log))
    .use(requestMetrics(deps.metrics))
    .use(
      openapi({
        path: "/openapi",
        documentation: {
          info: {
            title: "Exactly-once order sequencer",
            version: "0.1.0",
            description:
              "Orders, cancels, deposits and transfers are accepted (202 after the JetStream PubAck), given a " +
              'gap-free sequenceId, stored and republished on TRADING. Errors: {"error":{"code","message","field"?}}.',
          },
          components: {
            securitySchemes: { bearer: { type: "http", scheme: "bearer", bearerFormat: "JWT" } },
          },
          security: [{ bearer: [] }],
        },
        exclude: { paths: ["/metrics"] },
      }),
    )
    .onRequest(({ request }) => {
      const refused = guardBody(request, deps.bodyLimitBytes);
      if (refused) deps.metrics.request("guard", request.method, refused.status, 0);
      return refused;
    })
    .onParse({ as: "global" }, ({ request }) => parseJsonBody(request, deps.bodyLimitBytes))
    .use(opsModule(deps.readiness))
    .use(eventsModule(deps.store, deps.pending))
    .use(ordersModule(deps.intake, deps.tokens))
    .use(fundsModule(deps.intake, deps.tokens));
}

/** For the sequencer-only role: health, readiness and metrics, nothing else. */
export function createOpsApp(readiness: ReadinessCheck, metrics: Metrics, log: Logger) {
  return new Elysia().use(errorMapping(log)).use(requestMetrics(metrics)).use(opsModule(readiness));
}
