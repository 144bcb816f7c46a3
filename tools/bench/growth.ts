/**
 * The growth phase (`--only growth`; issue 17, target 6): what the log's size costs. The same backlog is drained
 * into an empty log and into one of --growth-rows events (default 10M; built by ./growth-log.ts), alternately over
 * a few rounds, each drain with its own database and an empty SEQUENCE; then GET /events near the end and
 * GET /references/<old id> are timed on both logs, call by call alternately, through `serve --role api` with a
 * reader token. Targets: the large log's drain ≥ 0.90× the empty log's (the median of the rounds' ratios); each
 * GET's p50 and p99 ≤ 1.2× the small log's.
 *
 * The large log's TRADING lives on a nats-server of its own (started here, as the bench's), filled once: the
 * empty log's drains delete and create SEQUENCE and TRADING on the bench's server between rounds, and the large
 * one keeps its TRADING, which each drain extends, so only SEQUENCE is created afresh for its next drain. With
 * NATS_URL there is one server: one round, TRADING filled right before the large drain.
 */
import { type JetStreamClient, type JetStreamManager, jetstream, jetstreamManager } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { asc, sql as dsql, eq, gt } from "drizzle-orm";
import postgres from "postgres";
import { postgresDb } from "../../src/adapters/db/client.ts";
import { events } from "../../src/adapters/db/schema.ts";
import { ensureTopology, INTAKE_STREAM, tradingWindowMs } from "../../src/adapters/nats/topology.ts";
import { TokenService } from "../../src/app/auth.ts";
import { freePort } from "../services/local-services.ts";
import { startAuthenticatedNats } from "./broker.ts";
import { processCpuSeconds } from "./cpu.ts";
import { buildLogDatabase, fillTradingWithLog, type LogBuild, logShape } from "./growth-log.ts";
import type { BenchOptions } from "./options.ts";
import { type Ctx, type DrainResult, freshTopology, measureDrain, serviceEnv, topology } from "./phases.ts";
import { type Child, spawnService, stopChild, waitReady } from "./processes.ts";
import { median, percentile, sortedCopy } from "./stats.ts";

export const GROWTH_DRAIN_TARGET = 0.9;
export const GROWTH_GET_TARGET = 1.2;
/** Events per GET /events page (the route's default). */
const PAGE = 100;
/** The old ids GET /references asks for: spread over this first part of each log. */
const OLD_PART = 0.1;

/** Rounds of (empty-log drain, large-log drain); one on a NATS_URL server (see the header). */
function roundsOf(opts: BenchOptions): number {
  // Five: a round's drains take ~3 s each and a round's ratio moved 0.72–1.12× between runs with no trend (three
  // rounds let one bad round decide the median; docs/performance.md, "Session 2026-12-01, third part").
  return process.env.NATS_URL ? 1 : opts.quick ? 2 : 5;
}

/** Progress steps the phase takes (index.ts counts them): build, TRADING fill, two drains a round, the GETs. */
export function growthSteps(opts: BenchOptions): number {
  return (process.env.NATS_URL ? 2 : 3) + 2 * roundsOf(opts);
}

export type GetTiming = { calls: number; p50Ms: number; p99Ms: number; maxMs: number };

export type TableSizes = {
  heapMb: number;
  indexesMb: number;
  totalMb: number;
  /** Each index of events, MB. */
  indexMb: Record<string, number>;
};

export type GrowthSide = {
  /** Events in the log when the GETs ran (after every drain into it). */
  events: number;
  /** One drain per round, in order. */
  drains: DrainResult[];
  /** Median of the rounds' events/s. */
  eventsPerSec: number;
  getEvents: GetTiming;
  getReferences: GetTiming;
  sizes: TableSizes;
};

export type GrowthResult = {
  rows: number;
  backlog: number;
  rounds: number;
  build: LogBuild & { tradingFillS: number; syncS: number; dedupWaitS: number };
  small: GrowthSide;
  large: GrowthSide;
  ratios: {
    /** Large ÷ small drain events/s, the median of the rounds' ratios: ≥ 0.90 is the target. */
    drain: number;
    /** Each round's ratio, in order. */
    drainRounds: number[];
    /** Large ÷ small latency: ≤ 1.2 is the target. */
    eventsP50: number;
    eventsP99: number;
    referencesP50: number;
    referencesP99: number;
  };
  /** EXPLAIN (ANALYZE, BUFFERS) on the large log of the two GETs' queries, with the generic plan the API settles on. */
  explain: { events: string[]; references: string[] };
  sharedBuffers: string;
};

/** Where the large log's TRADING lives. */
type Broker = {
  natsUrl: string;
  nc: NatsConnection;
  js: JetStreamClient;
  jsm: JetStreamManager;
  /** Its own server (started here): TRADING survives the empty log's drains. */
  own: boolean;
  cpu: Ctx["infraCpu"];
  stop(): Promise<void>;
};

async function largeLogBroker(ctx: Ctx): Promise<Broker> {
  // No users of our own (NATS_URL): one server, as the header says.
  if (!ctx.natsAuth) {
    const { natsUrl, nc, js, jsm, infraCpu } = ctx;
    return { natsUrl, nc, js, jsm, own: false, cpu: infraCpu, stop: async () => {} };
  }
  // The same users and passwords as the bench's own server (broker.ts), so a child's credentials work on both.
  const { handle: server, pid } = await startAuthenticatedNats(ctx.natsAuth);
  const nc = await connect({ servers: server.url, noAsyncTraces: true, ...ctx.natsAuth.admin });
  const { nats: _benchServer, ...otherCpu } = ctx.infraCpu;
  return {
    natsUrl: server.url,
    nc,
    js: jetstream(nc),
    jsm: await jetstreamManager(nc),
    own: true,
    cpu: pid ? { ...otherCpu, nats: () => processCpuSeconds(pid) } : otherCpu,
    async stop() {
      await nc.close();
      await server.stop();
    },
  };
}

export async function measureGrowth(ctx: Ctx): Promise<GrowthResult> {
  const { growthRows: rows, growthBacklog: backlog } = ctx.opts;
  const rounds = roundsOf(ctx.opts);
  const fmt = (v: number) => v.toLocaleString("en-US");
  const smallCtx: Ctx = { ...ctx, opts: { ...ctx.opts, drainEvents: backlog } };

  ctx.progress.step(
    `growth: building a log of ${fmt(rows)} events (COPY, indexes, VACUUM ANALYZE, chain check)`,
  );
  const shape = logShape(rows);
  const largeUrl = await ctx.newDatabase();
  const built = await buildLogDatabase(largeUrl, shape);
  ctx.progress.note(
    `growth: ${fmt(rows)} events loaded in ${built.loadS.toFixed(1)} s, indexes ${built.indexS.toFixed(1)} s, VACUUM ANALYZE + CHECKPOINT ${built.vacuumS.toFixed(1)} s, chain checked by PostgreSQL in ${built.checkS.toFixed(1)} s${built.checkpoint ? ` (${built.checkpoint})` : ""}`,
  );

  const broker = await largeLogBroker(ctx);
  try {
    const { natsUrl, nc, js, jsm } = broker;
    const largeCtx: Ctx = { ...smallCtx, natsUrl, nc, js, jsm, infraCpu: broker.cpu };
    let tradingFillS = 0;
    let filledAt = 0;
    let dedupWaitS = 0;
    let syncS = 0;
    const fillTrading = async () => {
      await freshTopology(largeCtx);
      tradingFillS = await fillTradingWithLog(broker, shape, largeUrl);
      // The fill leaves gigabytes of TRADING in dirty pages; flushed now, so that the kernel's writeback of them
      // does not slow the first drain's commits (a log that grew over days has none pending).
      const syncStart = performance.now();
      const synced = Bun.spawnSync(["sync"]);
      if (!synced.success) throw new Error(`growth: sync failed: ${synced.stderr.toString().trim()}`);
      syncS = (performance.now() - syncStart) / 1000;
      filledAt = performance.now();
      ctx.progress.note(
        `growth: TRADING filled with the ${fmt(rows)} events in ${tradingFillS.toFixed(1)} s`,
      );
    };
    if (broker.own) {
      ctx.progress.step(`growth: TRADING of the large log filled (its own nats-server), ${fmt(rows)} events`);
      await fillTrading();
    }
    let largeEvents = rows;
    const largeDrain = async () => {
      const drained = await measureDrain(largeCtx, "ours", undefined, {
        databaseUrl: largeUrl,
        events: largeEvents,
        prepareStreams: async () => {
          if (!broker.own) await fillTrading();
          else {
            // TRADING holds the log up to its head; the next backlog goes into a fresh SEQUENCE.
            await broker.jsm.streams.delete(INTAKE_STREAM);
            await ensureTopology(broker.jsm, topology(ctx));
          }
          // The broker remembers every msg id of the fill for TRADING's duplicate window; a log that grew over days has
          // no such burst behind it, so the drain starts once the window has passed (not with --quick).
          const leftMs = ctx.opts.quick ? 0 : filledAt + tradingWindowMs(topology(ctx)) - performance.now();
          if (leftMs > 0) {
            ctx.progress.note(
              `growth: waiting ${(leftMs / 1000).toFixed(0)} s for the fill's duplicate window to pass`,
            );
            await Bun.sleep(leftMs);
            dedupWaitS += leftMs / 1000;
          }
        },
      });
      largeEvents += backlog;
      return drained;
    };
    let smallUrl = "";
    const smallDrain = async () => {
      smallUrl = await ctx.newDatabase();
      return measureDrain(smallCtx, "ours", undefined, {
        databaseUrl: smallUrl,
        events: 0,
        prepareStreams: () => freshTopology(ctx),
      });
    };

    const smallDrains: DrainResult[] = [];
    const largeDrains: DrainResult[] = [];
    for (let round = 1; round <= rounds; round++) {
      // Which log goes first alternates; the first round starts with the empty log (the fill's window passes).
      const order = round % 2 === 1 ? (["empty", "large"] as const) : (["large", "empty"] as const);
      for (const which of order) {
        ctx.progress.step(
          `growth: drain of ${fmt(backlog)} events into ${which === "empty" ? "an empty log" : `the log of ${fmt(largeEvents)}`} (round ${round}/${rounds})`,
        );
        if (which === "empty") smallDrains.push(await smallDrain());
        else largeDrains.push(await largeDrain());
      }
      const [s, l] = [smallDrains[round - 1], largeDrains[round - 1]];
      if (s && l) {
        ctx.progress.note(
          `growth round ${round}: drain ${fmt(Math.round(s.eventsPerSec))} (empty) vs ${fmt(Math.round(l.eventsPerSec))} events/s (large) = ${(l.eventsPerSec / s.eventsPerSec).toFixed(2)}×`,
        );
      }
    }

    ctx.progress.step(
      "growth: GET /events near the end and GET /references/<old id>, small and large log alternately",
    );
    // 2,000 a kind and log (~10 s): with 300 the p99 was the third-worst call and moved 0.78–1.38× between runs
    // with the same plans and buffers (docs/performance.md, "Session 2026-12-01, third part").
    const calls = ctx.opts.quick ? 50 : 2_000;
    const [small, large] = await timeGets(ctx, [smallUrl, largeUrl], calls);
    const [smallSizes, largeSizes] = [await sizesOf(smallUrl), await sizesOf(largeUrl)];
    const explain = await explainGets(largeUrl);
    const sharedBuffers = await settingOf(largeUrl, "shared_buffers");
    const side = (events: number, drains: DrainResult[], gets: SideGets, sizes: TableSizes): GrowthSide => ({
      events,
      drains,
      eventsPerSec: median(drains.map((d) => d.eventsPerSec)),
      getEvents: gets.events,
      getReferences: gets.references,
      sizes,
    });
    const drainRounds = largeDrains.map(
      (l, i) => l.eventsPerSec / (smallDrains[i] as DrainResult).eventsPerSec,
    );
    return {
      rows,
      backlog,
      rounds,
      build: { ...built, tradingFillS, syncS, dedupWaitS },
      small: side(backlog, smallDrains, small, smallSizes),
      large: side(largeEvents, largeDrains, large, largeSizes),
      ratios: {
        drain: median(drainRounds),
        drainRounds,
        eventsP50: large.events.p50Ms / small.events.p50Ms,
        eventsP99: large.events.p99Ms / small.events.p99Ms,
        referencesP50: large.references.p50Ms / small.references.p50Ms,
        referencesP99: large.references.p99Ms / small.references.p99Ms,
      },
      explain,
      sharedBuffers,
    };
  } finally {
    // Its own server goes with its store; on NATS_URL the bench deletes the streams at its end.
    await broker.stop();
  }
}

// ---------------------------------------------------------------------------------------------------------------
// The GETs
// ---------------------------------------------------------------------------------------------------------------

type SideGets = { events: GetTiming; references: GetTiming };

/** What one log is asked for: pages near its end, and reference ids from its oldest part. */
type Questions = { head: bigint; oldReferences: string[] };

async function questionsOf(databaseUrl: string, calls: number): Promise<Questions> {
  const sql = postgres(databaseUrl, { max: 1, onnotice: () => {} });
  try {
    const [row] = await sql<{ head: string }[]>`select max(sequence_id)::text as head from events`;
    const head = BigInt(row?.head ?? "0");
    const span = Math.max(1, Math.floor(Number(head) * OLD_PART));
    const ids = Array.from({ length: calls }, (_, i) => String(1 + Math.floor((i * span) / calls)));
    const refs = await sql<{ id: string; ref: string }[]>`
      select sequence_id::text as id, reference_id::text as ref from events
      where sequence_id = any(${ids}::bigint[])`;
    const byId = new Map(refs.map((r) => [r.id, r.ref]));
    return {
      head,
      oldReferences: ids.map((id) => {
        const ref = byId.get(id);
        if (ref === undefined) throw new Error(`growth: the log has no event ${id}`);
        return ref;
      }),
    };
  } finally {
    await sql.end();
  }
}

async function timedGet(
  url: string,
  authorization: string,
  expect: (body: string) => boolean,
): Promise<number> {
  const started = performance.now();
  const res = await fetch(url, { headers: { authorization } });
  const body = await res.text();
  const ms = performance.now() - started;
  if (res.status !== 200 || !expect(body))
    throw new Error(`growth: GET ${url} answered ${res.status}: ${body.slice(0, 300)}`);
  return ms;
}

function timing(samples: number[]): GetTiming {
  const sorted = sortedCopy(samples);
  return {
    calls: samples.length,
    p50Ms: percentile(sorted, 50),
    p99Ms: percentile(sorted, 99),
    maxMs: sorted[sorted.length - 1] ?? Number.NaN,
  };
}

/**
 * One API process per log; each call goes to one log and then the other (which goes first alternates), so both see
 * the same machine. A reader token: GET /events is for reader and admin tokens only, and a reader may read every
 * reference. The first tenth of the calls warm up (connections, prepared statements) and are not counted.
 */
async function timeGets(
  ctx: Ctx,
  databaseUrls: readonly [string, string],
  calls: number,
): Promise<[SideGets, SideGets]> {
  const authorization = `Bearer ${await new TokenService(ctx.secret).mint(1n, { role: "reader" })}`;
  const apis: { child: Child; port: number; questions: Questions; events: number[]; references: number[] }[] =
    [];
  try {
    for (const databaseUrl of databaseUrls) {
      const port = await freePort();
      const child = spawnService(
        "api",
        serviceEnv(ctx, { PORT: String(port), DATABASE_URL: databaseUrl }, "api"),
        ctx.logDir,
        ctx.opts.serviceBunFlags,
      );
      apis.push({
        child,
        port,
        questions: await questionsOf(databaseUrl, calls),
        events: [],
        references: [],
      });
      await waitReady(child, `http://127.0.0.1:${port}/readyz`);
    }
    const warmUp = Math.ceil(calls / 10);
    for (let i = -warmUp; i < calls; i++) {
      const order = i % 2 === 0 ? apis : [...apis].reverse();
      for (const api of order) {
        const base = `http://127.0.0.1:${api.port}`;
        const k = Math.max(0, i);
        const after = api.questions.head - BigInt(PAGE * (1 + (k % 10)));
        const page = await timedGet(`${base}/events?after=${after}&limit=${PAGE}`, authorization, (body) =>
          body.startsWith(`{"events":[{"sequenceId":"${after + 1n}"`),
        );
        const ref = api.questions.oldReferences[k] as string;
        const found = await timedGet(`${base}/references/${ref}`, authorization, (body) =>
          body.includes(`"referenceId":"${ref}"`),
        );
        if (i >= 0) {
          api.events.push(page);
          api.references.push(found);
        }
      }
    }
  } finally {
    for (const api of apis) await stopChild(api.child);
  }
  const [small, large] = apis.map((api) => ({
    events: timing(api.events),
    references: timing(api.references),
  }));
  if (!small || !large) throw new Error("growth: the GETs were timed on fewer than two logs");
  return [small, large];
}

// ---------------------------------------------------------------------------------------------------------------
// What PostgreSQL says
// ---------------------------------------------------------------------------------------------------------------

async function sizesOf(databaseUrl: string): Promise<TableSizes> {
  const sql = postgres(databaseUrl, { max: 1, onnotice: () => {} });
  const mb = (bytes: string) => Number(bytes) / 1_048_576;
  try {
    const [table] = await sql<{ heap: string; indexes: string; total: string }[]>`
      select pg_relation_size('events')::text as heap, pg_indexes_size('events')::text as indexes,
             pg_total_relation_size('events')::text as total`;
    const indexes = await sql<{ name: string; bytes: string }[]>`
      select indexrelname as name, pg_relation_size(indexrelid)::text as bytes
      from pg_stat_user_indexes where relname = 'events' order by indexrelname`;
    return {
      heapMb: mb(table?.heap ?? "0"),
      indexesMb: mb(table?.indexes ?? "0"),
      totalMb: mb(table?.total ?? "0"),
      indexMb: Object.fromEntries(indexes.map((i) => [i.name, mb(i.bytes)])),
    };
  } finally {
    await sql.end();
  }
}

async function settingOf(databaseUrl: string, name: string): Promise<string> {
  const sql = postgres(databaseUrl, { max: 1, onnotice: () => {} });
  try {
    const [row] = await sql<{ value: string }[]>`select current_setting(${name}) as value`;
    return row?.value ?? "";
  } finally {
    await sql.end();
  }
}

/**
 * The two GETs' queries as DrizzleEventStore builds them (readAfter; find by referenceId), rendered by Drizzle,
 * prepared and explained with the generic plan: postgres.js prepares every statement, and PostgreSQL settles on
 * the generic plan after five runs when it costs no more, so that is the plan the API runs.
 */
async function explainGets(databaseUrl: string): Promise<{ events: string[]; references: string[] }> {
  const sql = postgres(databaseUrl, { max: 1, onnotice: () => {} });
  try {
    const [row] = await sql<{ head: string; old: string }[]>`
      select max(sequence_id)::text as head,
             (select reference_id::text from events where sequence_id = 1000) as old from events`;
    const head = BigInt(row?.head ?? "0");
    const db = postgresDb(sql);
    const record = {
      sequenceId: events.sequenceId,
      type: events.type,
      payload: events.payload,
      digest: dsql<string>`encode(${events.digest}, 'hex')`,
    };
    const readAfter = db
      .select(record)
      .from(events)
      .where(gt(events.sequenceId, 0n))
      .orderBy(asc(events.sequenceId))
      .limit(PAGE)
      .toSQL().sql;
    const find = db.select(record).from(events).where(eq(events.referenceId, 1n)).limit(1).toSQL().sql;
    await sql`set plan_cache_mode = force_generic_plan`;
    await sql.unsafe(`prepare read_after(bigint, bigint) as ${readAfter}`);
    await sql.unsafe(`prepare find_reference(bigint, bigint) as ${find}`);
    const plan = async (statement: string) =>
      (await sql.unsafe<{ "QUERY PLAN": string }[]>(`explain (analyze, buffers) ${statement}`)).map((r) =>
        r["QUERY PLAN"].trim(),
      );
    return {
      events: await plan(`execute read_after(${head - BigInt(PAGE)}, ${PAGE})`),
      references: await plan(`execute find_reference(${row?.old ?? "0"}, 1)`),
    };
  } finally {
    await sql.end();
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Report
// ---------------------------------------------------------------------------------------------------------------

const int = (v: number) => Math.round(v).toLocaleString("en-US");
const ms = (v: number) => (v < 10 ? v.toFixed(2) : v.toFixed(1));
const x = (v: number) => `${v.toFixed(2)}×`;

/** One line for the progress log. */
export function growthNote(r: GrowthResult): string {
  return `growth (${int(r.rows)} rows vs empty, ${int(r.backlog)} backlog): drain ${int(r.small.eventsPerSec)} → ${int(r.large.eventsPerSec)} events/s (${x(r.ratios.drain)}, median of ${r.rounds} rounds, target ≥ ${GROWTH_DRAIN_TARGET}×); GET /events p50 ${ms(r.small.getEvents.p50Ms)} → ${ms(r.large.getEvents.p50Ms)} ms (${x(r.ratios.eventsP50)}), p99 ${x(r.ratios.eventsP99)}; GET /references p50 ${ms(r.small.getReferences.p50Ms)} → ${ms(r.large.getReferences.p50Ms)} ms (${x(r.ratios.referencesP50)}), p99 ${x(r.ratios.referencesP99)} (target ≤ ${GROWTH_GET_TARGET}×)`;
}

/**
 * The plan in one line: its nodes (what kind of scan, on which index, rows), then the top node's buffers (shared
 * hit = in PostgreSQL's cache, read = from the OS) and the execution time.
 */
function planLine(lines: readonly string[]): string {
  const bare = lines.map((l) => l.replace(/^->\s*/, ""));
  const nodes = bare
    .filter((l) => !/^(Planning|Execution|Buffers|Index Cond|Filter|Rows Removed|I\/O Timings)/.test(l))
    .map((l) => l.replace(/\s*\(cost=[^)]*\)/, "").replace(/\(actual time=[^ ]* /, "("));
  const buffers = bare.find((l) => l.startsWith("Buffers:"));
  const execution = bare.find((l) => l.startsWith("Execution Time:"));
  return [nodes.join(" → "), buffers, execution].filter(Boolean).join("; ");
}

/** MB with a decimal below 10. */
const mb = (v: number) => (v < 10 ? v.toFixed(1) : int(v));

function verdict(ratio: number, ok: boolean): string {
  return `${x(ratio)} ${ok ? "met" : "NOT MET"}`;
}

export function renderGrowth(r: GrowthResult): string {
  const rows: [string, string, string, string][] = [
    ["", "empty log", `${int(r.rows)}+ events`, "large ÷ empty"],
    [
      `drain of ${int(r.backlog)}, events/s (median of ${r.rounds})`,
      int(r.small.eventsPerSec),
      int(r.large.eventsPerSec),
      verdict(r.ratios.drain, r.ratios.drain >= GROWTH_DRAIN_TARGET),
    ],
    [
      "  each round, events/s (ratio)",
      r.small.drains.map((d) => int(d.eventsPerSec)).join(", "),
      r.large.drains.map((d) => int(d.eventsPerSec)).join(", "),
      r.ratios.drainRounds.map(x).join(", "),
    ],
    [
      "  mean transaction per batch, ms",
      r.small.drains.map((d) => ms(d.batches?.meanMs.transaction ?? Number.NaN)).join(", "),
      r.large.drains.map((d) => ms(d.batches?.meanMs.transaction ?? Number.NaN)).join(", "),
      "",
    ],
    [
      "  start-up (spawn → first delivery), s",
      r.small.drains.map((d) => d.startupS.toFixed(2)).join(", "),
      r.large.drains.map((d) => d.startupS.toFixed(2)).join(", "),
      "",
    ],
    [
      "  machine busy during the drain, %",
      r.small.drains.map((d) => d.cpu.machineBusyPct.toFixed(0)).join(", "),
      r.large.drains.map((d) => d.cpu.machineBusyPct.toFixed(0)).join(", "),
      "",
    ],
    [
      "sequencer peak RSS, MB",
      int(Math.max(...r.small.drains.map((d) => d.rssMb))),
      int(Math.max(...r.large.drains.map((d) => d.rssMb))),
      "",
    ],
  ];
  const get = (name: string, small: GetTiming, large: GetTiming, p50: number, p99: number) => {
    rows.push([`${name} p50 ms`, ms(small.p50Ms), ms(large.p50Ms), verdict(p50, p50 <= GROWTH_GET_TARGET)]);
    rows.push([`${name} p99 ms`, ms(small.p99Ms), ms(large.p99Ms), verdict(p99, p99 <= GROWTH_GET_TARGET)]);
  };
  get(
    `GET /events (${PAGE} near the end)`,
    r.small.getEvents,
    r.large.getEvents,
    r.ratios.eventsP50,
    r.ratios.eventsP99,
  );
  get(
    "GET /references/<old id>",
    r.small.getReferences,
    r.large.getReferences,
    r.ratios.referencesP50,
    r.ratios.referencesP99,
  );
  const size = (s: TableSizes) => `${mb(s.heapMb)} + ${mb(s.indexesMb)}`;
  rows.push(["events heap + indexes, MB", size(r.small.sizes), size(r.large.sizes), ""]);
  const widths = [0, 1, 2, 3].map((c) => Math.max(...rows.map((row) => row[c]?.length ?? 0)));
  const table = rows.map((row) =>
    row.map((cell, c) => (c === 0 ? cell.padEnd(widths[c] ?? 0) : cell.padStart(widths[c] ?? 0))).join("  "),
  );
  const b = r.build;
  return [
    `growth: cost as the log grows (${int(r.rows)} events built; a ${int(r.backlog)}-event backlog drained into an empty log and into the large one, alternately, ${r.rounds} rounds; then ${r.small.getEvents.calls} GETs of each kind per log, alternated, the large log at ${int(r.large.events)} events)`,
    ...table,
    `build: COPY ${b.loadS.toFixed(1)} s, indexes ${b.indexS.toFixed(1)} s, VACUUM ANALYZE + CHECKPOINT ${b.vacuumS.toFixed(1)} s, chain check ${b.checkS.toFixed(1)} s, TRADING fill ${b.tradingFillS.toFixed(1)} s (+ sync ${b.syncS.toFixed(1)} s, ${b.dedupWaitS.toFixed(0)} s duplicate window)${b.checkpoint ? `; ${b.checkpoint}` : ""}`,
    `indexes of the large log, MB: ${Object.entries(r.large.sizes.indexMb)
      .map(([name, size]) => `${name} ${mb(size)}`)
      .join(", ")}; shared_buffers ${r.sharedBuffers}`,
    `plan on the large log, GET /events: ${planLine(r.explain.events)}`,
    `plan on the large log, GET /references: ${planLine(r.explain.references)}`,
  ].join("\n");
}
