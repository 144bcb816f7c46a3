/**
 * The real backing services for tests (throwaway nats-server and PostgreSQL on loopback). The
 * implementation lives in src/runtime/local-services.ts, shared with the benchmark (`sequencer bench`).
 */
import { postgresKind } from "../../src/runtime/local-services.ts";

export {
  freePort,
  getPostgres,
  type NatsServerHandle,
  type PostgresHandle,
  startNats,
} from "../../src/runtime/local-services.ts";

/**
 * True where PostgreSQL could not be had and getPostgres() serves PGlite (test/support/preload.ts says so once).
 * For `describe.skipIf(onPglite)` on tests that need a real server: per-connection sessions (advisory-lock fencing,
 * killed backends) or many processes restarting against it.
 */
export const onPglite = postgresKind() === "pglite";
