/**
 * The pipeline phase's own tables, printed under the main table: the two sustained measurements with every
 * process's CPU per sequenced event, the tail row by row against its bounds, and the outcome checks.
 */
import type { CapacityFailure, PipelineResult, PipelineTail } from "./pipeline.ts";
import { headline, isFailure } from "./pipeline.ts";
import { intervalVerdict, TAIL_HTTP_P99_LIMIT_MS, TAIL_TO_TRADING_P99_LIMIT_MS } from "./pipeline-figures.ts";
import { columns } from "./report.ts";
import { clock, failedText, type SoakCapacity } from "./soak.ts";

const int = (v: number) => (Number.isFinite(v) ? Math.round(v).toLocaleString("en-US") : "–");
const ms = (v: number) => (Number.isFinite(v) ? (v < 10 ? v.toFixed(2) : v.toFixed(1)) : "–");
const mark = (ok: boolean) => (ok ? "ok" : "OVER");

const LAYOUT_NAMES = { split: "api + sequencer", all: "serve --role all" } as const;

/** Per process: % of a core and µs per sequenced event, a pair of columns per layout. */
function sustainedTable(measured: SoakCapacity[]): string[] {
  const processes = [...new Set(measured.flatMap((c) => Object.keys(c.window.cpu)))];
  const cell = (c: SoakCapacity, name: string) => {
    const cpu = c.window.cpu[name];
    return cpu ? [cpu.corePct.toFixed(0), cpu.usPerEvent.toFixed(1)] : ["", ""];
  };
  return columns(
    [
      ["CPU over the window", ...measured.flatMap((c) => [`${c.layout}: % of a core`, "µs/event"])],
      ...processes.map((name) => [name, ...measured.flatMap((c) => cell(c, name))]),
      ["sum (not the loadgen)", ...measured.flatMap((c) => ["", c.window.usPerEventSum.toFixed(1)])],
      [
        "loadgen (whole run, warm-up incl.)",
        ...measured.flatMap((c) => [
          c.loadgenCorePct.toFixed(0),
          ((c.loadgenCorePct / 100 / c.tradingPerSec) * 1e6).toFixed(1),
        ]),
      ],
      ["machine, % of all cores", ...measured.flatMap((c) => [c.window.machineBusyPct.toFixed(0), ""])],
    ],
    (col) => col > 0,
  );
}

function sustainedLine(c: SoakCapacity | CapacityFailure): string {
  if (isFailure(c)) return `${LAYOUT_NAMES[c.layout]}: NOT MEASURED — ${headline(c.error)}`;
  // The API answers more than TRADING takes when the sequencer falls behind: its CPU per answer is the fairer view.
  const api = c.window.cpu.api;
  const perRequest = api
    ? `; API CPU ${int((api.cpuS * 1e6) / (c.httpRps * c.windowS))} µs per answered request`
    : "";
  return `${LAYOUT_NAMES[c.layout]}: TRADING kept up with ${int(c.tradingPerSec)} events/s (${int(c.window.events)} events in ${c.windowS.toFixed(1)} s); the API answered ${int(c.httpRps)} req/s${perRequest}`;
}

/** The streams' duplicate windows, which shape the tail (nats-server keeps every msg id of them); "" when unknown. */
function duplicateWindows(tail: Pick<PipelineTail, "duplicateWindowS" | "tradingDuplicateWindowS">): string {
  const { duplicateWindowS: sequence, tradingDuplicateWindowS: trading } = tail;
  if (sequence === undefined) return "";
  return `; duplicate windows SEQUENCE ${sequence} s, TRADING ${trading ?? sequence} s (DUPLICATE_WINDOW, TRADING_DUPLICATE_WINDOW: nats-server keeps every msg id of them, which shapes this tail — docs/performance.md)`;
}

function tailTable(p: PipelineResult): string[] {
  return columns(
    [
      [
        "row",
        "at",
        "accepted",
        "non-2xx/failed/skipped",
        "sequenced",
        "HTTP p50 ms",
        "p99 ms",
        "max ms",
        `p99 ≤ ${TAIL_HTTP_P99_LIMIT_MS}`,
        "sent late p99 ms",
        "accept→TRADING p50 ms",
        "p99 ms",
        "max ms",
        `p99 ≤ ${TAIL_TO_TRADING_P99_LIMIT_MS}`,
      ],
      ...p.tail.rows.map((r) => {
        const v = intervalVerdict(r);
        return [
          String(r.n),
          clock(r.atS),
          int(r.accepted),
          `${r.non2xx}/${r.failed}/${r.skipped}`,
          int(r.sequenced),
          ms(r.httpP50Ms),
          ms(r.httpP99Ms),
          ms(r.httpMaxMs),
          mark(v.httpOk),
          ms(r.sendLateP99Ms),
          ms(r.toTradingP50Ms),
          ms(r.toTradingP99Ms),
          ms(r.toTradingMaxMs),
          mark(v.toTradingOk),
        ];
      }),
    ],
    (col) => col > 1,
  );
}

export function renderPipeline(p: PipelineResult, heading = "pipeline"): string {
  const measured = [p.split, p.all].filter((c): c is SoakCapacity => !isFailure(c));
  const t = p.tail.totals;
  const s = p.tail.summary;
  return [
    `${heading} — the service under load as deployed (issue 17, targets 1–4)`,
    `broker: ${p.broker}${p.authenticated ? "" : " — NOT authenticated: the security figures do not apply"}`,
    "HTTP: a JWT per request, the per-user rate limit on; the digest chain on (the service's defaults)",
    `sustained: closed loop at ${p.split.concurrency} conns, ${p.warmupS} s warm-up, then the rate TRADING grew at between the first and the last 250-ms sample of the measured window; CPU between the same two samples (/proc)`,
    sustainedLine(p.split),
    sustainedLine(p.all),
    "",
    ...sustainedTable(measured),
    "",
    `tail: ${p.tail.minutes} min open loop at ${int(p.tail.rate)} req/s (half the split figure; fixed schedule, at most 1 024 in flight), a row per ${p.tail.intervalS} s, after ${p.tail.warmup?.seconds ?? 0} s of the same load as warm-up (in the outcome checks, in no row)${duplicateWindows(p.tail)}`,
    "HTTP: from each request's due time to its answer; sent late: from the due time to the send (the generator's own lateness, part of HTTP); accept→TRADING: from the 2xx answer to the event's arrival on a trading.> subscriber",
    `totals: ${int(t.due)} due, ${int(t.accepted)} accepted, ${t.non2xx} non-2xx, ${failedText(t)}, ${t.skipped} skipped; ${t.sequencedAfterEnd} events reached TRADING after the load stopped`,
    `worst interval: HTTP p99 ${ms(s.worstHttpP99Ms)} ms (${s.httpIntervalsMissed} of ${s.intervals} over ${TAIL_HTTP_P99_LIMIT_MS} ms), accept→TRADING p99 ${ms(s.worstToTradingP99Ms)} ms (${s.toTradingIntervalsMissed} of ${s.intervals} over ${TAIL_TO_TRADING_P99_LIMIT_MS} ms)`,
    "",
    ...tailTable(p),
    "",
    ...columns(
      [["outcome", "", "detail"], ...p.tail.checks.map((c) => [c.name, c.ok ? "PASS" : "FAIL", c.detail])],
      () => false,
    ),
  ].join("\n");
}
