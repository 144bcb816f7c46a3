/**
 * Turns the runs into the summary: medians across runs (ratios are taken within each run, then the median, since
 * side-by-side figures drift less than absolute ones), the flat `figures` map, the performance targets, and the table.
 */
import type { DrainResult, E2eResult, IngestResult, RawResult } from "./phases.ts";
import { isFailure, type PipelineResult } from "./pipeline.ts";
import { TAIL_HTTP_P99_LIMIT_MS, TAIL_TO_TRADING_P99_LIMIT_MS } from "./pipeline-figures.ts";
import type { ReplayResult } from "./replay.ts";
import { clock, failedText, SOAK_GROWTH_LIMIT_PCT, type SoakResult } from "./soak.ts";
import { median } from "./stats.ts";

export type RunResult = {
  ingest?: { ours: IngestResult; bare: IngestResult; justPostgres: IngestResult };
  raw?: { default: RawResult; noAsyncTraces: RawResult };
  drain?: { ours: DrainResult; naive: DrainResult };
  e2e?: E2eResult;
  replay?: ReplayResult;
  pipeline?: PipelineResult;
};

export type Target = { name: string; value: number; target: string; met: boolean };

export type Summary = {
  /** Every headline figure, median across runs; all positive numbers. */
  figures: Record<string, number>;
  targets: Target[];
};

function med(runs: RunResult[], pick: (run: RunResult) => number | undefined): number | undefined {
  const values = runs.map(pick).filter((v): v is number => v !== undefined && Number.isFinite(v));
  return values.length ? median(values) : undefined;
}

function max(values: (number | undefined)[]): number | undefined {
  const defined = values.filter((v): v is number => v !== undefined);
  return defined.length ? Math.max(...defined) : undefined;
}

export function summarize(runs: RunResult[], e2eRate: number): Summary {
  const f: Record<string, number | undefined> = {
    "ingest.ours.rps": med(runs, (r) => r.ingest?.ours.rps),
    "ingest.ours.p50Ms": med(runs, (r) => r.ingest?.ours.p50Ms),
    "ingest.ours.p99Ms": med(runs, (r) => r.ingest?.ours.p99Ms),
    "ingest.bare.rps": med(runs, (r) => r.ingest?.bare.rps),
    "ingest.bare.p50Ms": med(runs, (r) => r.ingest?.bare.p50Ms),
    "ingest.bare.p99Ms": med(runs, (r) => r.ingest?.bare.p99Ms),
    "ingest.justPostgres.rps": med(runs, (r) => r.ingest?.justPostgres.rps),
    "ingest.justPostgres.p50Ms": med(runs, (r) => r.ingest?.justPostgres.p50Ms),
    "ingest.justPostgres.p99Ms": med(runs, (r) => r.ingest?.justPostgres.p99Ms),
    "ratio.ingestVsBare": med(runs, (r) => r.ingest && r.ingest.ours.rps / r.ingest.bare.rps),
    "ratio.ingestVsJustPostgres": med(runs, (r) => r.ingest && r.ingest.ours.rps / r.ingest.justPostgres.rps),
    "raw.msgsPerSec": med(runs, (r) => r.raw?.default.msgsPerSec),
    "raw.noAsyncTraces.msgsPerSec": med(runs, (r) => r.raw?.noAsyncTraces.msgsPerSec),
    "ratio.ingestVsRawPublish": med(
      runs,
      (r) => r.ingest && r.raw && r.ingest.ours.rps / r.raw.default.msgsPerSec,
    ),
    "drain.ours.eventsPerSec": med(runs, (r) => r.drain?.ours.eventsPerSec),
    "drain.naive.eventsPerSec": med(runs, (r) => r.drain?.naive.eventsPerSec),
    "ratio.drainVsNaive": med(runs, (r) => r.drain && r.drain.ours.eventsPerSec / r.drain.naive.eventsPerSec),
    "e2e.p50Ms": med(runs, (r) => r.e2e?.p50Ms),
    "e2e.p99Ms": med(runs, (r) => r.e2e?.p99Ms),
    "e2e.maxMs": med(runs, (r) => r.e2e?.maxMs),
    "e2e.achievedRps": med(runs, (r) => r.e2e?.achievedRps),
    "e2e.httpP99Ms": med(runs, (r) => r.e2e?.httpP99Ms),
    "e2e.answeredShare": med(runs, (r) => r.e2e && r.e2e.achievedRps / r.e2e.offeredRate),
    "replay.eventsPerSec": med(runs, (r) => r.replay?.ours.eventsPerSec),
    "replay.seconds": med(runs, (r) => r.replay?.ours.seconds),
    "replay.events": med(runs, (r) => r.replay?.events),
    "replay.raw.eventsPerSec": med(runs, (r) => r.replay?.raw.eventsPerSec),
    "ratio.replayVsRaw": med(runs, (r) => r.replay && r.replay.ours.eventsPerSec / r.replay.raw.eventsPerSec),
    ...pipelineFigures(runs),
    "rss.apiMb": max(runs.flatMap((r) => [r.ingest?.ours.rssMb, r.e2e?.rssMb.api])),
    "rss.sequencerMb": max(runs.flatMap((r) => [r.drain?.ours.rssMb, r.e2e?.rssMb.sequencer])),
  };
  const figures: Record<string, number> = {};
  for (const [key, value] of Object.entries(f)) if (value !== undefined) figures[key] = value;

  const targets: Target[] = [];
  const add = (name: string, key: string, target: string, met: (v: number) => boolean) => {
    const value = figures[key];
    if (value !== undefined) targets.push({ name, value, target, met: met(value) });
  };
  add("ingest ÷ just-Postgres", "ratio.ingestVsJustPostgres", "≥ 2.0×", (v) => v >= 2.0);
  add("ingest ÷ bare publish", "ratio.ingestVsBare", "≥ 0.85×", (v) => v >= 0.85);
  add("ingest p99 (64 conns)", "ingest.ours.p99Ms", "≤ 20 ms", (v) => v <= 20);
  add("drain ÷ naive loop", "ratio.drainVsNaive", "≥ 1.9×", (v) => v >= 1.9);
  add(`end-to-end p99 @ ${e2eRate} req/s`, "e2e.p99Ms", "≤ 25 ms @ 5000 req/s", (v) => v <= 25);
  add("replay ÷ raw ordered consumer", "ratio.replayVsRaw", "≥ 0.90×", (v) => v >= 0.9);
  // 1M events in under 8 s is 125k events/s; judged on the rate, so a smaller --replay-events run is comparable.
  add("replay events/s (1M < 8 s)", "replay.eventsPerSec", "≥ 125,000/s", (v) => v >= 125_000);
  addPipelineTargets(figures, targets);
  add("peak RSS, API process", "rss.apiMb", "≤ 200 MB", (v) => v <= 200);
  add("peak RSS, sequencer process", "rss.sequencerMb", "≤ 200 MB", (v) => v <= 200);
  return { figures, targets };
}

const int = (v: number | undefined) => (v === undefined ? "–" : Math.round(v).toLocaleString("en-US"));
const ms = (v: number | undefined) => (v === undefined ? "–" : v < 10 ? v.toFixed(2) : v.toFixed(1));
const ratio = (v: number | undefined) => (v === undefined ? "" : `${v.toFixed(2)}×`);

function verdict(summary: Summary, name: string): string {
  const t = summary.targets.find((x) => x.name === name);
  return t ? `${t.target}  ${t.met ? "met" : "NOT met"}` : "";
}

/** The table printed at the end. */
export function renderTable(summary: Summary, header: string[], e2eRate: number, runs: number): string {
  const f = summary.figures;
  const rows: string[][] = [["figure", "ours", "baseline", "ours÷base", "target"]];
  if (f["ingest.ours.rps"] !== undefined) {
    rows.push(
      [
        "ingest req/s",
        int(f["ingest.ours.rps"]),
        `bare publish ${int(f["ingest.bare.rps"])}`,
        ratio(f["ratio.ingestVsBare"]),
        verdict(summary, "ingest ÷ bare publish"),
      ],
      [
        "ingest req/s",
        int(f["ingest.ours.rps"]),
        `just-Postgres ${int(f["ingest.justPostgres.rps"])}`,
        ratio(f["ratio.ingestVsJustPostgres"]),
        verdict(summary, "ingest ÷ just-Postgres"),
      ],
      [
        "ingest p50 ms",
        ms(f["ingest.ours.p50Ms"]),
        `bare ${ms(f["ingest.bare.p50Ms"])} · just-PG ${ms(f["ingest.justPostgres.p50Ms"])}`,
        ratio((f["ingest.ours.p50Ms"] ?? 0) / (f["ingest.bare.p50Ms"] ?? 1)),
        "",
      ],
      [
        "ingest p99 ms",
        ms(f["ingest.ours.p99Ms"]),
        `bare ${ms(f["ingest.bare.p99Ms"])} · just-PG ${ms(f["ingest.justPostgres.p99Ms"])}`,
        ratio((f["ingest.ours.p99Ms"] ?? 0) / (f["ingest.bare.p99Ms"] ?? 1)),
        verdict(summary, "ingest p99 (64 conns)"),
      ],
    );
  }
  if (f["raw.msgsPerSec"] !== undefined) {
    rows.push([
      "raw JetStream publish msg/s",
      "",
      `${int(f["raw.msgsPerSec"])} (noAsyncTraces ${int(f["raw.noAsyncTraces.msgsPerSec"])})`,
      f["ratio.ingestVsRawPublish"] === undefined ? "" : `ingest ${ratio(f["ratio.ingestVsRawPublish"])}`,
      "",
    ]);
  }
  if (f["drain.ours.eventsPerSec"] !== undefined) {
    rows.push([
      "drain events/s",
      int(f["drain.ours.eventsPerSec"]),
      `naive loop ${int(f["drain.naive.eventsPerSec"])}`,
      ratio(f["ratio.drainVsNaive"]),
      verdict(summary, "drain ÷ naive loop"),
    ]);
  }
  if (f["e2e.p99Ms"] !== undefined) {
    const name = `end-to-end p99 @ ${e2eRate} req/s`;
    const share = f["e2e.answeredShare"] ?? 1;
    const load =
      share < 0.95
        ? `OVERLOADED: ${int(f["e2e.achievedRps"])} req/s answered`
        : `${int(f["e2e.achievedRps"])} req/s answered`;
    rows.push(
      [`e2e p50 ms @ ${int(e2eRate)} req/s`, ms(f["e2e.p50Ms"]), load, "", ""],
      [`e2e p99 ms @ ${int(e2eRate)} req/s`, ms(f["e2e.p99Ms"]), "", "", verdict(summary, name)],
      [`e2e max ms @ ${int(e2eRate)} req/s`, ms(f["e2e.maxMs"]), "", "", ""],
    );
  }
  if (f["replay.eventsPerSec"] !== undefined) {
    const events = f["replay.events"] ?? 0;
    rows.push(
      [
        "replay events/s",
        int(f["replay.eventsPerSec"]),
        `raw ordered consumer ${int(f["replay.raw.eventsPerSec"])}`,
        ratio(f["ratio.replayVsRaw"]),
        verdict(summary, "replay ÷ raw ordered consumer"),
      ],
      [
        `replay s for ${int(events)} events`,
        (f["replay.seconds"] ?? 0).toFixed(2),
        `1M at this rate: ${(1_000_000 / (f["replay.eventsPerSec"] ?? 1)).toFixed(2)} s`,
        "",
        verdict(summary, "replay events/s (1M < 8 s)"),
      ],
    );
  }
  if (f["pipeline.split.tradingPerSec"] !== undefined) rows.push(...pipelineRows(summary));
  if (f["rss.apiMb"] !== undefined) {
    rows.push(["peak RSS MB, API", int(f["rss.apiMb"]), "", "", verdict(summary, "peak RSS, API process")]);
  }
  if (f["rss.sequencerMb"] !== undefined) {
    rows.push([
      "peak RSS MB, sequencer",
      int(f["rss.sequencerMb"]),
      "",
      "",
      verdict(summary, "peak RSS, sequencer process"),
    ]);
  }
  const widths = rows[0]?.map((_, col) => Math.max(...rows.map((row) => (row[col] ?? "").length))) ?? [];
  const line = (row: string[]) =>
    row
      .map((cell, col) =>
        col === 1 || col === 3 ? cell.padStart(widths[col] ?? 0) : cell.padEnd(widths[col] ?? 0),
      )
      .join("  ")
      .trimEnd();
  const table = rows.map(line);
  table.splice(1, 0, widths.map((w) => "-".repeat(w)).join("  "));
  const note = runs > 1 ? `medians of ${runs} runs; ratios are per-run ratios' medians` : "one run";
  return [...header, `(${note})`, "", ...table].join("\n");
}

/** Rows of cells as aligned columns, a rule under the first; `right` says which columns are right-aligned. */
export function columns(rows: string[][], right: (col: number) => boolean): string[] {
  const widths = rows[0]?.map((_, col) => Math.max(...rows.map((row) => (row[col] ?? "").length))) ?? [];
  const line = (row: string[]) =>
    row
      .map((cell, col) => (right(col) ? cell.padStart(widths[col] ?? 0) : cell.padEnd(widths[col] ?? 0)))
      .join("  ")
      .trimEnd();
  const lines = rows.map(line);
  lines.splice(1, 0, widths.map((w) => "-".repeat(w)).join("  "));
  return lines;
}

const signed = (v: number, digits: number) => `${v >= 0 ? "+" : ""}${v.toFixed(digits)}`;

/** The soak's tables: a row per interval, the memory trend per process with its verdict, and the G1–G4 checks. */
export function renderSoak(soak: SoakResult): string {
  const processes = Object.keys(soak.rows[0]?.rssMb ?? {});
  const perInterval = columns(
    [
      [
        "row",
        "at",
        "accepted",
        "non-2xx/failed/skipped",
        "sequenced",
        "HTTP p99 ms",
        "accept→TRADING p50 ms",
        "p99 ms",
        "max ms",
        ...processes.map((p) => `${p} MB`),
      ],
      ...soak.rows.map((r) => [
        String(r.n),
        clock(r.atS),
        int(r.accepted),
        `${r.non2xx}/${r.failed}/${r.skipped}`,
        int(r.sequenced),
        ms(r.httpP99Ms),
        ms(r.toTradingP50Ms),
        ms(r.toTradingP99Ms),
        ms(r.toTradingMaxMs),
        ...processes.map((p) => int(r.rssMb[p])),
      ]),
    ],
    (col) => col !== 1 && col !== 0,
  );
  const second = soak.rows[1];
  const last = soak.rows[soak.rows.length - 1];
  const target = `growth ≤ ${SOAK_GROWTH_LIMIT_PCT} %`;
  const trend = soak.trends
    ? columns(
        [
          [
            "process",
            `RSS MB at ${clock(second?.atS ?? 0)}`,
            `RSS MB at ${clock(last?.atS ?? 0)}`,
            "slope MB/min",
            "growth",
            target,
          ],
          ...soak.trends.map((t) => [
            t.process,
            t.secondMb.toFixed(1),
            t.lastMb.toFixed(1),
            signed(t.slopeMbPerMin, 2),
            `${signed(t.growthPct, 1)} %`,
            t.pass ? "PASS" : "FAIL",
          ]),
        ],
        (col) => col >= 1 && col <= 4,
      )
    : [`memory trend: needs at least 3 rows (got ${soak.rows.length}); no verdict`];
  const checks = columns(
    [["outcome", "", "detail"], ...soak.checks.map((c) => [c.name, c.ok ? "PASS" : "FAIL", c.detail])],
    () => false,
  );
  const t = soak.totals;
  return [
    `soak — ${soak.minutes} min at ${int(soak.rate)} req/s, open loop (fixed schedule; a row per ${soak.intervalS} s)`,
    `rate: ${soak.rateSource}`,
    `broker: ${soak.broker}; HTTP: a JWT per request, the per-user rate limit on`,
    "HTTP p99: from each request's due time to its answer (every answer); accept→TRADING: from the 2xx answer to the event's arrival on a trading.> subscriber",
    "RSS: VmRSS at the end of each row's interval; postgres = the postmaster and its children, private memory of each plus shared memory once",
    `totals: ${int(t.due)} due, ${int(t.accepted)} accepted, ${t.non2xx} non-2xx, ${failedText(t)}, ${t.skipped} skipped; ${t.sequencedAfterEnd} events reached TRADING after the load stopped`,
    "",
    ...perInterval,
    "",
    `memory from the 2nd row to the last (the first interval is warm-up), target: no process grows more than ${SOAK_GROWTH_LIMIT_PCT} %`,
    ...trend,
    "",
    ...checks,
  ].join("\n");
}

// ---------------------------------------------------------------------------------------------------------------
// The pipeline phase (issue 17, targets 1–4): figures, targets and the main table's rows
// ---------------------------------------------------------------------------------------------------------------

/** Issue 17's bounds for the pipeline phase. */
export const PIPELINE_TARGETS = { vsIngest: 0.7, allVsSplit: 0.9, cpuUsPerEvent: 120 } as const;

function pipelineFigures(runs: RunResult[]): Record<string, number | undefined> {
  const all = (r: RunResult) => (r.pipeline && !isFailure(r.pipeline.all) ? r.pipeline.all : undefined);
  return {
    "pipeline.split.tradingPerSec": med(runs, (r) => r.pipeline?.split.tradingPerSec),
    "pipeline.split.httpRps": med(runs, (r) => r.pipeline?.split.httpRps),
    "pipeline.split.cpuUsPerEvent": med(runs, (r) => r.pipeline?.split.window.usPerEventSum),
    "pipeline.all.tradingPerSec": med(runs, (r) => all(r)?.tradingPerSec),
    "pipeline.all.cpuUsPerEvent": med(runs, (r) => all(r)?.window.usPerEventSum),
    // Both ratios within a run: the two figures were measured minutes apart on the same machine.
    "ratio.pipelineVsIngest": med(
      runs,
      (r) => r.pipeline && r.ingest && r.pipeline.split.tradingPerSec / r.ingest.ours.rps,
    ),
    "ratio.allVsSplit": med(runs, (r) => {
      const a = all(r);
      return a && r.pipeline && a.tradingPerSec / r.pipeline.split.tradingPerSec;
    }),
    "pipeline.tail.rate": med(runs, (r) => r.pipeline?.tail.rate),
    "pipeline.tail.intervalS": med(runs, (r) => r.pipeline?.tail.intervalS),
    "pipeline.tail.intervals": med(runs, (r) => r.pipeline?.tail.summary.intervals),
    "pipeline.tail.worstHttpP99Ms": med(runs, (r) => r.pipeline?.tail.summary.worstHttpP99Ms),
    "pipeline.tail.worstToTradingP99Ms": med(runs, (r) => r.pipeline?.tail.summary.worstToTradingP99Ms),
    // Worst run: one run with an interval over the limit is a miss.
    "pipeline.tail.httpIntervalsMissed": max(runs.map((r) => r.pipeline?.tail.summary.httpIntervalsMissed)),
    "pipeline.tail.toTradingIntervalsMissed": max(
      runs.map((r) => r.pipeline?.tail.summary.toTradingIntervalsMissed),
    ),
  };
}

/**
 * The pipeline's targets. A ratio whose other side did not run (no ingest phase, role all failed) gets no entry:
 * the table says n/a. A tail bound is met only when no interval missed it (an interval without a single answer
 * has no p99 and counts as missed), not merely when the worst p99 that exists is within it.
 */
function addPipelineTargets(figures: Record<string, number>, targets: Target[]): void {
  if (figures["pipeline.split.tradingPerSec"] === undefined) return;
  const add = (name: string, key: string, target: string, met: (v: number) => boolean) => {
    const value = figures[key] ?? Number.NaN;
    targets.push({ name, value, target, met: Number.isFinite(value) && met(value) });
  };
  const { vsIngest, allVsSplit, cpuUsPerEvent } = PIPELINE_TARGETS;
  if (figures["ratio.pipelineVsIngest"] !== undefined) {
    add("pipeline ÷ ingest", "ratio.pipelineVsIngest", `≥ ${vsIngest.toFixed(2)}×`, (v) => v >= vsIngest);
  }
  if (figures["ratio.allVsSplit"] !== undefined) {
    add("role all ÷ split", "ratio.allVsSplit", `≥ ${allVsSplit.toFixed(2)}×`, (v) => v >= allVsSplit);
  }
  add(
    "CPU µs per sequenced event",
    "pipeline.split.cpuUsPerEvent",
    `≤ ${cpuUsPerEvent} µs`,
    (v) => v <= cpuUsPerEvent,
  );
  const missed = (key: string) => figures[key] ?? 0;
  add(
    "tail HTTP p99, every interval",
    "pipeline.tail.worstHttpP99Ms",
    `≤ ${TAIL_HTTP_P99_LIMIT_MS} ms`,
    (v) => v <= TAIL_HTTP_P99_LIMIT_MS && missed("pipeline.tail.httpIntervalsMissed") === 0,
  );
  add(
    "tail accept→TRADING p99, every interval",
    "pipeline.tail.worstToTradingP99Ms",
    `≤ ${TAIL_TO_TRADING_P99_LIMIT_MS} ms`,
    (v) => v <= TAIL_TO_TRADING_P99_LIMIT_MS && missed("pipeline.tail.toTradingIntervalsMissed") === 0,
  );
}

function pipelineRows(summary: Summary): string[][] {
  const f = summary.figures;
  const na = (target: string) => `${target}  n/a`;
  const ingest = f["ingest.ours.rps"];
  const all = f["pipeline.all.tradingPerSec"];
  const intervals = int(f["pipeline.tail.intervals"]);
  const tail = `tail @ ${int(f["pipeline.tail.rate"])} req/s, worst ${int(f["pipeline.tail.intervalS"])}-s`;
  return [
    [
      "pipeline events/s (api + sequencer)",
      int(f["pipeline.split.tradingPerSec"]),
      ingest === undefined ? "ingest not run" : `ingest (API alone) ${int(ingest)}`,
      f["ratio.pipelineVsIngest"] === undefined ? "n/a" : ratio(f["ratio.pipelineVsIngest"]),
      verdict(summary, "pipeline ÷ ingest") || na(`≥ ${PIPELINE_TARGETS.vsIngest.toFixed(2)}×`),
    ],
    ["pipeline HTTP req/s answered meanwhile", int(f["pipeline.split.httpRps"]), "", "", ""],
    [
      "pipeline events/s (serve --role all)",
      all === undefined ? "failed" : int(all),
      `split ${int(f["pipeline.split.tradingPerSec"])}`,
      f["ratio.allVsSplit"] === undefined ? "n/a" : ratio(f["ratio.allVsSplit"]),
      verdict(summary, "role all ÷ split") || na(`≥ ${PIPELINE_TARGETS.allVsSplit.toFixed(2)}×`),
    ],
    [
      "CPU µs/event (api+seq+nats+pg)",
      int(f["pipeline.split.cpuUsPerEvent"]),
      `role all (all+nats+pg) ${int(f["pipeline.all.cpuUsPerEvent"])}`,
      "",
      verdict(summary, "CPU µs per sequenced event"),
    ],
    [
      `${tail} HTTP p99 ms`,
      ms(f["pipeline.tail.worstHttpP99Ms"]),
      `${int(f["pipeline.tail.httpIntervalsMissed"])} of ${intervals} intervals missed`,
      "",
      verdict(summary, "tail HTTP p99, every interval"),
    ],
    [
      `${tail} accept→TRADING p99 ms`,
      ms(f["pipeline.tail.worstToTradingP99Ms"]),
      `${int(f["pipeline.tail.toTradingIntervalsMissed"])} of ${intervals} intervals missed`,
      "",
      verdict(summary, "tail accept→TRADING p99, every interval"),
    ],
  ];
}
