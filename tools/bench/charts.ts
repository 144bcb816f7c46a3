/**
 * The bench's charts (pure; files are written by chart-files.ts): from a bench result — the JSON index.ts writes,
 * in memory or read back from bench/results/ — a bar chart of each phase's throughput beside its baselines
 * (throughput.svg) and line charts of accept→TRADING percentiles per interval at the fixed rate
 * (latency-over-time.svg).
 */
import {
  type Bar,
  type BarGroup,
  barChartSvg,
  formatNumber,
  type LatencyPanel,
  type LatencyPoint,
  latencyChartSvg,
} from "./svg-charts.ts";

// ---------------------------------------------------------------------------------------------------------------

/** What the charts need of a bench result, checked (chartSource) so a saved file of another kind is refused. */
export type ChartSource = {
  startedAt: string;
  quick: boolean;
  cpus: number | undefined;
  loadavg: { start: number | undefined; end: number | undefined };
  figures: Record<string, number>;
  targets: { name: string; target: string; met: boolean }[];
  e2eRate: number | undefined;
  /** Each run's end-to-end p99 and its per-interval percentiles (runs without the phase left out). */
  e2eRuns: { run: number; p99Ms: number; intervalS: number; points: LatencyPoint[] }[];
  runCount: number;
  soak: { rate: number; intervalS: number; points: LatencyPoint[] } | undefined;
};

export class ChartInputError extends Error {}

type Json = Record<string, unknown>;
const isObject = (v: unknown): v is Json => typeof v === "object" && v !== null && !Array.isArray(v);
const num = (v: unknown): number | undefined => (typeof v === "number" && Number.isFinite(v) ? v : undefined);
const optional = (v: unknown): number | null => num(v) ?? null;

function points(rows: unknown, pick: (row: Json) => LatencyPoint | undefined): LatencyPoint[] {
  if (!Array.isArray(rows)) return [];
  return rows.flatMap((row) => {
    const p = isObject(row) ? pick(row) : undefined;
    return p ? [p] : [];
  });
}

/**
 * A bench result's figures and latency series, from the object index.ts writes as JSON (version 1). Throws
 * ChartInputError for anything else; figures that are not finite numbers are left out, never drawn.
 */
export function chartSource(json: unknown): ChartSource {
  if (
    !isObject(json) ||
    json.version !== 1 ||
    typeof json.startedAt !== "string" ||
    !isObject(json.figures)
  ) {
    throw new ChartInputError("not a bench result: expected the JSON `npm run bench` writes (version 1)");
  }
  if (!Array.isArray(json.runs)) throw new ChartInputError("not a bench result: `runs` is not a list");
  const figures: Record<string, number> = {};
  for (const [key, value] of Object.entries(json.figures)) {
    const v = num(value);
    if (v !== undefined) figures[key] = v;
  }
  const targets = (Array.isArray(json.targets) ? json.targets : []).flatMap((t) =>
    isObject(t) && typeof t.name === "string" && typeof t.target === "string" && typeof t.met === "boolean"
      ? [{ name: t.name, target: t.target, met: t.met }]
      : [],
  );
  const e2eRuns = json.runs.flatMap((run, i) => {
    const e2e = isObject(run) && isObject(run.e2e) ? run.e2e : undefined;
    const p99Ms = num(e2e?.p99Ms);
    if (!e2e || p99Ms === undefined) return [];
    const series = points(e2e.intervals, (r) =>
      num(r.atS) === undefined
        ? undefined
        : {
            atS: r.atS as number,
            p50Ms: optional(r.p50Ms),
            p99Ms: optional(r.p99Ms),
            maxMs: optional(r.maxMs),
          },
    );
    const first = series[0]?.atS;
    return [{ run: i + 1, p99Ms, intervalS: first ?? 0, points: series }];
  });
  const soak = isObject(json.soak) ? json.soak : undefined;
  const options = isObject(json.options) ? json.options : {};
  const machine = isObject(json.machine) ? json.machine : {};
  const load = (key: string) =>
    Array.isArray(machine[key]) ? num((machine[key] as unknown[])[0]) : undefined;
  return {
    startedAt: json.startedAt,
    quick: json.quick === true,
    cpus: num(machine.cpus),
    loadavg: { start: load("loadavgStart"), end: load("loadavgEnd") },
    figures,
    targets,
    e2eRate: num(options.e2eRate),
    e2eRuns,
    runCount: json.runs.length,
    soak: soak && {
      rate: num(soak.rate) ?? Number.NaN,
      intervalS: num(soak.intervalS) ?? Number.NaN,
      points: points(soak.rows, (r) =>
        num(r.atS) === undefined
          ? undefined
          : {
              atS: r.atS as number,
              p50Ms: optional(r.toTradingP50Ms),
              p99Ms: optional(r.toTradingP99Ms),
              maxMs: optional(r.toTradingMaxMs),
            },
      ),
    },
  };
}

/** "the service ÷ bare publish 0.55× (target ≥ 0.85×: met)", a line for each ratio the result holds. */
function ratioNotes(source: ChartSource, parts: [string, string, string][]): string[] {
  const notes = parts.flatMap(([label, key, targetName]) => {
    const value = source.figures[key];
    if (value === undefined) return [];
    const target = source.targets.find((t) => t.name === targetName);
    const verdict = target ? ` (target ${target.target}: ${target.met ? "met" : "not met"})` : "";
    return [`${label} ${value.toFixed(2)}×${verdict}`];
  });
  return notes;
}

/** The throughput figures report.ts prints, a group per phase with its baselines. */
export function throughputGroups(source: ChartSource): BarGroup[] {
  const f = source.figures;
  const bar = (label: string, key: string, baseline: boolean): Bar[] =>
    f[key] === undefined ? [] : [{ label, value: f[key] as number, baseline }];
  const groups: (BarGroup | undefined)[] = [
    {
      title: "Ingest: POST /orders, closed loop",
      unit: "req/s",
      bars: [
        ...bar("the service (api)", "ingest.ours.rps", false),
        ...bar("bare publish", "ingest.bare.rps", true),
        ...bar("just-Postgres", "ingest.justPostgres.rps", true),
      ],
      notes: ratioNotes(source, [
        ["the service ÷ bare publish", "ratio.ingestVsBare", "ingest ÷ bare publish"],
        ["the service ÷ just-Postgres", "ratio.ingestVsJustPostgres", "ingest ÷ just-Postgres"],
      ]),
    },
    {
      title: "Raw JetStream publish, no HTTP",
      unit: "msg/s",
      bars: [
        ...bar("default options", "raw.msgsPerSec", true),
        ...bar("noAsyncTraces", "raw.noAsyncTraces.msgsPerSec", true),
      ],
      notes: ratioNotes(source, [["the service's ingest ÷ raw publish", "ratio.ingestVsRawPublish", ""]]),
    },
    {
      title: "Drain: SEQUENCE → Postgres → TRADING",
      unit: "events/s",
      bars: [
        ...bar("the sequencer", "drain.ours.eventsPerSec", false),
        ...bar("naive loop", "drain.naive.eventsPerSec", true),
      ],
      notes: ratioNotes(source, [["the sequencer ÷ naive loop", "ratio.drainVsNaive", "drain ÷ naive loop"]]),
    },
    {
      title: "Replay: TRADING → stdout, from sequenceId 1",
      unit: "events/s",
      bars: [
        ...bar("sequencer replay", "replay.eventsPerSec", false),
        ...bar("raw ordered consumer", "replay.raw.eventsPerSec", true),
      ],
      notes: ratioNotes(source, [
        ["replay ÷ raw ordered consumer", "ratio.replayVsRaw", "replay ÷ raw ordered consumer"],
      ]),
    },
  ];
  return groups.filter((g): g is BarGroup => g !== undefined && g.bars.length > 0);
}

/**
 * The fixed-rate phases' latency over time: the end-to-end run whose p99 is the reported one (the median run), and
 * the soak's rows when it ran.
 */
export function latencyPanels(source: ChartSource): LatencyPanel[] {
  const panels: LatencyPanel[] = [];
  const reported = source.figures["e2e.p99Ms"];
  const run = [...source.e2eRuns].sort(
    (a, b) =>
      Math.abs(a.p99Ms - (reported ?? a.p99Ms)) - Math.abs(b.p99Ms - (reported ?? b.p99Ms)) || a.run - b.run,
  )[0];
  if (run) {
    const rate = source.e2eRate === undefined ? "" : ` at ${formatNumber(source.e2eRate)} req/s`;
    const which = source.runCount > 1 ? `, run ${run.run} of ${source.runCount} (median p99)` : "";
    // As report.ts's table: below 95 % of the offered rate answered, the figures are an overloaded system's.
    const share = source.figures["e2e.answeredShare"];
    const answered = source.figures["e2e.achievedRps"];
    const overloaded =
      share !== undefined && share < 0.95 && answered !== undefined
        ? `OVERLOADED: ${formatNumber(answered)} req/s answered, under 95 % of the offered rate`
        : undefined;
    panels.push({
      title: `End to end${rate}, per ${formatNumber(run.intervalS)} s${which}`,
      ...(overloaded ? { note: overloaded } : {}),
      points: run.points,
    });
  }
  if (source.soak) {
    panels.push({
      title: `Soak at ${formatNumber(source.soak.rate)} req/s, per ${formatNumber(source.soak.intervalS)} s`,
      points: source.soak.points,
    });
  }
  return panels;
}

function subtitle(source: ChartSource): string {
  const { start, end } = source.loadavg;
  const load =
    start === undefined
      ? ""
      : `; load average ${start.toFixed(2)} at start${end === undefined ? "" : `, ${end.toFixed(2)} at end`}`;
  const cpus = source.cpus === undefined ? "" : `; ${source.cpus} CPUs`;
  const quick = source.quick ? " (--quick: tiny sizes, figures not meaningful)" : "";
  const runs = source.runCount > 1 ? `; medians of ${source.runCount} runs` : "";
  return `sequencer bench, ${source.startedAt}${quick}${runs}${cpus}${load}`;
}

export const CHART_FILES = ["throughput.svg", "latency-over-time.svg"] as const;

/** Both charts of a bench result, by file name. */
export function renderCharts(source: ChartSource): Record<(typeof CHART_FILES)[number], string> {
  return {
    "throughput.svg": barChartSvg({
      title: "Throughput: the service beside its baselines, same run",
      subtitle: subtitle(source),
      groups: throughputGroups(source),
    }),
    "latency-over-time.svg": latencyChartSvg({
      title: "Latency at a fixed offered rate: 2xx answer → event on TRADING, ms",
      subtitle: subtitle(source),
      panels: latencyPanels(source),
    }),
  };
}
