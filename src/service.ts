/**
 * Composition root: starts the infrastructure and the roles the process runs, each from its builder in
 * src/composition/ (the test harnesses build through the same ones), and stops them in reverse order.
 */
import type { Database } from "./adapters/db/client.ts";
import { DrizzleEventStore } from "./adapters/db/event-store.ts";
import { createHealthApp } from "./adapters/http/app.ts";
import type { TokenService } from "./app/auth.ts";
import { withFailpoints } from "./app/failpoints.ts";
import type { LeadershipState } from "./app/leadership.ts";
import { openApiRole } from "./composition/api-role.ts";
import { failpointHook } from "./composition/failpoint-hook.ts";
import { prepareHost, startInfrastructure } from "./composition/infrastructure.ts";
import { Lifecycle } from "./composition/lifecycle.ts";
import { startOpsListener, startPublicListener } from "./composition/listeners.ts";
import { createMetrics, createStatusSampler } from "./composition/observability.ts";
import { readinessCheck } from "./composition/readiness.ts";
import { startSequencerRole } from "./composition/sequencer-role.ts";
import type { Config, Role } from "./config.ts";
import type { Logger } from "./logger.ts";
import { createTokenService } from "./runtime/auth-keys.ts";

export { provisionBroker } from "./composition/infrastructure.ts";

export type RunningService = {
  /** Base URL of the HTTP server (the API, or just /healthz and /readyz for the sequencer role). */
  url: string;
  /** Base URL of the ops listener: /metrics, /readyz with details, /healthz. */
  opsUrl: string;
  natsUrl: string;
  /** The embedded server's WebSocket URL, when this process started one. */
  natsWsUrl: string | undefined;
  database: Database;
  tokens: TokenService | undefined;
  /** Whether this process currently holds the writer lock, and its sequencer while it does. */
  leadership: LeadershipState;
  stop(): Promise<void>;
};

export async function startService(config: Config, role: Role, log: Logger): Promise<RunningService> {
  const serveApi = role === "all" || role === "api";
  const runSequencer = role === "all" || role === "sequencer";
  const host = prepareHost(config);
  // Before anything is started: a weak or empty AUTH_SECRET (or a bad AUTH_JWKS file) stops start-up at once.
  const tokens = serveApi ? createTokenService(config) : undefined;
  const lifecycle = new Lifecycle(log);
  try {
    const infra = await startInfrastructure(config, role, host, log, lifecycle);
    const { database } = infra;
    // The log's reads on the shared pool (the sequencer writes through its writer lease's session).
    const store = new DrizzleEventStore(database.db);
    const leadership: LeadershipState = { leader: false, term: undefined };
    const metrics = createMetrics(infra.info, store, runSequencer ? leadership : undefined);

    const sequencer =
      runSequencer && infra.sequencer
        ? startSequencerRole({
            config,
            connection: infra.sequencer,
            database,
            metrics,
            leadership,
            log,
            // FAILPOINT (tests only): each term's ports, decorated to stop the process at a named point of a batch.
            wrap: (ports) => {
              const hook = failpointHook(config, log.child({ component: "sequencer" }));
              return hook ? withFailpoints(ports, hook) : ports;
            },
          })
        : undefined;
    if (sequencer) lifecycle.onStop("the sequencer", () => sequencer.stop());

    const api =
      tokens && infra.api
        ? await openApiRole({ config, connection: infra.api, tokens, store, metrics, log })
        : undefined;
    if (api) lifecycle.onStop("the worker id lease", () => api.stop());

    const readiness = readinessCheck({ natsUp: infra.natsUp, database, api, sequencer });
    const httpLog = log.child({ component: "http" });
    // The API role serves everything; the sequencer-only role serves just /healthz and /readyz.
    const app = api ? api.app(readiness) : createHealthApp(readiness, metrics, httpLog);
    const status = createStatusSampler({
      info: infra.info,
      store,
      database: database.db,
      readiness,
      metrics,
      serveApi,
      sequencer,
      log: httpLog,
    });
    const opsUrl = startOpsListener({ readiness, metrics, status, log: httpLog }, config, lifecycle);
    const url = startPublicListener(app, config, metrics, lifecycle);

    return {
      url,
      opsUrl,
      natsUrl: infra.natsUrl,
      natsWsUrl: infra.embedded?.wsUrl,
      database,
      tokens,
      leadership,
      stop: () => lifecycle.stop(),
    };
  } catch (error) {
    // Whatever came up is stopped again: a failed start leaves no child process or open connection behind.
    await lifecycle.stop();
    throw error;
  }
}
