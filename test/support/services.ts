/**
 * The real backing services for tests (throwaway nats-server and PostgreSQL on loopback). The
 * implementation lives in src/runtime/local-services.ts, shared with the benchmark (`sequencer bench`).
 */
export {
  freePort,
  getPostgres,
  type NatsServerHandle,
  type PostgresHandle,
  startNats,
} from "../../src/runtime/local-services.ts";
