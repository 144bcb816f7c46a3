/**
 * The real backing services for tests (throwaway nats-server and PostgreSQL on loopback). The
 * implementation lives in tools/services/local-services.ts, shared with the benchmark (`npm run bench`).
 */
import { jetstreamManager } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { ensureTopology } from "../../src/adapters/nats/topology.ts";
import { type NatsServerHandle, postgresKind, startNats } from "../../tools/services/local-services.ts";

export {
  freePort,
  getPostgres,
  type NatsServerHandle,
  type PostgresHandle,
  startNats,
} from "../../tools/services/local-services.ts";

/**
 * True where PostgreSQL could not be had and getPostgres() serves PGlite (test/support/preload.ts says so once).
 * For `describe.skipIf(onPglite)` on tests that need a real server: per-connection sessions (advisory-lock fencing,
 * killed backends) or many processes restarting against it.
 */
export const onPglite = postgresKind() === "pglite";

/**
 * A throwaway nats-server with the service's streams and consumer (duplicate window 2 min, ack wait 30 s unless
 * given) and a plain connection to it, for tests of one NATS adapter; `stop` closes both.
 */
export async function startNatsWithTopology(options: { ackWaitMs?: number } = {}): Promise<{
  nats: NatsServerHandle;
  nc: NatsConnection;
  stop(): Promise<void>;
}> {
  const nats = await startNats();
  const nc = await connect({ servers: nats.url });
  await ensureTopology(await jetstreamManager(nc), {
    duplicateWindowMs: 120_000,
    ackWaitMs: options.ackWaitMs ?? 30_000,
    maxAckPending: 1_000,
  });
  return {
    nats,
    nc,
    stop: async () => {
      await nc.close();
      await nats.stop();
    },
  };
}
