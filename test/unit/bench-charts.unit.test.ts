/**
 * The bench's SVG charts (tools/bench/svg-charts.ts, charts.ts, chart-files.ts): well-formed standalone SVG, bars
 * proportional to their values, every bar labelled, "no data" instead of NaN coordinates, text escaped, the same
 * bytes for the same input, and a file that is not a bench result refused.
 */
import { afterAll, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chartFilesMain } from "../../tools/bench/chart-files.ts";
import { ChartInputError, chartSource, renderCharts } from "../../tools/bench/charts.ts";
import { e2eIntervalMs, latencyIntervals } from "../../tools/bench/stats.ts";
import { barChartSvg, escapeXml, latencyChartSvg, niceAxis } from "../../tools/bench/svg-charts.ts";

const dir = mkdtempSync(join(tmpdir(), "bench-charts-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/**
 * Throws unless `svg` is one well-formed <svg> element: every tag closed in order, attributes quoted, no raw "<"
 * or stray "&" in text. Enough XML to catch what string-built SVG gets wrong.
 */
function assertWellFormed(svg: string): void {
  const stack: string[] = [];
  let roots = 0;
  const tag = /<(\/?)([a-zA-Z][\w:-]*)((?:\s+[\w:-]+="[^"<]*")*)\s*(\/?)>/g;
  let last = 0;
  for (let m = tag.exec(svg); m; m = tag.exec(svg)) {
    const between = svg.slice(last, m.index);
    if (/[<>]/.test(between))
      throw new Error(`stray markup before offset ${m.index}: ${between.slice(0, 60)}`);
    if (/&(?!(amp|lt|gt|quot|apos);)/.test(between))
      throw new Error(`unescaped & in ${between.slice(0, 60)}`);
    last = tag.lastIndex;
    const [, closing, name = "", , selfClosing] = m;
    if (closing) {
      if (stack.pop() !== name) throw new Error(`</${name}> closes the wrong element`);
    } else if (!selfClosing) {
      if (stack.length === 0) roots++;
      stack.push(name);
    } else if (stack.length === 0) roots++;
  }
  const rest = svg.slice(last);
  if (rest.trim() !== "") throw new Error(`text after the root element: ${rest.slice(0, 60)}`);
  if (stack.length) throw new Error(`unclosed: ${stack.join(" > ")}`);
  if (roots !== 1 || !svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"'))
    throw new Error("not one <svg> root");
}

/** Width and value of each bar, in order. */
function bars(svg: string): { width: number; value: number }[] {
  return [...svg.matchAll(/<rect class="bar" [^>]*width="([\d.]+)"[^>]*data-value="([^"]+)"/g)].map((m) => ({
    width: Number(m[1]),
    value: Number(m[2]),
  }));
}

/** A bench result as index.ts writes it (the fields the charts read), with one run of every phase. */
function result(overrides: Record<string, unknown> = {}) {
  return {
    version: 1,
    startedAt: "2026-12-01T09:00:00.000Z",
    quick: false,
    options: { e2eRate: 5000 },
    machine: { cpus: 2, loadavgStart: [1.5, 1, 1], loadavgEnd: [2.25, 1, 1] },
    figures: {
      "ingest.ours.rps": 9796,
      "ingest.bare.rps": 17731,
      "ingest.justPostgres.rps": 12193,
      "ratio.ingestVsBare": 0.5525,
      "ratio.ingestVsJustPostgres": 0.8034,
      "raw.msgsPerSec": 47017,
      "raw.noAsyncTraces.msgsPerSec": 63040,
      "drain.ours.eventsPerSec": 24534,
      "drain.naive.eventsPerSec": 15978,
      "ratio.drainVsNaive": 1.5355,
      "e2e.p99Ms": 57.5,
    },
    targets: [
      { name: "ingest ÷ bare publish", target: "≥ 0.85×", met: false },
      { name: "drain ÷ naive loop", target: "≥ 1.9×", met: false },
    ],
    runs: [
      {
        e2e: {
          p99Ms: 57.5,
          intervals: [
            { atS: 1, samples: 5000, p50Ms: 7.9, p99Ms: 40, maxMs: 90 },
            { atS: 2, samples: 0, p50Ms: null, p99Ms: null, maxMs: null },
            { atS: 3, samples: 5000, p50Ms: 8.1, p99Ms: 57.5, maxMs: 140 },
          ],
        },
      },
    ],
    ...overrides,
  };
}

test("the well-formedness check itself refuses broken markup", () => {
  const open = '<svg xmlns="http://www.w3.org/2000/svg">';
  for (const broken of [
    `${open}<g></svg>`,
    `${open}<text>a < b</text></svg>`,
    `${open}<text>R&D</text></svg>`,
    `${open}</svg><svg/>`,
  ])
    expect(() => assertWellFormed(broken)).toThrow();
  expect(() => assertWellFormed(`${open}<g><text x="1">a &amp; b</text><rect/></g></svg>`)).not.toThrow();
});

test("the throughput chart is well-formed SVG with each phase's measured value and its baselines, labelled, bars proportional", () => {
  const svg = renderCharts(chartSource(result()))["throughput.svg"];
  assertWellFormed(svg);
  for (const label of [
    "the service (api)",
    "bare publish",
    "just-Postgres",
    "noAsyncTraces",
    "the sequencer",
    "naive loop",
  ])
    expect(svg).toContain(`>${label}</text>`);
  for (const value of ["9,796", "17,731", "12,193", "47,017", "63,040", "24,534", "15,978"])
    expect(svg).toContain(`>${value}</text>`);
  expect(svg).toContain("the service ÷ bare publish 0.55× (target ≥ 0.85×: not met)");
  expect(svg).toContain("the sequencer ÷ naive loop 1.54× (target ≥ 1.9×: not met)");
  expect(svg).toContain("load average 1.50 at start, 2.25 at end");
  // Seven bars; within each group (its own scale) width ÷ value is one constant, and the largest is the widest.
  const drawn = bars(svg);
  expect(drawn.map((b) => b.value)).toEqual([9796, 17731, 12193, 47017, 63040, 24534, 15978]);
  for (const group of [drawn.slice(0, 3), drawn.slice(3, 5), drawn.slice(5)]) {
    const scale = (group[0]?.width ?? 0) / (group[0]?.value ?? 1);
    expect(scale).toBeGreaterThan(0);
    for (const b of group) expect(b.width / b.value).toBeCloseTo(scale, 3);
  }
  expect(svg).not.toContain("NaN");
});

test("the latency chart draws p50, p99 and max per interval, breaking the line where an interval had no samples", () => {
  const svg = renderCharts(chartSource(result()))["latency-over-time.svg"];
  assertWellFormed(svg);
  expect(svg).toContain(">End to end at 5,000 req/s, per 1 s</text>");
  for (const series of ["p50", "p99", "max"]) {
    const d = new RegExp(`<path class="series-${series}" d="([^"]+)"`).exec(svg)?.[1] ?? "";
    // Interval 2 is empty: two one-point runs, each starting with its own M, never an L across the gap.
    expect(d.match(/M/g)?.length).toBe(2);
    expect(d).not.toContain("L");
  }
  // Higher latency is drawn higher up: the max at 3 s (140 ms) above the p50 at 3 s (8.1 ms).
  const y = (series: string) =>
    Number(
      new RegExp(`<path class="series-${series}" d="M[\\d.]+ [\\d.]+M[\\d.]+ ([\\d.]+)"`).exec(svg)?.[1],
    );
  expect(y("max")).toBeLessThan(y("p99"));
  expect(y("p99")).toBeLessThan(y("p50"));
  expect(svg).not.toContain("NaN");
});

test("the latency chart says when the end-to-end run was overloaded, and draws the soak's rows in a second panel", () => {
  const source = chartSource(
    result({
      figures: { ...result().figures, "e2e.answeredShare": 0.9, "e2e.achievedRps": 4494 },
      // A soak saved before rows had a max (bench/results from earlier sessions): p50 and p99 only.
      soak: {
        rate: 1207,
        intervalS: 60,
        rows: [60, 120, 180, 240].map((atS, i) => ({ atS, toTradingP50Ms: 4 + i, toTradingP99Ms: 20 + i })),
      },
    }),
  );
  const svg = renderCharts(source)["latency-over-time.svg"];
  assertWellFormed(svg);
  expect(svg).toContain(">OVERLOADED: 4,494 req/s answered, under 95 % of the offered rate</text>");
  expect(svg).toContain(">Soak at 1,207 req/s, per 60 s</text>");
  expect(svg).toContain(">max: not recorded</text>");
  expect(svg).toContain(">minutes</text>");
  expect(svg.match(/<path class="series-p50" /g)?.length).toBe(2);
  expect(svg.match(/<path class="series-max" /g)?.length).toBe(1);
  expect(renderCharts(chartSource(result()))["latency-over-time.svg"]).not.toContain("OVERLOADED");
});

test("empty, zero and NaN inputs give a chart saying no data, with no NaN anywhere", () => {
  const empty = [
    barChartSvg({ title: "t", groups: [] }),
    barChartSvg({
      title: "t",
      groups: [{ title: "g", unit: "req/s", bars: [{ label: "a", value: 0, baseline: false }] }],
    }),
    barChartSvg({
      title: "t",
      groups: [{ title: "g", unit: "req/s", bars: [{ label: "a", value: Number.NaN, baseline: true }] }],
    }),
    latencyChartSvg({ title: "t", panels: [] }),
    latencyChartSvg({
      title: "t",
      panels: [{ title: "p", points: [{ atS: 1, p50Ms: Number.NaN, p99Ms: null }] }],
    }),
    latencyChartSvg({ title: "t", panels: [{ title: "p", points: [{ atS: Number.NaN, p50Ms: 3 }] }] }),
  ];
  for (const svg of empty) {
    assertWellFormed(svg);
    expect(svg).toContain(">no data</text>");
    expect(svg).not.toContain("NaN");
    expect(svg).not.toContain("Infinity");
  }
  // A result with no figures and no runs (e.g. --only soak before the soak's rows) renders too.
  const charts = renderCharts(chartSource(result({ figures: {}, runs: [] })));
  for (const svg of Object.values(charts)) {
    assertWellFormed(svg);
    expect(svg).toContain(">no data</text>");
    expect(svg).not.toContain("NaN");
  }
  // A group with one NaN bar among real ones drops just that bar.
  const mixed = barChartSvg({
    title: "t",
    groups: [
      {
        title: "g",
        unit: "u",
        bars: [
          { label: "real", value: 10, baseline: false },
          { label: "broken", value: Number.NaN, baseline: true },
        ],
      },
    ],
  });
  expect(bars(mixed)).toEqual([{ width: 440, value: 10 }]);
  expect(mixed).not.toContain("NaN");
});

test("text is escaped and the same input gives the same bytes", () => {
  const hostile = '<script>alert("x")</script> & co';
  const svg = barChartSvg({
    title: hostile,
    subtitle: hostile,
    groups: [
      { title: hostile, unit: "u", bars: [{ label: hostile, value: 3, baseline: false }], notes: [hostile] },
    ],
  });
  assertWellFormed(svg);
  expect(svg).not.toContain("<script>");
  expect(svg).toContain(escapeXml(hostile));
  expect(escapeXml(hostile)).toBe("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; co");
  expect(renderCharts(chartSource(result()))).toEqual(renderCharts(chartSource(result())));
});

test("a file that is not a bench result is refused, by chartSource and by the chart-files command", () => {
  for (const bad of [
    null,
    [],
    {},
    { version: 2, startedAt: "x", figures: {}, runs: [] },
    result({ runs: 3 }),
  ])
    expect(() => chartSource(bad)).toThrow(ChartInputError);

  const notResult = join(dir, "not-a-result.json");
  writeFileSync(notResult, JSON.stringify({ hello: "world" }));
  const out = join(dir, "out-refused");
  expect(chartFilesMain([notResult, out])).toBe(1);
  expect(existsSync(out)).toBe(false);
  expect(chartFilesMain([join(dir, "missing.json"), out])).toBe(1);
  expect(chartFilesMain([])).toBe(64);

  const good = join(dir, "result.json");
  writeFileSync(good, JSON.stringify(result()));
  expect(chartFilesMain([good, join(dir, "out")])).toBe(0);
  for (const name of ["throughput.svg", "latency-over-time.svg"])
    assertWellFormed(readFileSync(join(dir, "out", name), "utf8"));
});

test("latencyIntervals cuts samples into intervals from the origin, keeping empty ones as NaN", () => {
  const rows = latencyIntervals(
    [
      [1_000, 5],
      [1_500, 7],
      [3_200, 40],
      [1_999, 1],
    ],
    1_000,
    1_000,
  );
  expect(rows.map((r) => r.atS)).toEqual([1, 2, 3]);
  expect(rows[0]).toEqual({ atS: 1, samples: 3, p50Ms: 5, p99Ms: 7, maxMs: 7 });
  expect(rows[1]?.samples).toBe(0);
  expect(Number.isNaN(rows[1]?.p99Ms)).toBe(true);
  expect(rows[2]).toEqual({ atS: 3, samples: 1, p50Ms: 40, p99Ms: 40, maxMs: 40 });
  // A row per second, and never more than about 120 rows however long the window.
  expect(e2eIntervalMs(20_000)).toBe(1_000);
  expect(e2eIntervalMs(600_000)).toBe(5_000);
});

test("axes end on a round number at or above the largest value", () => {
  expect(niceAxis(17_731)).toEqual({ step: 5_000, end: 20_000 });
  expect(niceAxis(57.5)).toEqual({ step: 20, end: 60 });
  expect(niceAxis(0)).toEqual({ step: 1, end: 1 });
  expect(niceAxis(Number.NaN)).toEqual({ step: 1, end: 1 });
});
