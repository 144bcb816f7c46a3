import type { JetStreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import postgres from "postgres";
import type { NatsRole } from "../../src/adapters/nats/permissions.ts";
import { INTAKE_STREAM, SEQUENCER_CONSUMER, TRADING_STREAM } from "../../src/adapters/nats/topology.ts";
import { freePort } from "../services/local-services.ts";
import type { ALL_ROLE_USER } from "./broker-auth.ts";
import { type CpuGroups, CpuMeter, type CpuReport, childPids, processCpuSeconds } from "./cpu.ts";
import { runClosedLoad, runSoakLoad, type SoakAnswer } from "./loadgen/index.ts";
import {
  type BatchCounters,
  type BatchStats,
  batchStatsBetween,
  type Ctx,
  freshTopology,
  natsCredentials,
  quiet,
  resetStreams,
  scrapeBatchCounters,
  serviceEnv,
  target,
} from "./phases.ts";
import { type CapacitySample, type WindowFigures, windowFigures } from "./pipeline-figures.ts";
import {
  type Child,
  logTail,
  machineCpu,
  type Residency,
  residencyMb,
  spawnService,
  stopChild,
  waitReady,
} from "./processes.ts";
import { percentile, sortedCopy, wallMs } from "./stats.ts";

/** The memory target: no process grows more than this between the second sample and the last. */
export const SOAK_GROWTH_LIMIT_PCT = 10;
/** How long the end of the run waits for accepted orders still on their way to TRADING. */
const SETTLE_MS = 60_000;
/** In-flight cap of the open loop: far above what half the capacity needs; beyond it a due request is skipped. */
const SOAK_MAX_IN_FLIGHT = 1_024;

export type SoakCapacity = {
  /** Events/s TRADING grew by over the measured window: what the pipeline sustains. */
  tradingPerSec: number;
  /** Requests/s the API answered meanwhile (more than TRADING's rate when the sequencer falls behind). */
  httpRps: number;
  windowS: number;
  concurrency: number;
  layout: Layout;
  /** TRADING's growth and every process's CPU between the same two samples. */
  window: WindowFigures;
  /** The load generator's CPU over its whole run (warm-up included: it is not sampled), % of one core. */
  loadgenCorePct: number;
  /** The sequencer's batches in the window (from its /metrics): how many, how big, mean commit time. */
  batches?: BatchStats;
};

export type SoakRow = {
  /** 1-based; the row covers requests due in ((n − 1) × interval, n × interval]. */
  n: number;
  /** Seconds from the start of the load to the end of the interval (when the RSS was sampled). */
  atS: number;
  /** 2xx answers (orders accepted), other statuses, no answer (error or 30 s timeout), skipped (in-flight cap). */
  accepted: number;
  non2xx: number;
  failed: number;
  skipped: number;
  /** Events that arrived on the TRADING subscriber during the interval. */
  sequenced: number;
  /** From the due time to the answer, every answered request. */
  httpP50Ms: number;
  httpP99Ms: number;
  httpMaxMs: number;
  /**
   * From the due time to the send, every answered request (as the HTTP figures): the generator's own lateness (it
   * shares the cores), which the HTTP figures include.
   */
  sendLateP99Ms: number;
  /** From the 2xx answer to the event's arrival on the TRADING subscriber. */
  toTradingP50Ms: number;
  toTradingP99Ms: number;
  toTradingMaxMs: number;
  /** Resident set at the end of the interval, per process (MB). */
  rssMb: Record<string, number>;
};

export type SoakTrend = {
  process: string;
  secondMb: number;
  lastMb: number;
  /** Least squares over the samples from the second to the last, MB per minute. */
  slopeMbPerMin: number;
  growthPct: number;
  pass: boolean;
};

export type SoakCheck = { name: string; ok: boolean; detail: string };

export type SoakResult = {
  rate: number;
  rateSource: string;
  capacity?: SoakCapacity;
  minutes: number;
  intervalS: number;
  broker: string;
  rows: SoakRow[];
  /** Undefined when there are fewer than three samples (a slope needs the second and at least one more). */
  trends: SoakTrend[] | undefined;
  checks: SoakCheck[];
  totals: {
    due: number;
    accepted: number;
    non2xx: number;
    failed: number;
    /** Why requests failed (no answer), warm-up included: reason → count. Empty when none did. */
    failureReasons: Record<string, number>;
    skipped: number;
    /** Events that reached TRADING after the load stopped (the settle period). */
    sequencedAfterEnd: number;
  };
  /**
   * PostgreSQL at each sample: the two parts of its figure, the plain sum of VmRSS (shared memory counted once per
   * process), and how many processes there were.
   */
  postgresSamples: PostgresMemory[];
  cpu: CpuReport;
};

// ---------------------------------------------------------------------------------------------------------------
// The broker and the pipeline
// ---------------------------------------------------------------------------------------------------------------

/** The service's roles, and `all`: the user `serve --role all` connects as (broker-auth.ts). */
type Role = NatsRole | typeof ALL_ROLE_USER;

/** The broker the soak runs on, and the bench's own (admin) connection to it. */
export type Broker = {
  url: string;
  nc: NatsConnection;
  jsm: JetStreamManager;
  /** NATS_USER / NATS_PASSWORD for a role; nothing on an unauthenticated NATS_URL. */
  credentials(role: Role): Record<string, string>;
  authenticated: boolean;
  /** nats-server's pid when it runs here. */
  pid: number | undefined;
  description: string;
};

/**
 * The broker the soak and the pipeline phase run on: the bench's own (broker.ts: per-role users and permissions,
 * plus the `all` user a `serve --role all` deployment needs), as every phase does; on NATS_URL, unauthenticated.
 */
export function brokerOf(ctx: Ctx): Broker {
  const authenticated = ctx.natsAuth !== undefined;
  return {
    url: ctx.natsUrl,
    nc: ctx.nc,
    jsm: ctx.jsm,
    credentials: (role) => natsCredentials(ctx, role),
    authenticated,
    pid: ctx.natsPid,
    description: authenticated
      ? "the bench's nats-server with per-role users and permissions (api, sequencer, or `all` = api ∪ sequencer for serve --role all; topology by `sequencer provision` as admin)"
      : "NATS_URL, without authentication (the bench cannot add users there)",
  };
}

/** `serve --role api` + `serve --role sequencer` (how compose deploys it), or one `serve --role all` process. */
export type Layout = "split" | "all";

/** The service processes by name (api, sequencer; or all), in the order they stop: the API first. */
type Pipeline = {
  services: Record<string, Child>;
  apiPort: number;
  /** Each process's ops listener (/metrics), by role. */
  opsPorts: Record<string, number>;
};

/** The service on one database, as the end-to-end phase starts it (split), or as one process (all). */
async function startPipeline(
  ctx: Ctx,
  broker: Broker,
  databaseUrl: string,
  layout: Layout = "split",
): Promise<Pipeline> {
  const opsPorts: Record<string, number> = {};
  const env = async (role: "api" | "sequencer" | "all", port: number) => {
    opsPorts[role] = await freePort();
    return serviceEnv(ctx, {
      NATS_URL: broker.url,
      ...broker.credentials(role),
      PORT: String(port),
      OPS_PORT: String(opsPorts[role]),
      DATABASE_URL: databaseUrl,
    });
  };
  // --service-bun-flag reaches these processes too (a profiler, a preloaded probe), as it does the other phases'.
  const flags = ctx.opts.serviceBunFlags;
  const apiPort = await freePort();
  const ready: [Child, number][] = [];
  const services: Record<string, Child> = {};
  if (layout === "all") {
    services.all = spawnService("all", await env("all", apiPort), ctx.logDir, flags);
    ready.push([services.all, apiPort]);
  } else {
    const seqPort = await freePort();
    const sequencer = spawnService("sequencer", await env("sequencer", seqPort), ctx.logDir, flags);
    services.api = spawnService("api", await env("api", apiPort), ctx.logDir, flags);
    services.sequencer = sequencer;
    ready.push([services.api, apiPort], [sequencer, seqPort]);
  }
  const pipeline = { services, apiPort, opsPorts };
  try {
    for (const [child, port] of ready) await waitReady(child, `http://127.0.0.1:${port}/readyz`);
  } catch (error) {
    await stopPipeline(pipeline);
    throw error;
  }
  return pipeline;
}

async function stopPipeline(p: Pipeline): Promise<void> {
  for (const child of Object.values(p.services)) await stopChild(child);
}

function assertAlive(p: Pipeline): void {
  for (const child of Object.values(p.services)) {
    if (child.proc.exitCode !== null) {
      throw new Error(`${child.name} exited with ${child.proc.exitCode} under load:\n${logTail(child)}`);
    }
  }
}

/** CPU readers for the service's processes, nats-server (when it runs here) and PostgreSQL (when it does). */
function cpuGroups(ctx: Ctx, broker: Broker, p: Pipeline): CpuGroups {
  const groups: CpuGroups = {};
  for (const [name, child] of Object.entries(p.services)) groups[name] = () => processCpuSeconds(child.pid);
  const natsPid = broker.pid;
  if (natsPid) groups.nats = () => processCpuSeconds(natsPid);
  if (ctx.infraCpu.postgres) groups.postgres = ctx.infraCpu.postgres;
  return groups;
}

// ---------------------------------------------------------------------------------------------------------------
// Sustained capacity
// ---------------------------------------------------------------------------------------------------------------

/**
 * A closed loop at `concurrency` against the whole pipeline; the capacity is the rate TRADING grows at after the
 * warm-up (polled every 250 ms), not the rate the API answers: when the sequencer falls behind, the API's extra
 * answers only build a backlog. Each poll also reads every process's CPU, so the CPU per sequenced event covers
 * exactly the window the rate does. Its own processes and database, stopped before anything else starts clean.
 */
export async function measureCapacity(
  ctx: Ctx,
  broker: Broker,
  options: { layout: Layout; warmupMs: number; durationMs: number },
): Promise<SoakCapacity> {
  const { layout, warmupMs, durationMs } = options;
  const { concurrency } = ctx.opts;
  await freshTopology(ctx);
  const databaseUrl = await ctx.newDatabase();
  await quiet(ctx);
  const pipeline = await startPipeline(ctx, broker, databaseUrl, layout);
  try {
    const groups = Object.entries(cpuGroups(ctx, broker, pipeline));
    const samples: CapacitySample[] = [];
    let sampling = true;
    // BENCH_TRACE=1: a line per sample on stderr with the sequencer consumer's state (what the sequencer waits for).
    const trace = process.env.BENCH_TRACE === "1";
    const sampler = (async () => {
      while (sampling) {
        const info = await broker.jsm.streams.info(TRADING_STREAM);
        if (trace) {
          const c = await broker.jsm.consumers.info(INTAKE_STREAM, SEQUENCER_CONSUMER);
          process.stderr.write(
            `trace ${(performance.now() / 1000).toFixed(2)} trading=${info.state.last_seq} backlog=${c.num_pending} ackPending=${c.num_ack_pending} waiting=${c.num_waiting} redelivered=${c.num_redelivered}\n`,
          );
        }
        samples.push({
          atMs: performance.now(),
          tradingLastSeq: info.state.last_seq,
          cpuS: Object.fromEntries(groups.map(([name, read]) => [name, read()])),
          machine: machineCpu(),
        });
        await Bun.sleep(250);
      }
    })();
    // The sequencer's batches over (about) the same window: how big they were and how long each commit took.
    const opsPort = pipeline.opsPorts.sequencer ?? pipeline.opsPorts.all;
    let batchesAtStart: Promise<BatchCounters | undefined> = Promise.resolve(undefined);
    const started = performance.now();
    const startScrape = setTimeout(() => {
      if (opsPort) batchesAtStart = scrapeBatchCounters(opsPort);
    }, warmupMs + 250);
    const load = await runClosedLoad(ctx.generator, target(ctx, pipeline.apiPort), {
      concurrency,
      warmupMs,
      durationMs,
    }).finally(() => {
      sampling = false;
      clearTimeout(startScrape);
    });
    const batchesAtEnd = opsPort ? await scrapeBatchCounters(opsPort) : undefined;
    const from = await batchesAtStart;
    const batches = from && batchesAtEnd ? batchStatsBetween(from, batchesAtEnd) : undefined;
    await sampler;
    assertAlive(pipeline);
    // The generator starts a little after `started`; its measured window is at least this one.
    const window = windowFigures(samples, started + warmupMs + 250, started + warmupMs + durationMs);
    if (window.events <= 0) {
      const sequencer = pipeline.services.sequencer ?? pipeline.services.all;
      throw new Error(
        `capacity (${layout}): TRADING did not grow under load\n${sequencer ? logTail(sequencer) : ""}`,
      );
    }
    return {
      tradingPerSec: window.tradingPerSec,
      httpRps: load.rps,
      windowS: window.windowS,
      concurrency,
      layout,
      window,
      loadgenCorePct: (100 * (load.generatorCpuS ?? 0)) / ((warmupMs + durationMs) / 1000),
      ...(batches ? { batches } : {}),
    };
  } finally {
    await stopPipeline(pipeline);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Memory
// ---------------------------------------------------------------------------------------------------------------

export type PostgresMemory = { privateMb: number; sharedMb: number; vmRssSumMb: number; processes: number };
type MemoryReader = () => { mb: number; postgres?: PostgresMemory } | null;

/**
 * The postmaster and its children (backends, walwriter, checkpointer, autovacuum …): each one's private memory
 * (RssAnon) plus the largest shared part (RssFile + RssShmem) once — the shared buffers every backend maps would
 * otherwise be counted once per backend and "grow" as backends touch more of them. The parts and the plain sum of
 * VmRSS go to the JSON (the shared part grows until shared_buffers is warm: that is a cache filling, not a leak).
 */
function postgresMemory(postmaster: number): MemoryReader {
  return () => {
    const all = [postmaster, ...childPids(postmaster, "postgres")]
      .map(residencyMb)
      .filter((r): r is Residency => r !== null);
    if (all.length === 0) return null;
    const privateMb = all.reduce((sum, r) => sum + r.anon, 0);
    const sharedMb = Math.max(...all.map((r) => r.file + r.shmem));
    const vmRssSumMb = all.reduce((sum, r) => sum + r.vmRss, 0);
    return { mb: privateMb + sharedMb, postgres: { privateMb, sharedMb, vmRssSumMb, processes: all.length } };
  };
}

function processMemory(pid: number): MemoryReader {
  return () => {
    const r = residencyMb(pid);
    return r && { mb: r.vmRss };
  };
}

function memoryReaders(ctx: Ctx, broker: Broker, p: Pipeline): Record<string, MemoryReader> {
  const readers: Record<string, MemoryReader> = {};
  for (const [name, child] of Object.entries(p.services)) readers[name] = processMemory(child.pid);
  if (broker.pid) readers.nats = processMemory(broker.pid);
  if (ctx.postmasterPid) readers.postgres = postgresMemory(ctx.postmasterPid);
  return readers;
}

/** Least-squares slope of y over x. */
export function slope(points: readonly [number, number][]): number {
  const n = points.length;
  const mx = points.reduce((s, [x]) => s + x, 0) / n;
  const my = points.reduce((s, [, y]) => s + y, 0) / n;
  let num = 0;
  let den = 0;
  for (const [x, y] of points) {
    num += (x - mx) * (y - my);
    den += (x - mx) ** 2;
  }
  return den > 0 ? num / den : Number.NaN;
}

/** Per process: slope and growth from the second sample (the first minute is warm-up) to the last. */
export function trends(rows: readonly SoakRow[]): SoakTrend[] | undefined {
  const from = rows.slice(1);
  if (from.length < 2) return undefined;
  return Object.keys(rows[0]?.rssMb ?? {}).map((name) => {
    const points = from.map((r): [number, number] => [r.atS / 60, r.rssMb[name] ?? Number.NaN]);
    const secondMb = points[0]?.[1] ?? Number.NaN;
    const lastMb = points[points.length - 1]?.[1] ?? Number.NaN;
    const growthPct = (100 * (lastMb - secondMb)) / secondMb;
    return {
      process: name,
      secondMb,
      lastMb,
      slopeMbPerMin: slope(points),
      growthPct,
      pass: growthPct <= SOAK_GROWTH_LIMIT_PCT,
    };
  });
}

// ---------------------------------------------------------------------------------------------------------------
// What the load and the TRADING subscriber saw, interval by interval
// ---------------------------------------------------------------------------------------------------------------

type Bucket = {
  accepted: number;
  non2xx: number;
  failed: number;
  skipped: number;
  sequenced: number;
  http: number[];
  sendLate: number[];
  toTrading: number[];
  rssMb: Record<string, number>;
};

const emptyBucket = (): Bucket => ({
  accepted: 0,
  non2xx: 0,
  failed: 0,
  skipped: 0,
  sequenced: 0,
  http: [],
  sendLate: [],
  toTrading: [],
  rssMb: {},
});

/**
 * Requests go to the interval they were due in; an accepted order is matched with its TRADING event by
 * referenceId, whichever of the two the bench hears of first (the answer comes through the generator's pipe, the
 * event straight from NATS). Only unmatched ones are held, so memory stays flat however long the soak runs.
 */
class SoakRecorder {
  start = Number.NaN;
  readonly buckets: Bucket[];
  /**
   * Requests due in the first warmupMs, before the rows start: freshly started processes are still compiling their
   * hot paths (their first second's event loop stalls 70–250 ms). Counted in the outcome checks, not in any row.
   */
  readonly warmup: Bucket = emptyBucket();
  sequencedAfterEnd = 0;
  /** Sequence ids delivered to the subscriber more than once (a re-publish; the stream itself dedups by msg id). */
  redelivered = 0;
  /** Requests with no answer, by the generator's reason (a handful of distinct messages). */
  readonly failureReasons = new Map<string, number>();
  private readonly awaiting = new Map<string, { bucket: number; answeredMs: number }>();
  private readonly early = new Map<string, number>();
  private seen = new Uint8Array(1 << 16);

  constructor(
    readonly intervalMs: number,
    readonly durationMs: number,
    readonly warmupMs = 0,
  ) {
    this.buckets = Array.from({ length: Math.ceil(durationMs / intervalMs) }, emptyBucket);
  }

  /** The row bucket a moment falls in; −1 for the warm-up. */
  private bucketAt(wallMsAt: number): number {
    return Math.max(-1, Math.floor((wallMsAt - this.start - this.warmupMs) / this.intervalMs));
  }

  private bucket(index: number): Bucket {
    return index < 0 ? this.warmup : (this.buckets[index] as Bucket);
  }

  /** The warm-up and every row: what the outcome checks add up. */
  get allBuckets(): Bucket[] {
    return [this.warmup, ...this.buckets];
  }

  onAnswer(a: SoakAnswer): void {
    const index = Math.min(this.buckets.length - 1, this.bucketAt(a.dueMs));
    const b = this.bucket(index);
    if (a.status === -1) b.skipped++;
    else if (a.status === 0) {
      b.failed++;
      const reason = a.failure ?? "unknown";
      this.failureReasons.set(reason, (this.failureReasons.get(reason) ?? 0) + 1);
    } else {
      // The same requests as `http`, so that the generator's share can be read against it row by row.
      b.http.push(a.answeredMs - a.dueMs);
      b.sendLate.push(a.sentMs - a.dueMs);
    }
    if (a.status < 200 || a.status >= 300) {
      if (a.status > 0) b.non2xx++;
      return;
    }
    b.accepted++;
    if (!a.referenceId) return;
    const arrived = this.early.get(a.referenceId);
    if (arrived === undefined) this.awaiting.set(a.referenceId, { bucket: index, answeredMs: a.answeredMs });
    else {
      this.early.delete(a.referenceId);
      b.toTrading.push(arrived - a.answeredMs);
    }
  }

  onTrading(referenceId: string, sequenceId: number, arrivedMs: number): void {
    this.markSeen(sequenceId);
    const index = this.bucketAt(arrivedMs);
    if (index >= this.buckets.length) this.sequencedAfterEnd++;
    else this.bucket(index).sequenced++;
    const answer = this.awaiting.get(referenceId);
    if (answer === undefined) this.early.set(referenceId, arrivedMs);
    else {
      this.awaiting.delete(referenceId);
      this.bucket(answer.bucket).toTrading.push(arrivedMs - answer.answeredMs);
    }
  }

  private markSeen(sequenceId: number): void {
    if (!Number.isSafeInteger(sequenceId) || sequenceId < 1) return;
    while (sequenceId >= this.seen.length) {
      const grown = new Uint8Array(this.seen.length * 2);
      grown.set(this.seen);
      this.seen = grown;
    }
    if (this.seen[sequenceId]) this.redelivered++;
    else this.seen[sequenceId] = 1;
  }

  /** Sequence ids in 1..n the subscriber never saw. */
  unseenUpTo(n: number): number {
    let unseen = 0;
    for (let id = 1; id <= n; id++) if (id >= this.seen.length || !this.seen[id]) unseen++;
    return unseen;
  }

  /** Accepted orders not (yet) seen on TRADING. */
  get awaitingCount(): number {
    return this.awaiting.size;
  }

  /** Events seen on TRADING whose request got no 2xx the generator read (a timeout, or a phantom). */
  get withoutAnswerCount(): number {
    return this.early.size;
  }

  row(index: number): SoakRow {
    const b = this.buckets[index] as Bucket;
    const http = sortedCopy(b.http);
    const toTrading = sortedCopy(b.toTrading);
    return {
      n: index + 1,
      atS: Math.min((index + 1) * this.intervalMs, this.durationMs) / 1000,
      accepted: b.accepted,
      non2xx: b.non2xx,
      failed: b.failed,
      skipped: b.skipped,
      sequenced: b.sequenced,
      httpP50Ms: percentile(http, 50),
      httpP99Ms: percentile(http, 99),
      httpMaxMs: http.length ? (http[http.length - 1] as number) : Number.NaN,
      sendLateP99Ms: percentile(sortedCopy(b.sendLate), 99),
      toTradingP50Ms: percentile(toTrading, 50),
      toTradingP99Ms: percentile(toTrading, 99),
      toTradingMaxMs: toTrading.length ? (toTrading[toTrading.length - 1] as number) : Number.NaN,
      rssMb: b.rssMb,
    };
  }
}

/** One live line per interval while the load runs (the table at the end has the settled figures). */
function liveNote(label: string, row: SoakRow): string {
  const rss = Object.entries(row.rssMb)
    .map(([name, mb]) => `${name} ${mb.toFixed(0)}`)
    .join(", ");
  return `${label} ${clock(row.atS)}: RSS MB ${rss}; ${row.accepted.toLocaleString("en-US")} accepted, ${row.sequenced.toLocaleString("en-US")} sequenced; HTTP p99 ${row.httpP99Ms.toFixed(1)} ms (sent late p99 ${row.sendLateP99Ms.toFixed(1)}), accept→TRADING p99 ${row.toTradingP99Ms.toFixed(1)} ms (so far)`;
}

export function clock(seconds: number): string {
  const s = Math.round(seconds);
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
}

/**
 * At the end of each interval: every process's memory into that interval's bucket, then a live line a second later
 * (for the interval's last answers and events to come in). Throws as soon as a service process has died.
 */
async function sampleEachInterval(
  ctx: Ctx,
  label: string,
  rec: SoakRecorder,
  pipeline: Pipeline,
  readers: Record<string, MemoryReader>,
  postgresSamples: PostgresMemory[],
): Promise<void> {
  const last = rec.buckets.length - 1;
  for (let i = 0; i <= last; i++) {
    const at = rec.start + rec.warmupMs + Math.min((i + 1) * rec.intervalMs, rec.durationMs);
    await Bun.sleep(Math.max(0, at - wallMs()));
    assertAlive(pipeline);
    const bucket = rec.buckets[i] as Bucket;
    for (const [name, read] of Object.entries(readers)) {
      const m = read();
      if (m) bucket.rssMb[name] = m.mb;
      if (m?.postgres) postgresSamples.push(m.postgres);
    }
    const note = () => ctx.progress.note(liveNote(label, rec.row(i)));
    if (i < last) setTimeout(note, 1_000);
    else await Bun.sleep(1_000).then(note);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// The outcome: G1–G3 (and G4 as far as a load without payload tags can tell)
// ---------------------------------------------------------------------------------------------------------------

async function checkOutcome(databaseUrl: string, broker: Broker, rec: SoakRecorder): Promise<SoakCheck[]> {
  const sql = postgres(databaseUrl, { max: 1, onnotice: () => {} });
  let row: { rows: number; min: string; max: string; refs: number } | undefined;
  try {
    [row] = await sql<{ rows: number; min: string; max: string; refs: number }[]>`
      select count(*)::int as rows, coalesce(min(sequence_id), 0)::text as min,
             coalesce(max(sequence_id), 0)::text as max, count(distinct reference_id)::int as refs
      from events`;
  } finally {
    await sql.end();
  }
  const events = row ?? { rows: 0, min: "0", max: "0", refs: 0 };
  const n = events.rows;
  const trading = (await broker.jsm.streams.info(TRADING_STREAM)).state;
  const total = (pick: (b: Bucket) => number) => rec.allBuckets.reduce((s, b) => s + pick(b), 0);
  const accepted = total((b) => b.accepted);
  const noTwoXx = total((b) => b.failed + b.non2xx);
  const unseen = rec.unseenUpTo(n);
  return [
    {
      name: "G1 no loss",
      ok: rec.awaitingCount === 0 && n >= accepted,
      detail: `${accepted.toLocaleString("en-US")} accepted; ${rec.awaitingCount} not seen on TRADING ${SETTLE_MS / 1000} s after the load; events holds ${n.toLocaleString("en-US")}`,
    },
    {
      // TRADING may have dropped its oldest messages (TRADING_MAX_AGE / _MAX_BYTES via --service-env): one message
      // per position in what it holds; the subscriber saw every one as it was published (G3).
      name: "G2 no duplicates",
      ok: events.refs === n && trading.messages === trading.last_seq - trading.first_seq + 1,
      detail: `${events.refs.toLocaleString("en-US")} distinct referenceIds in ${n.toLocaleString("en-US")} events; TRADING holds ${trading.messages.toLocaleString("en-US")} messages at ${trading.first_seq}..${trading.last_seq}; ${rec.redelivered} sequenceIds published to the subscriber twice (the stream dedups a re-publish)`,
    },
    {
      name: "G3 no gaps",
      ok:
        events.min === (n > 0 ? "1" : "0") &&
        events.max === String(n) &&
        trading.last_seq === n &&
        unseen === 0,
      detail: `events ${events.min}..${events.max}; TRADING up to ${trading.last_seq}; ${unseen} sequenceIds in 1..${n} never reached the subscriber`,
    },
    {
      name: "G4 no phantom",
      ok: n - accepted >= 0 && n - accepted <= noTwoXx,
      detail: `${n - accepted} events without a 2xx answer (${noTwoXx} requests got none); ${rec.withoutAnswerCount} such events on TRADING`,
    },
  ];
}

// ---------------------------------------------------------------------------------------------------------------
// The phase
// ---------------------------------------------------------------------------------------------------------------

async function soakRate(
  ctx: Ctx,
  broker: Broker,
): Promise<{ rate: number; rateSource: string; capacity?: SoakCapacity }> {
  if (ctx.opts.soakRate !== undefined) return { rate: ctx.opts.soakRate, rateSource: "--soak-rate" };
  const { concurrency, soakCapacityMs } = ctx.opts;
  ctx.progress.step(
    `soak: sustained capacity, closed loop at ${concurrency} conns for ${soakCapacityMs / 1000} s`,
  );
  const capacity = await measureCapacity(ctx, broker, {
    layout: "split",
    warmupMs: ctx.opts.soakCapacityWarmupMs,
    durationMs: soakCapacityMs,
  });
  const rate = Math.max(1, Math.round(capacity.tradingPerSec / 2));
  const rateSource = `half the sustained capacity: TRADING kept up with ${Math.round(capacity.tradingPerSec).toLocaleString("en-US")} events/s over ${capacity.windowS.toFixed(0)} s of a ${capacity.concurrency}-connection closed loop (API answered ${Math.round(capacity.httpRps).toLocaleString("en-US")} req/s)`;
  return { rate, rateSource, capacity };
}

/** What an open-loop run (the soak's, the pipeline phase's tail) saw: a row per interval, the outcome, the CPU. */
export type OpenLoopRun = {
  rows: SoakRow[];
  checks: SoakCheck[];
  totals: SoakResult["totals"];
  postgresSamples: PostgresMemory[];
  cpu: CpuReport;
  /** The load before the rows (same rate, not in any row; in the outcome checks). */
  warmup: { seconds: number; accepted: number };
};

/**
 * The split pipeline on fresh streams and a fresh database under an open loop at `rate` for `durationMs`, a row
 * per `intervalMs` (`label` heads the live lines); then up to SETTLE_MS for accepted orders still on their way, and
 * the outcome checks G1–G4.
 */
export async function runOpenLoop(
  ctx: Ctx,
  broker: Broker,
  options: { rate: number; durationMs: number; intervalMs: number; label: string; warmupMs?: number },
): Promise<OpenLoopRun> {
  const { rate, durationMs, intervalMs, label, warmupMs = 0 } = options;
  await freshTopology(ctx);
  const databaseUrl = await ctx.newDatabase();
  await quiet(ctx);
  const pipeline = await startPipeline(ctx, broker, databaseUrl);
  const rec = new SoakRecorder(intervalMs, durationMs, warmupMs);
  const sub = broker.nc.subscribe("trading.>", {
    callback: (_error, msg) => {
      const at = wallMs();
      const event = msg.json() as { referenceId?: string; sequenceId?: string };
      if (event.referenceId) rec.onTrading(event.referenceId, Number(event.sequenceId), at);
    },
  });
  try {
    const readers = memoryReaders(ctx, broker, pipeline);
    const postgresSamples: PostgresMemory[] = [];
    const meter = new CpuMeter(cpuGroups(ctx, broker, pipeline));
    // A service that dies stops the generator at once, and the sampler's error is the one reported.
    const failed = new AbortController();
    let sampled: Promise<void> = Promise.resolve();
    const load = await runSoakLoad(
      target(ctx, pipeline.apiPort),
      { rate, maxInFlight: SOAK_MAX_IN_FLIGHT, durationMs: warmupMs + durationMs, signal: failed.signal },
      {
        onStart: (startMs) => {
          rec.start = startMs;
          sampled = sampleEachInterval(ctx, label, rec, pipeline, readers, postgresSamples);
          sampled.catch(() => failed.abort());
        },
        onAnswer: (answer) => rec.onAnswer(answer),
      },
    ).catch(async (error: unknown) => {
      await sampled;
      throw error;
    });
    await sampled;
    const cpu = meter.stop({ loadgen: load.generatorCpuS });
    const settleDeadline = Date.now() + SETTLE_MS;
    while (rec.awaitingCount > 0 && Date.now() < settleDeadline) await Bun.sleep(100);
    const checks = await checkOutcome(databaseUrl, broker, rec);
    const rows = rec.buckets.map((_, i) => rec.row(i));
    const total = (pick: (r: SoakRow) => number) => rows.reduce((s, r) => s + pick(r), 0);
    return {
      rows,
      checks,
      totals: {
        due: total((r) => r.accepted + r.non2xx + r.failed + r.skipped),
        accepted: total((r) => r.accepted),
        non2xx: total((r) => r.non2xx),
        failed: total((r) => r.failed),
        failureReasons: Object.fromEntries(rec.failureReasons),
        skipped: total((r) => r.skipped),
        sequencedAfterEnd: rec.sequencedAfterEnd,
      },
      warmup: { seconds: warmupMs / 1000, accepted: rec.warmup.accepted },
      postgresSamples,
      cpu,
    };
  } finally {
    sub.unsubscribe();
    await stopPipeline(pipeline);
  }
}

/** "N failed", with the reasons when any failed ("3 failed (no-answer-within-30000-ms 3)"). */
export function failedText(totals: Pick<SoakResult["totals"], "failed" | "failureReasons">): string {
  const reasons = Object.entries(totals.failureReasons ?? {})
    .sort((a, b) => b[1] - a[1])
    .map(([reason, n]) => `${reason} ${n}`);
  return `${totals.failed} failed${reasons.length ? ` (${reasons.join(", ")})` : ""}`;
}

export async function measureSoak(ctx: Ctx): Promise<SoakResult> {
  const broker = brokerOf(ctx);
  try {
    const { rate, rateSource, capacity } = await soakRate(ctx, broker);
    ctx.progress.note(`soak rate: ${rate.toLocaleString("en-US")} req/s, ${rateSource}`);
    const durationMs = Math.round(ctx.opts.soakMinutes * 60_000);
    const intervalMs = Math.min(ctx.opts.soakIntervalMs, durationMs);
    ctx.progress.step(
      `soak: ${ctx.opts.soakMinutes} min at ${rate.toLocaleString("en-US")} req/s open loop, a row per ${intervalMs / 1000} s`,
    );
    const run = await runOpenLoop(ctx, broker, { rate, durationMs, intervalMs, label: "soak" });
    return {
      rate,
      rateSource,
      ...(capacity ? { capacity } : {}),
      minutes: ctx.opts.soakMinutes,
      intervalS: intervalMs / 1000,
      broker: broker.description,
      rows: run.rows,
      trends: trends(run.rows),
      checks: run.checks,
      totals: run.totals,
      postgresSamples: run.postgresSamples,
      cpu: run.cpu,
    };
  } finally {
    await resetStreams(broker.jsm).catch(() => {});
  }
}
