/**
 * The one place that knows how HTTP is served on each runtime. Handlers are web-standard (Request → Response),
 * so the same Elysia app runs on Bun (its native listener) and on Deno (Deno.serve with the app's fetch).
 */
import { setClientIp } from "../adapters/http/client-ip.ts";
import { errorResponse } from "../adapters/http/errors.ts";

export type ServeOptions = {
  port: number;
  hostname: string;
  /**
   * Bun only: the size over which Bun itself answers 413, with an empty body and before the app sees the
   * request. Leave it unset to let the app answer every oversized body as JSON (it refuses a declared length
   * from the headers and stops reading a chunked body past its limit, so nothing large is ever buffered).
   */
  maxRequestBodySize?: number;
  /**
   * Most requests in progress at once (MAX_IN_FLIGHT); beyond, 503 JSON + Retry-After: 1 at once, except for
   * /healthz, /readyz and /metrics. 0 or unset: no cap.
   */
  maxInFlight?: number;
  /** Told of each request refused by maxInFlight. */
  onOverload?: () => void;
  /**
   * Bun only: seconds a connection may stay silent before Bun closes it (Bun's default: 10). Keep it above
   * BODY_TIMEOUT, so that a stalled body gets the app's JSON 408 rather than a bare close.
   */
  idleTimeoutSeconds?: number;
};
export type HttpServer = { port: number; stop(): Promise<void> };

type ElysiaLike = {
  fetch: (request: Request) => Response | Promise<Response>;
};

type DenoServe = (
  options: { port: number; hostname: string; onListen?: (addr: { port: number }) => void },
  handler: (request: Request, info: { remoteAddr: { hostname: string } }) => Response | Promise<Response>,
) => { addr: { port: number }; shutdown(): Promise<void> };

type BunServe = (options: {
  port: number;
  hostname: string;
  maxRequestBodySize: number;
  development: boolean;
  idleTimeout?: number;
  fetch: (
    request: Request,
    server: { requestIP(request: Request): { address: string } | null },
  ) => Response | Promise<Response>;
}) => { port?: number; stop(closeActiveConnections?: boolean): Promise<void> | void };

/** Bun's cap when none is given: far above any body limit (the app refuses by itself; see maxRequestBodySize). */
const UNCAPPED_BODY = 2 ** 40;

const EXEMPT = /^https?:\/\/[^/]*\/(healthz|readyz|metrics)(\?|$)/;

/**
 * The app's fetch, with each request's peer address recorded (client-ip.ts) and the in-flight cap. Refusing at
 * accept is not possible (neither runtime exposes the accept loop), and a JSON 503 with Retry-After tells a
 * client to back off where a reset connection would only be retried at once.
 */
function handler(app: ElysiaLike, options: ServeOptions) {
  const max = options.maxInFlight ?? 0;
  let inFlight = 0;
  const done = () => {
    inFlight--;
  };
  return (request: Request, address: string | undefined): Response | Promise<Response> => {
    setClientIp(request, address);
    if (max > 0 && inFlight >= max && !EXEMPT.test(request.url)) {
      options.onOverload?.();
      return errorResponse(503, "OVERLOADED", "too many requests in progress; retry shortly", undefined, {
        "retry-after": "1",
      });
    }
    inFlight++;
    let answer: Response | Promise<Response>;
    try {
      answer = app.fetch(request);
    } catch (error) {
      inFlight--;
      throw error;
    }
    if (answer instanceof Promise) return answer.finally(done);
    inFlight--;
    return answer;
  };
}

export const runtimeName: "bun" | "deno" | "other" =
  typeof (globalThis as { Bun?: unknown }).Bun !== "undefined"
    ? "bun"
    : typeof (globalThis as { Deno?: unknown }).Deno !== "undefined"
      ? "deno"
      : "other";

export function serveHttp(app: ElysiaLike, options: ServeOptions): HttpServer {
  if (runtimeName === "deno") {
    const deno = (globalThis as unknown as { Deno: { serve: DenoServe } }).Deno;
    // Deno has no request-size cap in serve(); the app's own parser enforces BODY_LIMIT_BYTES.
    const handle = handler(app, options);
    const server = deno.serve(
      { port: options.port, hostname: options.hostname, onListen: () => {} },
      (request, info) => handle(request, info.remoteAddr.hostname),
    );
    return { port: server.addr.port, stop: () => server.shutdown() };
  }
  // Bun.serve with the app's fetch (what Elysia's listen does), so that each request's peer address is known.
  const handle = handler(app, options);
  const bun = (globalThis as unknown as { Bun: { serve: BunServe } }).Bun;
  const server = bun.serve({
    port: options.port,
    hostname: options.hostname,
    maxRequestBodySize: options.maxRequestBodySize ?? UNCAPPED_BODY,
    development: false,
    ...(options.idleTimeoutSeconds === undefined ? {} : { idleTimeout: options.idleTimeoutSeconds }),
    fetch: (request, srv) => handle(request, srv.requestIP(request)?.address),
  });
  const port = server.port;
  if (port === undefined) throw new Error("HTTP server did not start");
  return {
    port,
    stop: async () => {
      await server.stop();
    },
  };
}
