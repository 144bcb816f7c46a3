/**
 * Composition root: builds the adapters for the requested role, wires them into the use cases, starts them,
 * and stops them in reverse order. The only file that knows every concrete class.
 */
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { type Database, openDatabase } from "./adapters/db/client.ts";
import { DrizzleEventStore } from "./adapters/db/event-store.ts";
import { createHttpApp } from "./adapters/http/app.ts";
import type { ReadinessCheck } from "./adapters/http/ops.ts";
import { JetStreamIntakeSource } from "./adapters/nats/intake-consumer.ts";
import { JetStreamIntakePublisher } from "./adapters/nats/intake-publisher.ts";
import { ensureTopology } from "./adapters/nats/topology.ts";
import { JetStreamTradingLog } from "./adapters/nats/trading-publisher.ts";
import { TokenService } from "./app/auth.ts";
import { backoffDelay, sleep } from "./app/backoff.ts";
import { OrderIntake } from "./app/intake.ts";
import { Sequencer } from "./app/sequencer.ts";
import type { Config, Role } from "./config.ts";
import { SnowflakeGenerator } from "./domain/ids.ts";
import type { Logger } from "./logger.ts";
import { resolveAuthSecret } from "./runtime/auth-secret.ts";
import { type EmbeddedNats, startEmbeddedNats } from "./runtime/embedded-nats.ts";

export type RunningService = {
  /** Base URL of the HTTP API, when this role serves it. */
  url: string | undefined;
  natsUrl: string;
  database: Database;
  tokens: TokenService | undefined;
  sequencer: Sequencer | undefined;
  stop(): Promise<void>;
};

/** Start-up steps against dependencies that may still be coming up are retried with backoff, not fatal. */
async function withRetry<T>(log: Logger, what: string, step: () => Promise<T>, attempts = 20): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await step();
    } catch (error) {
      if (attempt + 1 >= attempts) throw error;
      const delayMs = backoffDelay(attempt, 200, 3_000);
      log.warn(`${what} failed; retrying`, { attempt, delayMs, error });
      await sleep(delayMs);
    }
  }
}

function trackConnection(nc: NatsConnection, log: Logger): () => boolean {
  let connected = true;
  (async () => {
    for await (const status of nc.status()) {
      if (status.type === "disconnect") connected = false;
      if (status.type === "reconnect") connected = true;
      if (status.type === "disconnect" || status.type === "reconnect") log.warn(`nats ${status.type}`);
    }
  })().catch((error) => log.error("nats status watcher stopped", { error }));
  return () => connected && !nc.isClosed();
}

export async function startService(config: Config, role: Role, log: Logger): Promise<RunningService> {
  const serveApi = role === "all" || role === "api";
  const runSequencer = role === "all" || role === "sequencer";
  const tokens = serveApi ? new TokenService(resolveAuthSecret(config)) : undefined;

  const embedded: EmbeddedNats | undefined = config.natsUrl
    ? undefined
    : await startEmbeddedNats(config.dataDir);
  const natsUrl = config.natsUrl ?? embedded?.url ?? "";
  const nc = await connect({
    servers: natsUrl,
    name: `sequencer-${role}-${config.workerId}`,
    waitOnFirstConnect: true,
    maxReconnectAttempts: -1,
    reconnectTimeWait: 500,
  });
  const natsUp = trackConnection(nc, log);
  const jsm = await jetstreamManager(nc);
  const js = jetstream(nc);
  await withRetry(log, "JetStream provisioning", () =>
    ensureTopology(jsm, {
      duplicateWindowMs: config.duplicateWindowMs,
      ackWaitMs: config.ackWaitMs,
      maxAckPending: config.maxAckPending,
    }),
  );

  const database = await openDatabase({ url: config.databaseUrl, pgliteDir: `${config.dataDir}/pg` });
  await withRetry(log, "database migration", () => database.migrate());
  const store = new DrizzleEventStore(database.db);

  const abort = new AbortController();
  let sequencer: Sequencer | undefined;
  let sequencerDone: Promise<void> = Promise.resolve();
  let source: JetStreamIntakeSource | undefined;
  if (runSequencer) {
    source = await withRetry(log, "intake consumer", () =>
      JetStreamIntakeSource.open(js, config.batchSize * 2),
    );
    const trading = new JetStreamTradingLog(js, jsm, config.publishTimeoutMs);
    sequencer = new Sequencer(
      source,
      store,
      trading,
      { batchSize: config.batchSize, fetchWaitMs: config.fetchWaitMs, catchUpPageSize: 1000 },
      log.child({ component: "sequencer" }),
    );
    sequencerDone = sequencer.run(abort.signal);
  }

  const readiness: ReadinessCheck = async () => {
    const checks: Record<string, { ok: boolean; detail?: string }> = { nats: { ok: natsUp() } };
    try {
      await database.ping();
      checks.database = { ok: true };
    } catch (error) {
      checks.database = { ok: false, detail: error instanceof Error ? error.message : String(error) };
    }
    if (sequencer) {
      const status = sequencer.status();
      checks.sequencer = { ok: status.tradingInSync, detail: status.lastError ?? `head ${status.head}` };
    }
    return checks;
  };

  let url: string | undefined;
  let stopHttp: () => Promise<void> = async () => {};
  if (serveApi && tokens) {
    const intake = new OrderIntake(
      new SnowflakeGenerator(config.workerId),
      new JetStreamIntakePublisher(js, config.publishTimeoutMs, natsUp),
    );
    const app = createHttpApp({
      intake,
      tokens,
      store,
      readiness,
      bodyLimitBytes: config.bodyLimitBytes,
      log: log.child({ component: "http" }),
    });
    // Bun's own cap sits well above the app's limit: the app answers 413 as JSON; Bun only cuts off abuse.
    app.listen({
      port: config.port,
      hostname: config.host,
      maxRequestBodySize: config.bodyLimitBytes * 4 + 65_536,
    });
    const server = app.server;
    if (!server) throw new Error("HTTP server did not start");
    url = `http://${config.host}:${server.port}`;
    stopHttp = async () => {
      await app.stop();
    };
  }

  let stopping: Promise<void> | undefined;
  const stop = () => {
    stopping ??= (async () => {
      await stopHttp(); // no new requests
      abort.abort(); // the sequencer finishes its step; an unacked batch is redelivered to the next one
      await sequencerDone;
      await source?.close();
      await nc.drain().catch((error) => log.warn("nats drain failed", { error }));
      await database.close().catch((error) => log.warn("database close failed", { error }));
      await embedded?.stop();
    })();
    return stopping;
  };

  return { url, natsUrl, database, tokens, sequencer, stop };
}
