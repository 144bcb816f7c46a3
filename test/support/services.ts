/**
 * The real backing services for tests (throwaway nats-server and PostgreSQL on loopback). The
 * implementation lives in tools/services/local-services.ts, shared with the benchmark (`npm run bench`).
 */
import { postgresKind } from "../../tools/services/local-services.ts";

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
