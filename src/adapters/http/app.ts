/**
 * The HTTP application: feature modules behind one error mapping and a request guard for content type and size.
 * It knows nothing about how its services are built (see src/service.ts).
 */
import { Elysia } from "elysia";
import type { TokenService } from "../../app/auth.ts";
import type { IntakeService } from "../../app/intake.ts";
import type { EventStore, IntakeLookup, UserEventReader } from "../../app/ports.ts";
import type { Logger } from "../../logger.ts";
import type { Metrics } from "../metrics.ts";
import { SecurityAudit } from "./audit.ts";
import { errorMapping, errorResponse, HttpError } from "./errors.ts";
import { eventsModule } from "./events.ts";
import { fundsModule } from "./funds.ts";
import { RequestGuard } from "./guard.ts";
import { checkQuery, noBodyAllowed, parseJsonText, type RouteShape, readBody, routeShapes } from "./input.ts";
import { openapiAssets } from "./openapi-assets.ts";
import { apiReference, type DocumentedRoute } from "./openapi-contract.ts";
import { opsModule, publicHealthModule, type ReadinessCheck } from "./ops.ts";
import { ordersModule } from "./orders.ts";
import type { Rate } from "./rate-limit.ts";
import { type StatusSampler, statusPageModule } from "./status-page.ts";

export type HttpDeps = {
  metrics: Metrics;
  intake: IntakeService;
  tokens: TokenService;
  store: Pick<EventStore, "readAfter" | "find"> & UserEventReader;
  pending: IntakeLookup;
  readiness: ReadinessCheck;
  bodyLimitBytes: number;
  log: Logger;
  /** Abuse limits (their defaults are the configuration's: RATE_LIMIT etc. in src/config.ts). */
  limits: HttpLimits;
};

export type HttpLimits = {
  /** Per user, on the write routes (RATE_LIMIT); null = off. */
  rateLimit: Rate | null;
  /** Failed authentications per client IP (AUTH_FAILURE_LIMIT); null = off. */
  authFailureLimit: Rate | null;
  /** How long a request body may take to arrive (BODY_TIMEOUT). */
  bodyTimeoutMs: number;
  /** The interval of the aggregated audit line of refused requests (AUDIT_INTERVAL). */
  auditIntervalMs: number;
};

/**
 * Answers 413/415 before any parsing when the headers already tell: a declared length over the limit, or a body
 * that is not JSON. Chunked bodies (no length) are measured as they are parsed (parseJsonBody).
 */
function guardBody(request: Request, limit: number): Response | undefined {
  const length = Number(request.headers.get("content-length") ?? "0");
  const hasBody = length > 0 || request.headers.has("transfer-encoding");
  if (!hasBody) return undefined;
  // Connection: close — the rest of the body is never read, so the connection cannot carry another request.
  if (length > limit)
    return errorResponse(413, "PAYLOAD_TOO_LARGE", `the body must be at most ${limit} bytes`, undefined, {
      connection: "close",
    });
  const type = request.headers.get("content-type") ?? "";
  if (!/^application\/json\s*(;|$)/i.test(type)) {
    return errorResponse(415, "UNSUPPORTED_MEDIA_TYPE", "the body must be application/json");
  }
  return undefined;
}

/**
 * The body of a request to `shape`'s route: read under the size limit and the deadline, refused when the route
 * takes none, scanned (depth, duplicate keys) and parsed. Chunked bodies (no length) are measured as they come.
 */
async function parseJsonBody(
  request: Request,
  shape: RouteShape | undefined,
  limit: number,
  timeoutMs: number,
): Promise<unknown> {
  // A route without a body schema takes no body: a declared one is refused unread.
  if (shape && !shape.body && Number(request.headers.get("content-length") ?? "0") > 0) throw noBodyAllowed();
  const bytes = await readBody(request, limit, timeoutMs);
  // No body: an empty object, so a route without a body works and a route with one names the missing fields.
  if (bytes.byteLength === 0) return {};
  if (shape && !shape.body) throw noBodyAllowed();
  const body = parseJsonText(new TextDecoder().decode(bytes));
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
    });
}

/** The Prometheus exposition: on the ops listener only. */
function metricsRoute(metrics: Metrics) {
  return new Elysia({ name: "metrics" }).get("/metrics", async ({ set }) => {
    set.headers["content-type"] = metrics.registry.contentType;
    return metrics.registry.metrics();
  });
}

export function createHttpApp(deps: HttpDeps) {
  const limits = deps.limits;
  const audit = new SecurityAudit(deps.log, limits.auditIntervalMs, (kind) => deps.metrics.refused(kind));
  const guard = new RequestGuard(limits, deps.metrics, audit);
  // What each route takes (query parameters, a body), read from the routes' schemas once they are all defined.
  let shapes: Map<string, RouteShape> | undefined;
  const shapeOf = (method: string, route: string) => {
    shapes ??= routeShapes(app.routes);
    return shapes.get(`${method} ${route}`);
  };
  // For the API contract, read when /openapi/json is first asked for (every route is defined by then).
  const allRoutes = (): readonly DocumentedRoute[] => app.routes;
  // normalize: false — unknown body fields are rejected, not silently stripped.
  const app = new Elysia({ normalize: false })
    .use(errorMapping(deps.log, (status, request) => guard.answered(status, request)))
    .use(requestMetrics(deps.metrics))
    .use(openapiAssets())
    .use(apiReference(allRoutes))
    .onRequest(({ request }) => {
      const refused = guardBody(request, deps.bodyLimitBytes);
      if (refused) deps.metrics.request("guard", request.method, refused.status, 0);
      return refused;
    })
    .onParse({ as: "global" }, ({ request, route }) =>
      parseJsonBody(request, shapeOf(request.method, route), deps.bodyLimitBytes, limits.bodyTimeoutMs),
    )
    // Before the routes' own hooks (authentication) and schema validation.
    .onTransform({ as: "global" }, ({ request, route }) => {
      guard.admitAddress(request, route);
      const shape = shapeOf(request.method, route);
      if (shape) checkQuery(request.url, shape);
    })
    .use(publicHealthModule(deps.readiness))
    .use(eventsModule(deps.store, deps.pending, deps.tokens, guard.reads))
    .use(ordersModule(deps.intake, deps.tokens, guard.writes))
    .use(fundsModule(deps.intake, deps.tokens, guard.writes));
  return app;
}

/** The public port of the sequencer-only role: health and a bare readiness, nothing else. */
export function createHealthApp(readiness: ReadinessCheck, metrics: Metrics, log: Logger) {
  return new Elysia().use(errorMapping(log)).use(requestMetrics(metrics)).use(publicHealthModule(readiness));
}

/**
 * The ops listener (OPS_HOST:OPS_PORT, loopback by default) of every role: /metrics, /readyz with each check's
 * detail, /healthz, and the live status page (/status, /status.json). Requests to it are not counted in the
 * request metrics (a scrape would count itself).
 */
export function createOpsApp(
  readiness: ReadinessCheck,
  metrics: Metrics,
  log: Logger,
  status: StatusSampler,
) {
  return new Elysia()
    .use(errorMapping(log))
    .use(metricsRoute(metrics))
    .use(opsModule(readiness))
    .use(statusPageModule(status));
}
