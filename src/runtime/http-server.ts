/**
 * The one place that knows how HTTP is served on each runtime. Handlers are web-standard (Request → Response),
 * so the same Elysia app runs on Bun (its native listener) and on Deno (Deno.serve with the app's fetch).
 */
export type ServeOptions = { port: number; hostname: string; maxRequestBodySize: number };
export type HttpServer = { port: number; stop(): Promise<void> };

type ElysiaLike = {
  fetch: (request: Request) => Response | Promise<Response>;
  listen(options: { port: number; hostname: string; maxRequestBodySize: number }): unknown;
  server: { port?: number } | null;
  stop(): Promise<unknown>;
};

type DenoServe = (
  options: { port: number; hostname: string; onListen?: (addr: { port: number }) => void },
  handler: (request: Request) => Response | Promise<Response>,
) => { addr: { port: number }; shutdown(): Promise<void> };

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
    const server = deno.serve(
      { port: options.port, hostname: options.hostname, onListen: () => {} },
      (request) => app.fetch(request),
    );
    return { port: server.addr.port, stop: () => server.shutdown() };
  }
  app.listen(options);
  const port = app.server?.port;
  if (port === undefined) throw new Error("HTTP server did not start");
  return {
    port,
    stop: async () => {
      await app.stop();
    },
  };
}
