/**
 * The sequencer role: the writer lease, and while this process holds it a Sequencer over the intake consumer, the
 * event store on the lease's fenced writer session (the duplicate filter reads on the shared pool) and TRADING.
 * A standby holds no intake consumer. Production (src/service.ts) and the integration tests
 * (test/support/stack.ts) both build it here, so the tests run the writer-session pipelining they check.
 */
import { hostname } from "node:os";
import type { Database } from "../adapters/db/client.ts";
import { DrizzleEventStore } from "../adapters/db/event-store.ts";
import {
  type DatabaseWriterLease,
  InProcessWriterLease,
  PostgresWriterLease,
} from "../adapters/db/writer-lease.ts";
import type { Metrics } from "../adapters/metrics.ts";
import { JetStreamIntakeSource } from "../adapters/nats/intake-consumer.ts";
import { JetStreamTradingLog } from "../adapters/nats/trading-publisher.ts";
import { type LeadershipState, type LeaderTerm, runWhileLeader } from "../app/leadership.ts";
import { Sequencer, type SequencerPorts } from "../app/sequencer.ts";
import type { Config } from "../config.ts";
import type { Logger } from "../logger.ts";
import type { RoleConnection } from "./infrastructure.ts";

/** What the sequencer role reads from the configuration. */
export type SequencerConfig = Pick<
  Config,
  | "databaseUrl"
  | "batchSize"
  | "maxBatchSize"
  | "fetchWaitMs"
  | "intakePrefetch"
  | "pullExpiresMs"
  | "catchUpPageSize"
  | "keepAliveMs"
  | "publishTimeoutMs"
  | "writerLeaseTtlMs"
  | "writerLeasePollMs"
  | "writerLeaseHeartbeatMs"
  | "statementTimeoutMs"
>;

/** The adapters a term's Sequencer works on. */
export type SequencerAdapters = Omit<SequencerPorts, "observer">;

export type SequencerRoleDeps = {
  config: SequencerConfig;
  /** The sequencer role's own NATS connection. */
  connection: Pick<RoleConnection, "nc" | "js" | "jsm">;
  /** The shared pool: the duplicate filter's reads, and the embedded database's single writer. */
  database: Database;
  metrics: Metrics;
  /** Filled in as terms start and end (readiness, metrics, the status page read it). */
  leadership: LeadershipState;
  log: Logger;
  /**
   * Decorates each term's adapters before the Sequencer gets them (fault injection: FAILPOINT in production, a
   * failing TRADING in the tests). Called once per term, with the real ones.
   */
  wrap?: ((real: SequencerAdapters) => SequencerAdapters) | undefined;
};

export type SequencerRole = {
  lease: DatabaseWriterLease;
  leadership: LeadershipState;
  /** Ends the current term (an unacked batch is handed back for the next writer) and gives the lease up. */
  stop(): Promise<void>;
};

/** PostgreSQL: a lease on the lock's own session, taken over from a writer that stops making progress. */
function writerLease(config: SequencerConfig, database: Database, log: Logger): DatabaseWriterLease {
  if (!config.databaseUrl) return new InProcessWriterLease(database.db);
  return new PostgresWriterLease(config.databaseUrl, log.child({ component: "writer-lock" }), {
    ttlMs: config.writerLeaseTtlMs,
    pollMs: config.writerLeasePollMs,
    heartbeatMs: config.writerLeaseHeartbeatMs,
    statementTimeoutMs: config.statementTimeoutMs,
    holder: `${hostname()}:${process.pid}`,
  });
}

/** Starts standing by for the writer lease; sequences while it holds it, until stop(). */
export function startSequencerRole(deps: SequencerRoleDeps): SequencerRole {
  const { config, connection, database, metrics, leadership, wrap = (real) => real } = deps;
  const log = deps.log.child({ component: "sequencer" });
  const lease = writerLease(config, database, deps.log);
  const trading = new JetStreamTradingLog(
    connection.nc,
    connection.js,
    connection.jsm,
    config.publishTimeoutMs,
  );
  const startTerm = async (): Promise<LeaderTerm> => {
    const source = await JetStreamIntakeSource.open(connection.js, config.intakePrefetch, {
      pullExpiresMs: config.pullExpiresMs,
      onRedelivered: () => metrics.redelivered(),
    });
    const adapters = wrap({
      source,
      // Writes on the writer's fenced session (a new one each term); the duplicate filter reads on the pool, so
      // that the next batch's filter runs while the current batch commits.
      store: new DrizzleEventStore(lease.db, lease.fence, database.db),
      trading,
    });
    const sequencer = new Sequencer(
      { ...adapters, observer: metrics },
      {
        batchSize: config.batchSize,
        maxBatchSize: config.maxBatchSize,
        fetchWaitMs: config.fetchWaitMs,
        catchUpPageSize: config.catchUpPageSize,
        keepAliveMs: config.keepAliveMs,
        alive: () => lease.alive(),
      },
      log,
    );
    return { sequencer, close: () => source.close() };
  };
  const abort = new AbortController();
  const done = runWhileLeader(lease, startTerm, abort.signal, log, leadership);
  let stopping: Promise<void> | undefined;
  return {
    lease,
    leadership,
    stop() {
      stopping ??= (async () => {
        abort.abort(); // the sequencer finishes its step; an unacked batch is handed back for the next one
        await done;
        await lease.close().catch((error) => deps.log.warn("writer lock close failed", { error }));
      })();
      return stopping;
    },
  };
}
