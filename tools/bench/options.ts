/**
 * The bench's command-line options (`npm run bench -- …`), with the documented defaults (docs/performance.md) and the `--quick` (CI)
 * sizes.
 */
import { parseArgs } from "node:util";
import { NON_DURABLE_SETTINGS } from "../services/local-services.ts";
import type { GeneratorKind } from "./loadgen/index.ts";

/**
 * The phases of a default run. The pipeline phase follows e2e: the parts first (ingest, drain), then the whole at a
 * fixed rate (e2e), then the whole at its limit and at half of it (pipeline), whose ratio needs ingest's figure.
 */
export const PHASES = ["ingest", "raw", "drain", "e2e", "pipeline", "replay"] as const;
/** Phases run only when named in --only: the soak takes ten minutes by default, growth fills 10M rows. */
export const OPTIONAL_PHASES = ["soak", "growth"] as const;
export type Phase = (typeof PHASES)[number] | (typeof OPTIONAL_PHASES)[number];
const ALL_PHASES: readonly Phase[] = [...PHASES, ...OPTIONAL_PHASES];

export type BenchOptions = {
  quick: boolean;
  /** Where to write the JSON; default bench/results/<timestamp>.json. */
  jsonPath: string | undefined;
  generator: GeneratorKind | undefined;
  concurrency: number;
  warmupMs: number;
  durationMs: number;
  rawMessages: number;
  rawInFlight: number;
  drainEvents: number;
  /** Replay: the events TRADING is filled with, read by `sequencer replay --after 0` and a raw ordered consumer. */
  replayEvents: number;
  e2eRate: number;
  e2eWarmupMs: number;
  e2eDurationMs: number;
  /** Soak: how long the open-loop load runs (fractional minutes allowed, for smoke runs). */
  soakMinutes: number;
  /** Soak: one table row (RSS samples, latency percentiles) per this many ms; 60 000 = per minute. */
  soakIntervalMs: number;
  /** Soak: offered req/s; undefined = half the sustained capacity measured at the start of the phase. */
  soakRate: number | undefined;
  /** Soak: the capacity measurement's closed-loop warm-up and measured window. */
  soakCapacityWarmupMs: number;
  soakCapacityMs: number;
  /** Growth: the events of the large log the backlog is drained into (and the GETs read). */
  growthRows: number;
  /** Growth: the backlog drained into the empty log and into the large one. */
  growthBacklog: number;
  /** Pipeline: the closed loops' measured window (after --warmup), split and role all alike. */
  pipelineDurationMs: number;
  /** Pipeline: the tail's open loop at half the split capacity (fractional minutes allowed). */
  tailMinutes: number;
  /** Pipeline: one tail row (percentiles, counts) per this many ms. */
  tailIntervalMs: number;
  /** Repeat every measurement this many times (interleaved) and report medians. */
  runs: number;
  /** Profile the sequencer (bun --cpu-prof) during one extra drain. */
  profile: boolean;
  phases: Set<Phase>;
  /** Allow deleting SEQUENCE/TRADING on a NATS_URL server that holds messages. */
  force: boolean;
  /** Start the local PostgreSQL with the tests' settings (fsync, synchronous_commit, full_page_writes off). */
  pgFast: boolean;
  /** MB of WAL the bench's own PostgreSQL writes and checkpoints before the phases (wal-warmup.ts); 0 = none. */
  walWarmupMb: number;
  /** Before each measurement, wait (up to 2 min) for a second with the machine below this % busy; 0 = don't. */
  quietBelowPct: number;
  /** Extra environment for the service children (experiments: SEQUENCER_BATCH_SIZE=5000, …). */
  serviceEnv: Record<string, string>;
  /** Extra bun flags for the service children (experiments: --smol). */
  serviceBunFlags: string[];
  /** Extra postgresql.conf settings for the bench's own cluster (experiments: shared_buffers=1GB). */
  pgSettings: Record<string, string>;
};

export const BENCH_USAGE = `usage: npm run bench -- [--quick] [--json <path>] [--runs <n>] [--generator wrk|bun]
                        [--concurrency <n>] [--duration <s>] [--warmup <s>] [--drain-events <n>]
                        [--raw-messages <n>] [--e2e-rate <req/s>] [--e2e-duration <s>]
                        [--replay-events <n>] [--only ingest,raw,drain,e2e,pipeline,replay,soak,growth] [--soak-minutes <n>] [--soak-rate <req/s>]
                        [--soak-interval <s>] [--pipeline-duration <s>] [--tail-minutes <n>]
                        [--tail-interval <s>] [--profile] [--pg-fast] [--pg-setting NAME=VALUE]… [--wal-warmup-mb <n>] [--quiet-below <% busy>]
                        [--growth-rows <n>] [--growth-backlog <n>]
                        [--service-env KEY=VALUE]… [--service-bun-flag <flag>]… [--force]
       (npm run bench = bun tools/bench/index.ts)`;

/** What the bench does, under its usage in `--help`. */
export const BENCH_SUMMARY =
  "measures the service against its baselines in one run (every option: docs/performance.md)";

export class BenchUsageError extends Error {}

function positive(name: string, raw: string | undefined, fallback: number): number {
  if (raw === undefined) return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value <= 0) throw new BenchUsageError(`${name} must be a positive number`);
  return value;
}

export function parseBenchOptions(argv: string[]): BenchOptions {
  const { values } = parseArgs({
    args: argv,
    options: {
      quick: { type: "boolean", default: false },
      json: { type: "string" },
      generator: { type: "string" },
      concurrency: { type: "string" },
      duration: { type: "string" },
      warmup: { type: "string" },
      "raw-messages": { type: "string" },
      "drain-events": { type: "string" },
      "replay-events": { type: "string" },
      "e2e-rate": { type: "string" },
      "e2e-duration": { type: "string" },
      "soak-minutes": { type: "string" },
      "soak-rate": { type: "string" },
      "soak-interval": { type: "string" },
      "growth-rows": { type: "string" },
      "growth-backlog": { type: "string" },
      "pipeline-duration": { type: "string" },
      "tail-minutes": { type: "string" },
      "tail-interval": { type: "string" },
      runs: { type: "string" },
      only: { type: "string" },
      profile: { type: "boolean", default: false },
      force: { type: "boolean", default: false },
      "pg-fast": { type: "boolean", default: false },
      "wal-warmup-mb": { type: "string" },
      "quiet-below": { type: "string" },
      "service-env": { type: "string", multiple: true },
      "service-bun-flag": { type: "string", multiple: true },
      "pg-setting": { type: "string", multiple: true },
    },
  });
  const quick = values.quick ?? false;
  if (values.generator !== undefined && values.generator !== "wrk" && values.generator !== "bun") {
    throw new BenchUsageError("--generator must be wrk or bun");
  }
  const phases = new Set<Phase>();
  for (const name of (values.only ?? PHASES.join(",")).split(",")) {
    if (!ALL_PHASES.includes(name as Phase)) throw new BenchUsageError(`--only: unknown phase ${name}`);
    phases.add(name as Phase);
  }
  const serviceEnv = keyValues("--service-env", values["service-env"]);
  const pgSettings = keyValues("--pg-setting", values["pg-setting"]);
  // The report says "durable defaults" unless --pg-fast: no setting may quietly make that untrue.
  for (const name of Object.keys(pgSettings)) {
    if (DURABILITY_SETTINGS.has(name.toLowerCase())) {
      throw new BenchUsageError(
        `--pg-setting ${name}: durability is --pg-fast's to change, not an extra setting's`,
      );
    }
  }
  const seconds = (name: string, raw: string | undefined, fallback: number) =>
    Math.round(positive(name, raw, fallback) * 1000);
  return {
    quick,
    jsonPath: values.json,
    generator: values.generator as GeneratorKind | undefined,
    concurrency: Math.round(positive("--concurrency", values.concurrency, 64)),
    warmupMs: seconds("--warmup", values.warmup, quick ? 1 : 3),
    durationMs: seconds("--duration", values.duration, quick ? 1 : 10),
    rawMessages: Math.round(positive("--raw-messages", values["raw-messages"], quick ? 10_000 : 200_000)),
    rawInFlight: 2_000,
    drainEvents: Math.round(positive("--drain-events", values["drain-events"], quick ? 5_000 : 200_000)),
    replayEvents: Math.round(positive("--replay-events", values["replay-events"], quick ? 5_000 : 1_000_000)),
    e2eRate: positive("--e2e-rate", values["e2e-rate"], quick ? 500 : 5_000),
    e2eWarmupMs: quick ? 500 : 3_000,
    e2eDurationMs: seconds("--e2e-duration", values["e2e-duration"], quick ? 2 : 20),
    soakMinutes: positive("--soak-minutes", values["soak-minutes"], quick ? 0.25 : 10),
    soakIntervalMs: seconds("--soak-interval", values["soak-interval"], quick ? 3 : 60),
    soakRate: values["soak-rate"] === undefined ? undefined : positive("--soak-rate", values["soak-rate"], 0),
    soakCapacityWarmupMs: quick ? 1_000 : 3_000,
    soakCapacityMs: quick ? 3_000 : 20_000,
    growthRows: Math.round(positive("--growth-rows", values["growth-rows"], quick ? 20_000 : 10_000_000)),
    growthBacklog: Math.round(
      positive("--growth-backlog", values["growth-backlog"], quick ? 2_000 : 100_000),
    ),
    pipelineDurationMs: seconds("--pipeline-duration", values["pipeline-duration"], quick ? 3 : 20),
    tailMinutes: positive("--tail-minutes", values["tail-minutes"], quick ? 0.25 : 2),
    tailIntervalMs: seconds("--tail-interval", values["tail-interval"], quick ? 3 : 10),
    runs: Math.round(positive("--runs", values.runs, 1)),
    profile: values.profile ?? false,
    phases,
    force: values.force ?? false,
    pgFast: values["pg-fast"] ?? false,
    walWarmupMb:
      values["wal-warmup-mb"] === "0"
        ? 0
        : Math.round(positive("--wal-warmup-mb", values["wal-warmup-mb"], quick ? 0 : 1024)),
    serviceEnv,
    serviceBunFlags: values["service-bun-flag"] ?? [],
    pgSettings,
    quietBelowPct:
      values["quiet-below"] === "0" ? 0 : positive("--quiet-below", values["quiet-below"], quick ? 0 : 30),
  };
}

/** What --pg-fast turns off, and wal_sync_method (how a commit reaches the disk): --pg-setting may not touch them. */
const DURABILITY_SETTINGS = new Set([...Object.keys(NON_DURABLE_SETTINGS), "wal_sync_method"]);

/** Repeated NAME=VALUE options, as a record (the last of a name wins). */
function keyValues(option: string, pairs: readonly string[] | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const pair of pairs ?? []) {
    const eq = pair.indexOf("=");
    if (eq < 1) throw new BenchUsageError(`${option} takes NAME=VALUE`);
    out[pair.slice(0, eq)] = pair.slice(eq + 1);
  }
  return out;
}
