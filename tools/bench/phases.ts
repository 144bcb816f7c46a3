/**
 * The measurements. Each one starts from empty streams and a fresh database, runs its subject as a child process
 * (the service CLI in one role, or a baseline), measures it from outside, and stops it.
 */
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type { JetStreamClient, JetStreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import postgres from "postgres";
import {
  ensureTopology,
  INTAKE_STREAM,
  SEQUENCER_CONSUMER,
  type TopologyOptions,
  TRADING_STREAM,
} from "../../src/adapters/nats/topology.ts";
import { topologyOptions } from "../../src/composition/infrastructure.ts";
import { loadConfig } from "../../src/config.ts";
import { encodeIntakeEvent } from "../../src/domain/events.ts";
import { SnowflakeGenerator } from "../../src/domain/ids.ts";
import { freePort } from "../services/local-services.ts";
import type { BenchUser, BrokerAuth } from "./broker.ts";
import { type CpuGroups, CpuMeter, type CpuReport, processCpuSeconds } from "./cpu.ts";
import { type Generator, type LoadResult, runClosedLoad, runOpenLoad, type Target } from "./loadgen/index.ts";
import type { BenchOptions } from "./options.ts";
import {
  type Child,
  exitedOk,
  logTail,
  peakRssMb,
  spawnBaseline,
  spawnService,
  stopChild,
  waitForQuiet,
  waitReady,
} from "./processes.ts";
import { type ProfileEntry, summarizeProfile } from "./profile.ts";
import type { Progress } from "./progress.ts";
import {
  e2eIntervalMs,
  type LatencyInterval,
  latencyIntervals,
  percentile,
  sortedCopy,
  wallMs,
} from "./stats.ts";

export type Ctx = {
  opts: BenchOptions;
  natsUrl: string;
  /** The users of the bench's own broker (broker.ts); undefined on NATS_URL (no authentication there). */
  natsAuth: BrokerAuth | undefined;
  /** nats-server's pid when the bench started it. */
  natsPid: number | undefined;
  nc: NatsConnection;
  js: JetStreamClient;
  jsm: JetStreamManager;
  newDatabase(): Promise<string>;
  logDir: string;
  dataDir: string;
  secret: string;
  /** One token per bench user (BENCH_USERS of them); the load generators go round them request by request. */
  tokens: string[];
  generator: Generator;
  progress: Progress;
  /** CPU readers for nats-server and PostgreSQL, when they run on this machine. */
  infraCpu: CpuGroups;
  /** The PostgreSQL postmaster, when it runs on this machine (the soak reads its tree's memory). */
  postmasterPid: number | undefined;
};

/** What the machine looked like just before a measurement (see waitForQuiet). */
export type Quiet = { waitedS: number; busyPct: number };

export async function quiet(ctx: Ctx): Promise<Quiet> {
  const q = await waitForQuiet(ctx.opts.quietBelowPct, 120_000);
  if (ctx.opts.quietBelowPct > 0 && q.busyPct >= ctx.opts.quietBelowPct) {
    ctx.progress.note(
      `machine still ${q.busyPct.toFixed(0)} % busy after ${q.waitedS.toFixed(0)} s; measuring anyway`,
    );
  }
  return q;
}

export function readProfile(profileDir: string): { file: string; top: ProfileEntry[] } {
  const file = readdirSync(profileDir).find((f) => f.endsWith(".cpuprofile"));
  if (!file) throw new Error(`no .cpuprofile written in ${profileDir}`);
  return { file: join(profileDir, file), top: summarizeProfile(join(profileDir, file), 20) };
}

/**
 * The topology the service's children expect, from the service's own config (src/config.ts: its defaults plus any
 * --service-env), so that the admin creates exactly what they check: on the bench's authenticated broker they may
 * not change it.
 */
export function topology(ctx: Pick<Ctx, "opts">): TopologyOptions {
  return topologyOptions(loadConfig({ ...ctx.opts.serviceEnv }));
}

export const ORDER_BODY = JSON.stringify({ direction: "BUY", price: "100.5", quantity: "2" });

/**
 * Users the load is spread over. The service's per-user RATE_LIMIT (default 50/s) stays on during the bench; at
 * 20k requests/s each of 2000 users sends about 10/s, well under it, so the bench measures the service as it
 * runs, not a configuration with the limit off.
 */
export const BENCH_USERS = 2_000;

export async function mintBenchTokens(tokens: { mint(userId: bigint): Promise<string> }): Promise<string[]> {
  return Promise.all(Array.from({ length: BENCH_USERS }, (_, i) => tokens.mint(BigInt(1 + i))));
}

export function target(ctx: Ctx, port: number): Target {
  return {
    url: `http://127.0.0.1:${port}/orders`,
    headers: { "content-type": "application/json" },
    authorizations: ctx.tokens.map((token) => `Bearer ${token}`),
    body: ORDER_BODY,
  };
}

/** NATS_USER / NATS_PASSWORD for a user of the bench's broker; nothing on NATS_URL. */
export function natsCredentials(ctx: Ctx, user: BenchUser): Record<string, string> {
  return ctx.natsAuth?.env(user) ?? {};
}

/**
 * A service child's environment; `user` is who it connects to NATS as (its role). `extra` may override the
 * NATS_URL and credentials (a phase pointing it at another server of the run: same users, same passwords).
 */
export function serviceEnv(
  ctx: Ctx,
  extra: Record<string, string>,
  user?: BenchUser,
): Record<string, string> {
  return {
    NATS_URL: ctx.natsUrl,
    ...(user ? natsCredentials(ctx, user) : {}),
    AUTH_SECRET: ctx.secret,
    DATA_DIR: ctx.dataDir,
    LOG_LEVEL: "warn",
    WORKER_ID: "1",
    // Each process's ops listener (/metrics) on its own port: given where it is scraped, else any free one.
    OPS_PORT: "0",
    ...extra,
    ...ctx.opts.serviceEnv,
  };
}

function serviceFlags(ctx: Ctx, profileDir?: string): string[] {
  return [...ctx.opts.serviceBunFlags, ...(profileDir ? ["--cpu-prof", `--cpu-prof-dir=${profileDir}`] : [])];
}

/**
 * Empty SEQUENCE and TRADING, created again by the bench's admin connection: on the bench's authenticated broker
 * the service's roles may not create them (the KV buckets, which `sequencer provision` made at the start, stay).
 */
export async function freshTopology(ctx: Ctx): Promise<void> {
  await resetStreams(ctx.jsm);
  await ensureTopology(ctx.jsm, topology(ctx));
}

/** Deletes SEQUENCE and TRADING (their consumers go with them): every phase starts from empty streams. */
export async function resetStreams(jsm: JetStreamManager): Promise<void> {
  for (const name of [INTAKE_STREAM, TRADING_STREAM]) await jsm.streams.delete(name).catch(() => false);
}

async function stopMeasured(
  child: Child,
  meter: CpuMeter,
  extra: Record<string, number> = {},
): Promise<{ rssMb: number; cpu: CpuReport }> {
  const rssMb = peakRssMb(child.pid);
  const cpu = meter.stop(extra);
  await stopChild(child);
  return { rssMb, cpu };
}

// ---------------------------------------------------------------------------------------------------------------
// 1 + 2ab. Ingest: POST /orders at fixed concurrency
// ---------------------------------------------------------------------------------------------------------------

export type IngestVariant = "ours" | "bare" | "justPostgres";
export type IngestResult = LoadResult & {
  rssMb: number;
  cpu: CpuReport;
  quiet: Quiet;
  profile?: { file: string; top: ProfileEntry[] };
};

export async function measureIngest(
  ctx: Ctx,
  variant: IngestVariant,
  profileDir?: string,
): Promise<IngestResult> {
  await freshTopology(ctx);
  const quietBefore = await quiet(ctx);
  const port = await freePort();
  let child: Child;
  let readyPath = "/healthz";
  if (variant === "ours") {
    child = spawnService(
      "api",
      serviceEnv(ctx, { PORT: String(port), DATABASE_URL: await ctx.newDatabase() }, "api"),
      ctx.logDir,
      serviceFlags(ctx, profileDir),
    );
    readyPath = "/readyz";
  } else if (variant === "bare") {
    child = spawnBaseline(
      "bare-publish.ts",
      [],
      { PORT: String(port), NATS_URL: ctx.natsUrl, ...natsCredentials(ctx, "admin") },
      ctx.logDir,
    );
  } else {
    child = spawnBaseline(
      "just-postgres.ts",
      [],
      { PORT: String(port), DATABASE_URL: await ctx.newDatabase() },
      ctx.logDir,
    );
  }
  try {
    await waitReady(child, `http://127.0.0.1:${port}${readyPath}`);
    const meter = new CpuMeter({ service: () => processCpuSeconds(child.pid), ...ctx.infraCpu });
    const load = await runClosedLoad(ctx.generator, target(ctx, port), {
      concurrency: ctx.opts.concurrency,
      warmupMs: ctx.opts.warmupMs,
      durationMs: ctx.opts.durationMs,
    });
    if (load.requests === 0 || load.non2xx + load.errors > load.requests / 2) {
      throw new Error(
        `${variant} ingest: ${load.requests} requests, ${load.non2xx} non-2xx, ${load.errors} errors\n${logTail(child)}`,
      );
    }
    const { generatorCpuS, ...rest } = load;
    const measured = await stopMeasured(child, meter, { loadgen: generatorCpuS ?? 0 });
    return {
      ...rest,
      ...measured,
      quiet: quietBefore,
      ...(profileDir ? { profile: readProfile(profileDir) } : {}),
    };
  } finally {
    await stopChild(child);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// 2c. Raw pipelined JetStream publish
// ---------------------------------------------------------------------------------------------------------------

export type RawResult = {
  messages: number;
  inFlight: number;
  seconds: number;
  msgsPerSec: number;
  quiet: Quiet;
};

export async function measureRawPublish(ctx: Ctx, noAsyncTraces: boolean): Promise<RawResult> {
  const quietBefore = await quiet(ctx);
  const args = [String(ctx.opts.rawMessages), String(ctx.opts.rawInFlight)];
  if (noAsyncTraces) args.push("--no-async-traces");
  const child = spawnBaseline(
    "raw-publish.ts",
    args,
    { NATS_URL: ctx.natsUrl, ...natsCredentials(ctx, "admin") },
    ctx.logDir,
  );
  await exitedOk(child);
  const line = readFileSync(child.logPath, "utf8")
    .trim()
    .split("\n")
    .reverse()
    .find((l) => l.startsWith("{"));
  if (!line) throw new Error(`raw publish printed no result:\n${logTail(child)}`);
  return {
    ...(JSON.parse(line) as Omit<RawResult, "inFlight" | "quiet">),
    inFlight: ctx.opts.rawInFlight,
    quiet: quietBefore,
  };
}

// ---------------------------------------------------------------------------------------------------------------
// 3. Sequencer drain
// ---------------------------------------------------------------------------------------------------------------

export type DrainVariant = "ours" | "naive";
export type DrainResult = {
  events: number;
  /** From the first delivery to the last event on TRADING. */
  seconds: number;
  eventsPerSec: number;
  /** From spawning the process to its first delivery (start-up, migrations, provisioning). */
  startupS: number;
  rssMb: number;
  cpu: CpuReport;
  quiet: Quiet;
  /** Batches taken and the mean time per batch stage, as the process itself reports them. */
  batches?: BatchStats;
  profile?: { file: string; top: ProfileEntry[] };
};

export type BatchStats = {
  batches: number;
  meanBatchSize: number;
  /** Mean wall time per batch of each stage, ms (ours: only the transaction is reported by /metrics). */
  meanMs: Record<string, number>;
};

/** The sequencer's batch counters as its Prometheus metrics have them (sequencer_batch_size, _transaction_duration). */
export type BatchCounters = { batches: number; events: number; transactions: number; transactionS: number };

export async function scrapeBatchCounters(port: number): Promise<BatchCounters | undefined> {
  const text = await fetch(`http://127.0.0.1:${port}/metrics`)
    .then((res) => res.text())
    .catch(() => "");
  const value = (name: string) => Number(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, "m").exec(text)?.[1]);
  const counters = {
    batches: value("sequencer_batch_size_count"),
    events: value("sequencer_batch_size_sum"),
    transactions: value("sequencer_transaction_duration_seconds_count"),
    transactionS: value("sequencer_transaction_duration_seconds_sum"),
  };
  return Object.values(counters).every(Number.isFinite) ? counters : undefined;
}

/** Batch figures between two scrapes (from = nothing: since the process started). */
export function batchStatsBetween(
  from: BatchCounters | undefined,
  to: BatchCounters,
): BatchStats | undefined {
  const batches = to.batches - (from?.batches ?? 0);
  if (batches <= 0) return undefined;
  const transactions = to.transactions - (from?.transactions ?? 0);
  return {
    batches,
    meanBatchSize: (to.events - (from?.events ?? 0)) / batches,
    meanMs: {
      transaction: (1000 * (to.transactionS - (from?.transactionS ?? 0))) / Math.max(1, transactions),
    },
  };
}

async function scrapeBatchStats(port: number): Promise<BatchStats | undefined> {
  const counters = await scrapeBatchCounters(port);
  return counters && batchStatsBetween(undefined, counters);
}

/** The naive loop's own NAIVE_STATS line (printed when it stops). */
function naiveBatchStats(child: Child): BatchStats | undefined {
  const line = readFileSync(child.logPath, "utf8")
    .split("\n")
    .find((l) => l.startsWith("NAIVE_STATS "));
  if (!line) return undefined;
  const { batches, events, ...stages } = JSON.parse(line.slice("NAIVE_STATS ".length)) as Record<
    string,
    number
  >;
  const n = batches || 1;
  const meanMs: Record<string, number> = {};
  for (const [stage, ms] of Object.entries(stages)) meanMs[stage.replace(/Ms$/, "")] = ms / n;
  return { batches: batches ?? 0, meanBatchSize: (events ?? 0) / n, meanMs };
}

/** Publishes `count` intake events (as the API would) into SEQUENCE, pipelined. */
async function preload(js: JetStreamClient, count: number): Promise<void> {
  const ids = new SnowflakeGenerator(1000);
  let next = 0;
  const worker = async () => {
    while (next < count) {
      const i = next++;
      const referenceId = ids.next();
      const body = encodeIntakeEvent({
        referenceId,
        type: "CREATE_ORDER",
        createdAt: new Date().toISOString(),
        userId: BigInt(1 + (i % 1000)),
        orderId: ids.next(),
        direction: i % 2 ? "BUY" : "SELL",
        price: `${100 + (i % 50)}.25`,
        quantity: "1.5",
      });
      await js.publish(`sequence.create_order`, body, {
        msgID: referenceId.toString(),
        expect: { streamName: INTAKE_STREAM },
        timeout: 10_000,
      });
    }
  };
  await Promise.all(Array.from({ length: Math.min(2_000, count) }, worker));
}

/**
 * A log a drain starts from instead of an empty one (the growth phase): its database, how many events it holds,
 * and what leaves an empty SEQUENCE and a TRADING that matches the log (instead of deleting both streams).
 */
export type DrainBase = { databaseUrl: string; events: number; prepareStreams(): Promise<void> };

export async function measureDrain(
  ctx: Ctx,
  variant: DrainVariant,
  profileDir?: string,
  base?: DrainBase,
): Promise<DrainResult> {
  const n = ctx.opts.drainEvents;
  const head = base?.events ?? 0;
  if (base) await base.prepareStreams();
  else await freshTopology(ctx);
  await preload(ctx.js, n);
  const stored = (await ctx.jsm.streams.info(INTAKE_STREAM)).state.messages;
  if (stored !== n) throw new Error(`preload stored ${stored} of ${n} events`);
  const databaseUrl = base?.databaseUrl ?? (await ctx.newDatabase());
  const quietBefore = await quiet(ctx);

  const spawned = performance.now();
  const port = await freePort();
  const opsPort = await freePort();
  const child =
    variant === "ours"
      ? spawnService(
          "sequencer",
          serviceEnv(
            ctx,
            { PORT: String(port), OPS_PORT: String(opsPort), DATABASE_URL: databaseUrl },
            "sequencer",
          ),
          ctx.logDir,
          serviceFlags(ctx, profileDir),
        )
      : spawnBaseline(
          "naive-sequencer.ts",
          [],
          { NATS_URL: ctx.natsUrl, DATABASE_URL: databaseUrl, ...natsCredentials(ctx, "admin") },
          ctx.logDir,
        );
  try {
    const alive = () => {
      if (child.proc.exitCode !== null) {
        throw new Error(`${child.name} exited with ${child.proc.exitCode}:\n${logTail(child)}`);
      }
    };
    // Start of the drain: the consumer's first delivery (polled; ~5 ms resolution).
    const startDeadline = Date.now() + 60_000;
    for (;;) {
      alive();
      const info = await ctx.jsm.consumers.info(INTAKE_STREAM, SEQUENCER_CONSUMER);
      if (info.delivered.stream_seq > 0) break;
      if (Date.now() > startDeadline)
        throw new Error(`${child.name}: no delivery within 60 s\n${logTail(child)}`);
      await Bun.sleep(5);
    }
    const started = performance.now();
    const meter = new CpuMeter({ service: () => processCpuSeconds(child.pid), ...ctx.infraCpu });
    // End: the last event is on TRADING (the database commit precedes the publish; checked below).
    const deadline = Date.now() + 60_000 + n; // ≥ 1000 events/s, or something is wrong
    for (;;) {
      alive();
      if ((await ctx.jsm.streams.info(TRADING_STREAM)).state.last_seq >= head + n) break;
      if (Date.now() > deadline) throw new Error(`${child.name}: drain did not finish\n${logTail(child)}`);
      await Bun.sleep(10);
    }
    const seconds = (performance.now() - started) / 1000;
    // Not when profiling: a /metrics scrape would show up in the profile (prom-client's heap-space gauges).
    const scraped = variant === "ours" && !profileDir ? await scrapeBatchStats(opsPort) : undefined;
    const measured = await stopMeasured(child, meter);
    await checkStored(databaseUrl, head + n, child);
    const batches = variant === "ours" ? scraped : naiveBatchStats(child);
    const result: DrainResult = {
      events: n,
      seconds,
      eventsPerSec: n / seconds,
      startupS: (started - spawned) / 1000,
      ...measured,
      quiet: quietBefore,
      ...(batches ? { batches } : {}),
      ...(profileDir ? { profile: readProfile(profileDir) } : {}),
    };
    return result;
  } finally {
    await stopChild(child);
  }
}

async function checkStored(databaseUrl: string, n: number, child: Child): Promise<void> {
  const sql = postgres(databaseUrl, { max: 1, onnotice: () => {} });
  try {
    const [row] = await sql<{ count: number; max: string }[]>`
      select count(*)::int as count, coalesce(max(sequence_id), 0)::text as max from events`;
    if (row?.count !== n || row.max !== String(n)) {
      throw new Error(`${child.name}: events holds ${row?.count} rows up to ${row?.max}, expected 1..${n}`);
    }
  } finally {
    await sql.end();
  }
}

// ---------------------------------------------------------------------------------------------------------------
// 4. End to end at a fixed offered rate
// ---------------------------------------------------------------------------------------------------------------

export type E2eResult = {
  offeredRate: number;
  achievedRps: number;
  samples: number;
  missing: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  httpP50Ms: number;
  httpP99Ms: number;
  non2xx: number;
  errors: number;
  skipped: number;
  rssMb: { api: number; sequencer: number };
  cpu: CpuReport;
  quiet: Quiet;
  /** How long one GET /metrics takes on each process after the run (the event loop is blocked meanwhile). */
  metricsScrapeMs: { api: number; sequencer: number };
  /** The sequencer's batches over the whole run (warm-up included), from its /metrics. */
  batches?: BatchStats;
  /** accept→TRADING percentiles per interval of the measured window, by when the 2xx was read (the chart's). */
  intervals: LatencyInterval[];
};

/** Slowest of three /metrics scrapes, ms. */
async function scrapeMs(port: number): Promise<number> {
  let worst = 0;
  for (let i = 0; i < 3; i++) {
    const started = performance.now();
    await fetch(`http://127.0.0.1:${port}/metrics`).then((res) => res.text());
    worst = Math.max(worst, performance.now() - started);
  }
  return worst;
}

export async function measureEndToEnd(ctx: Ctx): Promise<E2eResult> {
  await freshTopology(ctx);
  const databaseUrl = await ctx.newDatabase();
  const quietBefore = await quiet(ctx);
  const seqPort = await freePort();
  const apiPort = await freePort();
  const [seqOpsPort, apiOpsPort] = [await freePort(), await freePort()];
  const sequencer = spawnService(
    "sequencer",
    serviceEnv(
      ctx,
      { PORT: String(seqPort), OPS_PORT: String(seqOpsPort), DATABASE_URL: databaseUrl },
      "sequencer",
    ),
    ctx.logDir,
  );
  const api = spawnService(
    "api",
    serviceEnv(
      ctx,
      { PORT: String(apiPort), OPS_PORT: String(apiOpsPort), DATABASE_URL: databaseUrl },
      "api",
    ),
    ctx.logDir,
  );
  const arrivals = new Map<string, number>();
  const sub = ctx.nc.subscribe("trading.>", {
    callback: (_error, msg) => {
      const at = wallMs();
      const referenceId = (msg.json() as { referenceId?: string }).referenceId;
      if (referenceId) arrivals.set(referenceId, at);
    },
  });
  try {
    await waitReady(api, `http://127.0.0.1:${apiPort}/readyz`);
    await waitReady(sequencer, `http://127.0.0.1:${seqPort}/readyz`);
    const meter = new CpuMeter({
      api: () => processCpuSeconds(api.pid),
      sequencer: () => processCpuSeconds(sequencer.pid),
      ...ctx.infraCpu,
    });
    const load = await runOpenLoad(target(ctx, apiPort), {
      rate: ctx.opts.e2eRate,
      maxInFlight: 1_024,
      warmupMs: ctx.opts.e2eWarmupMs,
      durationMs: ctx.opts.e2eDurationMs,
    });
    const answers = load.answers ?? [];
    const settleDeadline = Date.now() + 30_000;
    while (answers.some(([ref]) => !arrivals.has(ref)) && Date.now() < settleDeadline) await Bun.sleep(50);
    const timed: [number, number][] = [];
    let missing = 0;
    let firstAnswer = Number.POSITIVE_INFINITY;
    for (const [ref, answeredAt] of answers) {
      firstAnswer = Math.min(firstAnswer, answeredAt);
      const arrived = arrivals.get(ref);
      if (arrived === undefined) missing++;
      else timed.push([answeredAt, arrived - answeredAt]);
    }
    const intervals = latencyIntervals(timed, firstAnswer, e2eIntervalMs(ctx.opts.e2eDurationMs));
    const sorted = sortedCopy(timed.map(([, latency]) => latency));
    const rssMb = { api: peakRssMb(api.pid), sequencer: peakRssMb(sequencer.pid) };
    const cpu = meter.stop({ loadgen: load.generatorCpuS ?? 0 });
    const batches = await scrapeBatchStats(seqOpsPort);
    const metricsScrapeMs = { api: await scrapeMs(apiOpsPort), sequencer: await scrapeMs(seqOpsPort) };
    if (timed.length === 0) throw new Error(`end to end: no event arrived on TRADING\n${logTail(sequencer)}`);
    return {
      offeredRate: ctx.opts.e2eRate,
      achievedRps: load.rps,
      samples: timed.length,
      missing,
      p50Ms: percentile(sorted, 50),
      p99Ms: percentile(sorted, 99),
      maxMs: sorted[sorted.length - 1] as number,
      httpP50Ms: load.p50Ms,
      httpP99Ms: load.p99Ms,
      non2xx: load.non2xx,
      errors: load.errors,
      skipped: load.skipped ?? 0,
      rssMb,
      cpu,
      quiet: quietBefore,
      metricsScrapeMs,
      ...(batches ? { batches } : {}),
      intervals,
    };
  } finally {
    sub.unsubscribe();
    await stopChild(api);
    await stopChild(sequencer);
  }
}
