/**
 * The two HTTP listeners: the public one (the API, or just /healthz and /readyz for the sequencer-only role) and
 * the ops listener (/metrics, /readyz with details, /healthz, /status), off the public port and loopback unless
 * OPS_HOST says otherwise.
 */
import { createOpsApp } from "../adapters/http/app.ts";
import type { ReadinessCheck } from "../adapters/http/ops.ts";
import type { StatusSampler } from "../adapters/http/status-page.ts";
import type { Metrics } from "../adapters/metrics.ts";
import type { Config } from "../config.ts";
import type { Logger } from "../logger.ts";
import { serveHttp } from "../runtime/http-server.ts";
import type { Lifecycle } from "./lifecycle.ts";

/** What serveHttp serves: an Elysia app (or anything with its `handle`). */
type ServedApp = Parameters<typeof serveHttp>[0];

export type ListenerConfig = Pick<
  Config,
  "port" | "host" | "maxInFlight" | "bodyTimeoutMs" | "opsPort" | "opsHost" | "opsBodyLimitBytes"
>;

/** Serves `app` on PORT; returns its base URL. */
export function startPublicListener(
  app: ServedApp,
  config: ListenerConfig,
  metrics: Metrics,
  lifecycle: Lifecycle,
): string {
  // No Bun body cap here: Bun's own 413 has an empty body; the app answers every oversized body as JSON itself,
  // from the declared length or after reading at most BODY_LIMIT_BYTES of a chunked one (http-server.ts).
  const server = serveHttp(app, {
    port: config.port,
    hostname: config.host,
    maxInFlight: config.maxInFlight,
    onOverload: () => metrics.overloaded(),
    // A little longer than a body may take to arrive, so that the app's 408 is sent before Bun drops the socket.
    idleTimeoutSeconds: Math.min(255, Math.ceil(config.bodyTimeoutMs / 1000) + 5),
  });
  lifecycle.onStop("the HTTP listener", () => server.stop());
  return `http://${config.host}:${server.port}`;
}

/** Serves the ops app on OPS_PORT; returns its base URL. */
export function startOpsListener(
  parts: { readiness: ReadinessCheck; metrics: Metrics; status: StatusSampler; log: Logger },
  config: ListenerConfig,
  lifecycle: Lifecycle,
): string {
  const server = serveHttp(createOpsApp(parts.readiness, parts.metrics, parts.log, parts.status), {
    port: config.opsPort,
    hostname: config.opsHost,
    maxRequestBodySize: config.opsBodyLimitBytes,
  });
  lifecycle.onStop("the ops listener", async () => {
    parts.status.stop();
    await server.stop();
  });
  return `http://${config.opsHost}:${server.port}`;
}
