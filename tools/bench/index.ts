/**
 * `npm run bench -- [--quick] [--json <path>] …` (= `bun tools/bench/index.ts …`): measures the service against
 * baselines in the same run and prints a table of figures with ratios (ours ÷ baseline) and the performance targets (docs/performance.md); writes JSON to
 * bench/results/<timestamp>.json (or --json), and SVG charts (throughput.svg, latency-over-time.svg) beside it.
 * Starts its own nats-server and PostgreSQL on free loopback ports unless NATS_URL / DATABASE_URL are set. See
 * docs/performance.md.
 */
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { cpus, loadavg, tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import postgres from "postgres";
import { INTAKE_STREAM, TRADING_STREAM } from "../../src/adapters/nats/topology.ts";
import { TokenService } from "../../src/app/auth.ts";
import { startLocalPostgres } from "../services/local-services.ts";
import { newBrokerAuth, type StartedBroker, startAuthenticatedNats } from "./broker.ts";
import { writeCharts } from "./chart-files.ts";
import { type CpuGroups, parentPid, processCpuSeconds, treeCpuSeconds } from "./cpu.ts";
import { type GrowthResult, growthNote, growthSteps, measureGrowth, renderGrowth } from "./growth.ts";
import { pickGenerator } from "./loadgen/index.ts";
import {
  BENCH_SUMMARY,
  BENCH_USAGE,
  type BenchOptions,
  BenchUsageError,
  parseBenchOptions,
} from "./options.ts";
import {
  type BatchStats,
  type Ctx,
  type DrainResult,
  type IngestResult,
  measureDrain,
  measureEndToEnd,
  measureIngest,
  measureRawPublish,
  mintBenchTokens,
  resetStreams,
  serviceEnv,
} from "./phases.ts";
import { measurePipeline } from "./pipeline.ts";
import { renderPipeline } from "./pipeline-report.ts";
import { killAll, provision } from "./processes.ts";
import { formatProfile } from "./profile.ts";
import { Progress } from "./progress.ts";
import { measureReplay, profileReplay, type ReplayResult } from "./replay.ts";
import { type RunResult, renderSoak, renderTable, summarize } from "./report.ts";
import { measureSoak, type SoakResult } from "./soak.ts";
import { warmWal } from "./wal-warmup.ts";

const RESULTS_DIR = resolve(import.meta.dir, "../../bench/results");
/** Temp dirs of this run (child logs, data), removed on exit — also after Ctrl-C. */
const tempDirs = new Set<string>();

type Databases = { create(): Promise<string>; dropAll(): Promise<void> };

/** Fresh databases on the cluster behind `adminUrl`, dropped at the end. */
function databases(adminUrl: string): Databases {
  const admin = postgres(adminUrl, { max: 1, onnotice: () => {} });
  const created: string[] = [];
  return {
    async create() {
      const name = `bench_${process.pid}_${created.length + 1}`;
      await admin.unsafe(`drop database if exists "${name}"`);
      await admin.unsafe(`create database "${name}"`);
      created.push(name);
      const url = new URL(adminUrl);
      url.pathname = `/${name}`;
      return url.toString();
    },
    async dropAll() {
      for (const name of created)
        await admin.unsafe(`drop database if exists "${name}" with (force)`).catch(() => {});
      await admin.end({ timeout: 5 });
    },
  };
}

function versionOf(cmd: string[]): string {
  const r = Bun.spawnSync(cmd, { stdout: "pipe", stderr: "pipe" });
  return `${r.stdout.toString()}${r.stderr.toString()}`.trim().split("\n")[0] ?? "";
}

const fmt = (v: number) => Math.round(v).toLocaleString("en-US");
const cpuLine = (corePct: Record<string, number>, machine: number) =>
  `CPU (% of one core): ${Object.entries(corePct)
    .map(([k, v]) => `${k} ${v.toFixed(0)}`)
    .join(", ")}; machine ${machine.toFixed(0)} % busy`;

function ingestNote(name: string, r: IngestResult): string {
  return `ingest ${name}: ${fmt(r.rps)} req/s, p50 ${r.p50Ms.toFixed(2)} ms, p99 ${r.p99Ms.toFixed(2)} ms, ${r.non2xx} non-2xx, ${r.errors} errors; RSS ${r.rssMb.toFixed(0)} MB; ${cpuLine(r.cpu.corePct, r.cpu.machineBusyPct)}`;
}

function batchNote(b: BatchStats | undefined): string {
  return b
    ? `; ${fmt(b.batches)} batches of ${b.meanBatchSize.toFixed(b.meanBatchSize < 10 ? 1 : 0)}, mean ms per batch: ${Object.entries(
        b.meanMs,
      )
        .map(([k, v]) => `${k} ${v.toFixed(1)}`)
        .join(", ")}`
    : "";
}

function drainNote(name: string, r: DrainResult): string {
  return `drain ${name}: ${fmt(r.events)} events in ${r.seconds.toFixed(2)} s = ${fmt(r.eventsPerSec)} events/s (start-up ${r.startupS.toFixed(2)} s); RSS ${r.rssMb.toFixed(0)} MB; ${cpuLine(r.cpu.corePct, r.cpu.machineBusyPct)}${batchNote(r.batches)}`;
}

function replayNote(r: ReplayResult): string {
  const reader = (name: string, x: ReplayResult["ours"]) =>
    `${name} ${fmt(x.eventsPerSec)} events/s (${x.seconds.toFixed(2)} s, RSS ${x.rssMb.toFixed(0)} MB; ${cpuLine(x.cpu.corePct, x.cpu.machineBusyPct)})`;
  return `replay of ${fmt(r.events)} events (TRADING filled in ${r.fillS.toFixed(1)} s): ${reader("replay", r.ours)}; ${reader("raw ordered consumer", r.raw)}; ratio ${(r.ours.eventsPerSec / r.raw.eventsPerSec).toFixed(2)}×`;
}

export async function runBench(argv: string[]): Promise<void> {
  // Help is an answer, not an error: on stdout, exit 0.
  if (argv.includes("--help") || argv.includes("-h")) {
    process.stdout.write(`${BENCH_USAGE}\n${BENCH_SUMMARY}\n`);
    process.exit(0);
  }
  let opts: BenchOptions;
  try {
    opts = parseBenchOptions(argv);
  } catch (error) {
    if (error instanceof BenchUsageError || isParseArgsError(error)) {
      process.stderr.write(`${(error as Error).message}\n${BENCH_USAGE}\n`);
      process.exit(64);
    }
    throw error;
  }
  process.on("SIGINT", () => {
    killAll();
    if (!process.env.BENCH_KEEP_LOGS)
      for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
    process.exit(130); // local-services' exit hook stops nats-server and PostgreSQL
  });
  try {
    await bench(opts);
  } catch (error) {
    killAll();
    throw error;
  }
  process.exit(0);
}

async function bench(opts: BenchOptions): Promise<void> {
  const startedAt = new Date();
  const loadStart = loadavg();
  const generator = pickGenerator(opts.generator);
  const phaseSteps =
    (opts.phases.has("ingest") ? 3 : 0) +
    (opts.phases.has("raw") ? 2 : 0) +
    (opts.phases.has("drain") ? 2 : 0) +
    (opts.phases.has("e2e") ? 1 : 0) +
    // split, role all, the tail
    (opts.phases.has("pipeline") ? 3 : 0) +
    (opts.phases.has("replay") ? 1 : 0);
  // The soak runs once, after the repeated phases: a capacity step (unless --soak-rate) and the soak itself.
  const soakSteps = opts.phases.has("soak") ? (opts.soakRate === undefined ? 2 : 1) : 0;
  const progress = new Progress(
    1 +
      opts.runs * phaseSteps +
      soakSteps +
      (opts.phases.has("growth") ? growthSteps(opts) : 0) +
      (opts.profile
        ? (opts.phases.has("replay") ? 1 : 0) + (opts.phases.size === 1 && opts.phases.has("replay") ? 0 : 2)
        : 0),
  );
  progress.step("starting nats-server and PostgreSQL");

  // Authenticated, per-role users (broker.ts): every figure includes the security work. Not on NATS_URL.
  const natsAuth = process.env.NATS_URL ? undefined : newBrokerAuth();
  const nats: StartedBroker | undefined = natsAuth ? await startAuthenticatedNats(natsAuth) : undefined;
  const natsUrl = process.env.NATS_URL || (nats?.url as string);
  const localPg = process.env.DATABASE_URL
    ? undefined
    : await startLocalPostgres({ durable: !opts.pgFast, settings: opts.pgSettings });
  const adminUrl = process.env.DATABASE_URL || (localPg?.adminUrl as string);
  // Only the bench's own cluster: a DATABASE_URL server is someone's running database, its WAL long warm.
  const walWarmup =
    localPg && opts.walWarmupMb > 0 ? await warmWal(localPg.adminUrl, opts.walWarmupMb) : undefined;
  const durability = opts.pgFast
    ? "fsync, synchronous_commit and full_page_writes off (--pg-fast)"
    : "durable defaults: fsync, synchronous_commit on";
  const extra = Object.entries(opts.pgSettings).map(([name, value]) => `${name}=${value}`);
  const configured = extra.length > 0 ? `${durability}; --pg-setting ${extra.join(", ")}` : durability;
  const pgSettings = walWarmup
    ? `${configured}; WAL warmed: ${walWarmup.mb} MB written and checkpointed first (${walWarmup.segments} segments to recycle, ${walWarmup.seconds.toFixed(1)} s), as in a running database`
    : configured;
  const nc = await connect({ servers: natsUrl, noAsyncTraces: true, ...(natsAuth?.admin ?? {}) });
  const jsm = await jetstreamManager(nc);
  const js = jetstream(nc);
  if (process.env.NATS_URL && !opts.force) {
    for (const stream of [INTAKE_STREAM, TRADING_STREAM]) {
      const messages = await jsm.streams
        .info(stream)
        .then((info) => info.state.messages)
        .catch(() => 0);
      if (messages > 0) {
        throw new Error(
          `NATS_URL: stream ${stream} holds ${messages} messages; the bench deletes SEQUENCE and TRADING between phases. ` +
            "Use a scratch server, or pass --force to allow it.",
        );
      }
    }
  }
  const dbs = databases(adminUrl);
  const admin = postgres(adminUrl, { max: 1, onnotice: () => {} });
  const [pgInfo] = await admin<{ version: string; pid: number }[]>`
    select current_setting('server_version') as version, pg_backend_pid() as pid`;
  const postmaster = pgInfo ? parentPid(pgInfo.pid) : null;
  await admin.end();

  const infraCpu: CpuGroups = {};
  const natsPid = nats?.pid;
  if (natsPid) infraCpu.nats = () => processCpuSeconds(natsPid);
  if (postmaster && postmaster > 1) infraCpu.postgres = () => treeCpuSeconds(postmaster);

  const secret = randomBytes(32).toString("hex");
  const workDir = mkdtempSync(join(tmpdir(), "sequencer-bench-"));
  tempDirs.add(workDir);
  const logDir = join(workDir, "logs");
  const dataDir = join(workDir, "data");
  mkdirSync(logDir);
  mkdirSync(dataDir);
  const ctx: Ctx = {
    opts,
    natsUrl,
    natsAuth,
    natsPid,
    nc,
    js,
    jsm,
    newDatabase: () => dbs.create(),
    logDir,
    dataDir,
    secret,
    // Many users, as real traffic has: the per-user RATE_LIMIT stays on at its default and no user nears it.
    tokens: await mintBenchTokens(new TokenService(secret)),
    generator,
    progress,
    infraCpu,
    postmasterPid: postmaster && postmaster > 1 ? postmaster : undefined,
  };

  // The KV buckets and streams, as a deployment's `sequencer provision` makes them: the runtime roles may not.
  if (natsAuth) await provision(serviceEnv(ctx, {}, "admin"), logDir);

  const natsVersion = nc.info?.version ? `nats-server v${nc.info.version}` : "nats-server";
  const header = [
    `sequencer bench — ${startedAt.toISOString()}${opts.quick ? " (--quick: tiny sizes, figures not meaningful)" : ""}`,
    `machine: ${cpus().length} CPUs, load average (1 min) ${loadStart[0]?.toFixed(2)} at start`,
    `load generator: ingest ${generator.kind === "wrk" ? generator.description : generator.description}; end to end: built-in Bun generator (open loop, fixed rate)`,
    `services: ${natsVersion} ${nats ? "(started here, file store in a temp dir; per-role users and permissions, every process connects as its role)" : "(NATS_URL, without authentication: the bench cannot add users there)"}, PostgreSQL ${pgInfo?.version} ${
      localPg ? `(throwaway cluster started here; ${pgSettings})` : "(DATABASE_URL)"
    }`,
  ];
  process.stderr.write(`${header.join("\n")}\n`);

  const runs: RunResult[] = [];
  const profiles: {
    api?: IngestResult["profile"];
    sequencer?: DrainResult["profile"];
    replay?: DrainResult["profile"];
  } = {};
  let soak: SoakResult | undefined;
  let growth: GrowthResult | undefined;
  try {
    for (let run = 1; run <= opts.runs; run++) {
      const tag = opts.runs > 1 ? ` (run ${run}/${opts.runs})` : "";
      const result: RunResult = {};
      if (opts.phases.has("ingest")) {
        const c = opts.concurrency;
        progress.step(`ingest: bare Elysia + publish, ${c} conns${tag}`);
        const bare = await measureIngest(ctx, "bare");
        progress.note(ingestNote("bare publish", bare));
        progress.step(`ingest: just-Postgres, ${c} conns${tag}`);
        const justPostgres = await measureIngest(ctx, "justPostgres");
        progress.note(ingestNote("just-Postgres", justPostgres));
        progress.step(`ingest: the service (serve --role api), ${c} conns${tag}`);
        const ours = await measureIngest(ctx, "ours");
        progress.note(ingestNote("ours", ours));
        result.ingest = { ours, bare, justPostgres };
      }
      if (opts.phases.has("raw")) {
        progress.step(`raw JetStream publish, ${fmt(opts.rawMessages)} messages${tag}`);
        const plain = await measureRawPublish(ctx, false);
        progress.step(`raw JetStream publish, noAsyncTraces${tag}`);
        const noAsyncTraces = await measureRawPublish(ctx, true);
        progress.note(
          `raw publish: ${fmt(plain.msgsPerSec)} msg/s (default options), ${fmt(noAsyncTraces.msgsPerSec)} msg/s (noAsyncTraces)`,
        );
        result.raw = { default: plain, noAsyncTraces };
      }
      if (opts.phases.has("drain")) {
        progress.step(`drain: naive loop, ${fmt(opts.drainEvents)} events${tag}`);
        const naive = await measureDrain(ctx, "naive");
        progress.note(drainNote("naive", naive));
        progress.step(`drain: the sequencer (serve --role sequencer), ${fmt(opts.drainEvents)} events${tag}`);
        const ours = await measureDrain(ctx, "ours");
        progress.note(drainNote("ours", ours));
        result.drain = { ours, naive };
      }
      if (opts.phases.has("e2e")) {
        progress.step(`end to end at ${fmt(opts.e2eRate)} req/s for ${opts.e2eDurationMs / 1000} s${tag}`);
        const e2e = await measureEndToEnd(ctx);
        progress.note(
          `end to end: ${fmt(e2e.samples)} events, p50 ${e2e.p50Ms.toFixed(2)} ms, p99 ${e2e.p99Ms.toFixed(2)} ms, max ${e2e.maxMs.toFixed(1)} ms (HTTP p99 ${e2e.httpP99Ms.toFixed(2)} ms, ${fmt(e2e.achievedRps)} req/s answered, ${e2e.missing} missing, ${e2e.skipped} skipped); RSS api ${e2e.rssMb.api.toFixed(0)} MB, sequencer ${e2e.rssMb.sequencer.toFixed(0)} MB; GET /metrics api ${e2e.metricsScrapeMs.api.toFixed(0)} ms, sequencer ${e2e.metricsScrapeMs.sequencer.toFixed(0)} ms; ${cpuLine(e2e.cpu.corePct, e2e.cpu.machineBusyPct)}${batchNote(e2e.batches)}`,
        );
        result.e2e = e2e;
      }
      if (opts.phases.has("pipeline")) result.pipeline = await measurePipeline(ctx, tag);
      if (opts.phases.has("replay")) {
        progress.step(
          `replay: sequencer replay --after 0 and a raw ordered consumer, ${fmt(opts.replayEvents)} events${tag}`,
        );
        const replayed = await measureReplay(ctx);
        progress.note(replayNote(replayed));
        result.replay = replayed;
      }
      runs.push(result);
    }
    if (opts.phases.has("soak")) {
      soak = await measureSoak(ctx);
      progress.note(`soak: ${cpuLine(soak.cpu.corePct, soak.cpu.machineBusyPct)}`);
    }
    if (opts.phases.has("growth")) {
      growth = await measureGrowth(ctx);
      progress.note(growthNote(growth));
    }
    if (opts.profile) {
      const dir = (role: string) => {
        const path = join(RESULTS_DIR, `profile-${stamp(startedAt)}`, role);
        mkdirSync(path, { recursive: true });
        return path;
      };
      if (opts.phases.has("replay")) {
        progress.step(
          `replay profiled (bun --cpu-prof on sequencer replay), ${fmt(opts.replayEvents)} events`,
        );
        const replayed = await profileReplay(ctx, dir("replay"));
        progress.note(
          `replay, profiled: ${fmt(replayed.eventsPerSec)} events/s (${replayed.seconds.toFixed(2)} s)`,
        );
        profiles.replay = replayed.profile;
      }
      // --only replay --profile profiles the replay alone.
      if (!(opts.phases.size === 1 && opts.phases.has("replay"))) {
        progress.step(`ingest profiled (bun --cpu-prof on the API), ${opts.concurrency} conns`);
        const api = await measureIngest(ctx, "ours", dir("api"));
        progress.note(ingestNote("ours, profiled", api));
        profiles.api = api.profile;
        progress.step(`drain profiled (bun --cpu-prof on the sequencer), ${fmt(opts.drainEvents)} events`);
        const sequencer = await measureDrain(ctx, "ours", dir("sequencer"));
        progress.note(drainNote("ours, profiled", sequencer));
        profiles.sequencer = sequencer.profile;
      }
    }
  } finally {
    await resetStreams(jsm).catch(() => {});
    await nc.close();
    await dbs.dropAll();
    await nats?.handle.stop();
    await localPg?.stop();
    if (process.env.BENCH_KEEP_LOGS) process.stderr.write(`child logs kept in ${logDir}\n`);
    else rmSync(workDir, { recursive: true, force: true });
  }
  progress.done();

  const loadEnd = loadavg();
  header[1] = `machine: ${cpus().length} CPUs, load average (1 min) ${loadStart[0]?.toFixed(2)} at start, ${loadEnd[0]?.toFixed(2)} at end`;
  const summary = summarize(runs, opts.e2eRate);
  const table = renderTable(summary, header, opts.e2eRate, opts.runs);
  const jsonPath = resolve(opts.jsonPath ?? join(RESULTS_DIR, `${stamp(startedAt)}.json`));
  const json = {
    version: 1,
    command: `npm run bench -- ${process.argv.slice(2).join(" ")}`.trim(),
    startedAt: startedAt.toISOString(),
    finishedAt: new Date().toISOString(),
    quick: opts.quick,
    options: { ...opts, phases: [...opts.phases] },
    machine: {
      cpus: cpus().length,
      cpuModel: cpus()[0]?.model,
      loadavgStart: loadStart,
      loadavgEnd: loadEnd,
      bun: Bun.version,
      natsServer: nc.info?.version ?? natsVersion,
      postgres: pgInfo?.version,
      wrk:
        generator.kind === "wrk" ? generator.description : versionOf(["sh", "-c", "command -v wrk || true"]),
    },
    generator: { ingest: generator.kind, ingestDescription: generator.description, e2e: "bun" },
    services: {
      nats: nats ? "started by the bench" : "NATS_URL",
      postgres: localPg ? `started by the bench; ${pgSettings}` : "DATABASE_URL",
    },
    figures: summary.figures,
    targets: summary.targets,
    runs,
    ...(opts.profile ? { profiles } : {}),
    ...(soak ? { soak } : {}),
    ...(growth ? { growth } : {}),
  };
  mkdirSync(dirname(jsonPath), { recursive: true });
  writeFileSync(jsonPath, `${JSON.stringify(json, null, 2)}\n`);
  // Drawn from the JSON as written (NaN → null), so a redraw from the saved file gives the same bytes.
  const charts = writeCharts(JSON.parse(JSON.stringify(json)), dirname(jsonPath));
  // The phases' table when any of them ran; with --only soak or growth, just the header above their tables.
  const ranPhases = [...opts.phases].some((phase) => phase !== "soak" && phase !== "growth");
  process.stdout.write(`\n${ranPhases ? table : header.join("\n")}\n`);
  runs.forEach((run, i) => {
    const heading = opts.runs > 1 ? `pipeline (run ${i + 1}/${opts.runs})` : "pipeline";
    if (run.pipeline) process.stdout.write(`\n${renderPipeline(run.pipeline, heading)}\n`);
  });
  if (soak) process.stdout.write(`\n${renderSoak(soak)}\n`);
  if (growth) process.stdout.write(`\n${renderGrowth(growth)}\n`);
  for (const [role, profile] of Object.entries(profiles)) {
    if (!profile) continue;
    process.stdout.write(
      `\n${role} CPU profile (self time, whole process life, top ${profile.top.length}; ${profile.file}):\n${formatProfile(profile.top)}\n`,
    );
  }
  process.stdout.write(`\nJSON: ${jsonPath}\ncharts: ${charts.join(", ")}\n`);
}

function stamp(date: Date): string {
  return date.toISOString().replace(/[:.]/g, "-");
}

/** node:util parseArgs refuses an unknown option or a missing value with a TypeError coded ERR_PARSE_ARGS_*. */
function isParseArgsError(error: unknown): boolean {
  return error instanceof TypeError && "code" in error && String(error.code).startsWith("ERR_PARSE_ARGS");
}

if (import.meta.main) {
  runBench(process.argv.slice(2)).catch((error: unknown) => {
    process.stderr.write(`fatal: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(1);
  });
}
