/**
 * Standalone SVG charts as pure functions (no dependency, no I/O; the same input gives the same bytes): stacked
 * groups of horizontal bars, and stacked panels of latency lines over time. Missing, zero or non-finite data is
 * drawn as "no data", never as NaN coordinates; all text is escaped. What the bench draws with them: charts.ts.
 */

export type Bar = { label: string; value: number; baseline: boolean };
/** Bars sharing one scale and unit; groups are stacked, each with its own scale. */
export type BarGroup = { title: string; unit: string; bars: Bar[]; notes?: string[] };

/** One interval's percentiles, ms; null/undefined/NaN where the interval had no samples (a gap in the line). */
export type LatencyPoint = {
  atS: number;
  p50Ms?: number | null;
  p99Ms?: number | null;
  maxMs?: number | null;
};
/** `note`: a warning line under the title (an overloaded run). */
export type LatencyPanel = { title: string; note?: string; points: LatencyPoint[] };

const WIDTH = 760;
const FONT = 'font-family="system-ui, -apple-system, Segoe UI, Helvetica, Arial, sans-serif"';
const OURS = "#2563eb";
const BASELINE = "#9ca3af";
const SERIES = [
  { key: "p50Ms", name: "p50", color: "#16a34a", dash: "" },
  { key: "p99Ms", name: "p99", color: "#ea580c", dash: "" },
  { key: "maxMs", name: "max", color: "#dc2626", dash: ' stroke-dasharray="4 3"' },
] as const;

export function escapeXml(text: string): string {
  return text
    .replace(/&/g, "&amp;")
    .replace(/</g, "&lt;")
    .replace(/>/g, "&gt;")
    .replace(/"/g, "&quot;")
    .replace(/'/g, "&apos;");
}

const finite = (v: number | null | undefined): v is number => typeof v === "number" && Number.isFinite(v);
/** Coordinates with one decimal: short, and identical for identical input. */
const c = (v: number) => (Math.round(v * 10) / 10).toString();

const grouped = (v: number) =>
  Math.round(v)
    .toString()
    .replace(/\B(?=(\d{3})+(?!\d))/g, ",");

/** 12 345 → "12,345"; small values keep significant digits ("2.35", "0.042"). Locale-free, so deterministic. */
export function formatNumber(v: number): string {
  if (!Number.isFinite(v)) return "–";
  const abs = Math.abs(v);
  if (abs >= 100 || Number.isInteger(v)) return grouped(v);
  if (abs >= 10) return v.toFixed(1);
  if (abs >= 0.1 || abs === 0) return v.toFixed(2);
  return v.toPrecision(2);
}

/** A round step (1, 2 or 5 × 10^k) giving about `ticks` steps up to `max`, and the axis end it leads to. */
export function niceAxis(max: number, ticks = 5): { step: number; end: number } {
  if (!finite(max) || max <= 0) return { step: 1, end: 1 };
  const raw = max / ticks;
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const step = ([1, 2, 5, 10].find((m) => m * magnitude >= raw) ?? 10) * magnitude;
  return { step, end: Math.ceil(max / step - 1e-9) * step };
}

/** An axis label with as many decimals as the step needs (0, 0.5, 1 … not 0.00, 0.50, 1.00). */
const tickLabel = (v: number, step: number) =>
  step >= 1 ? grouped(v) : v.toFixed(Math.min(6, Math.ceil(-Math.log10(step) - 1e-9)));

/** 0, step, 2·step … end, each computed from its index (no drift from adding a fractional step). */
const ticks = (step: number, end: number) =>
  Array.from({ length: Math.round(end / step) + 1 }, (_, i) => Number((i * step).toPrecision(12)));

const text = (x: number, y: number, body: string, attrs = "") =>
  `<text x="${c(x)}" y="${c(y)}"${attrs ? ` ${attrs}` : ""}>${escapeXml(body)}</text>`;

function document(height: number, title: string, subtitle: string | undefined, body: string[]): string {
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${c(height)}" viewBox="0 0 ${WIDTH} ${c(height)}" ${FONT} font-size="12">`,
    `<title>${escapeXml(title)}</title>`,
    `<rect x="0" y="0" width="${WIDTH}" height="${c(height)}" fill="#ffffff"/>`,
    text(16, 24, title, 'font-size="16" font-weight="600" fill="#111827"'),
    ...(subtitle ? [text(16, 42, subtitle, 'fill="#4b5563"')] : []),
    ...body,
    "</svg>",
    "",
  ].join("\n");
}

const noData = (x: number, y: number, what = "no data") =>
  text(x, y, what, 'fill="#6b7280" font-style="italic" text-anchor="middle"');

/** True when a group has at least one bar worth drawing (a finite value above zero). */
const hasData = (group: BarGroup) => group.bars.some((b) => finite(b.value) && b.value > 0);

/** Horizontal bars, a block per group, each with its own axis; values printed at the bar ends. */
export function barChartSvg(chart: { title: string; subtitle?: string; groups: BarGroup[] }): string {
  const labelX = 200;
  const plotW = 440;
  const barH = 18;
  const rowH = 26;
  const body: string[] = [];
  let y = 60;
  const groups = chart.groups.filter(hasData);
  if (groups.length === 0) {
    body.push(noData(WIDTH / 2, 100));
    return document(140, chart.title, chart.subtitle, body);
  }
  body.push(
    `<rect x="${WIDTH - 220}" y="50" width="12" height="12" fill="${OURS}"/>`,
    text(WIDTH - 202, 60, "the service"),
    `<rect x="${WIDTH - 120}" y="50" width="12" height="12" fill="${BASELINE}"/>`,
    text(WIDTH - 102, 60, "baseline"),
  );
  y += 20;
  for (const group of groups) {
    const bars = group.bars.filter((b) => finite(b.value) && b.value >= 0);
    const { step, end } = niceAxis(Math.max(...bars.map((b) => b.value)));
    const scale = plotW / end;
    body.push(text(16, y + 14, `${group.title} (${group.unit})`, 'font-size="13" font-weight="600"'));
    y += 24;
    const top = y;
    const bottom = top + bars.length * rowH;
    // Gridlines first, so the bars are drawn over them.
    for (const tick of ticks(step, end)) {
      const x = labelX + tick * scale;
      body.push(
        `<line x1="${c(x)}" y1="${c(top - 4)}" x2="${c(x)}" y2="${c(bottom)}" stroke="#e5e7eb"/>`,
        text(x, bottom + 14, tickLabel(tick, step), 'text-anchor="middle" fill="#6b7280" font-size="10"'),
      );
    }
    for (const bar of bars) {
      const w = bar.value * scale;
      body.push(
        text(labelX - 8, y + barH / 2 + 4, bar.label, 'text-anchor="end" fill="#111827"'),
        `<rect class="bar" x="${labelX}" y="${c(y)}" width="${c(w)}" height="${barH}" fill="${bar.baseline ? BASELINE : OURS}" data-value="${escapeXml(String(bar.value))}"/>`,
        text(labelX + w + 6, y + barH / 2 + 4, formatNumber(bar.value), 'fill="#111827"'),
      );
      y += rowH;
    }
    body.push(`<line x1="${labelX}" y1="${c(top - 4)}" x2="${labelX}" y2="${c(y)}" stroke="#374151"/>`);
    y += 20;
    for (const note of group.notes ?? []) {
      body.push(text(labelX, y + 10, note, 'fill="#374151"'));
      y += 18;
    }
    y += 12;
  }
  return document(y, chart.title, chart.subtitle, body);
}

/** Line charts of p50/p99/max over time, a panel per source, stacked; a gap where an interval had no samples. */
export function latencyChartSvg(chart: { title: string; subtitle?: string; panels: LatencyPanel[] }): string {
  const left = 70;
  const plotW = WIDTH - left - 30;
  const plotH = 200;
  const body: string[] = [];
  let y = 56;
  body.push(
    ...SERIES.flatMap((s, i) => {
      const x = WIDTH - 210 + i * 65;
      return [
        `<line x1="${x}" y1="${y}" x2="${x + 18}" y2="${y}" stroke="${s.color}" stroke-width="2"${s.dash}/>`,
        text(x + 22, y + 4, s.name),
      ];
    }),
  );
  y += 16;
  const panels = chart.panels.length ? chart.panels : [{ title: "latency over time", points: [] }];
  for (const panel of panels) {
    body.push(text(16, y + 14, panel.title, 'font-size="13" font-weight="600"'));
    if (panel.note) {
      body.push(text(16, y + 30, panel.note, 'fill="#b91c1c"'));
      y += 16;
    }
    const top = y + 28;
    const bottom = top + plotH;
    const points = panel.points.filter((p) => finite(p.atS) && p.atS >= 0);
    const values = points.flatMap((p) => SERIES.map((s) => p[s.key]).filter(finite));
    const lastS = Math.max(0, ...points.map((p) => p.atS));
    if (values.length === 0 || lastS <= 0) {
      body.push(
        `<rect x="${left}" y="${top}" width="${plotW}" height="${plotH}" fill="none" stroke="#e5e7eb"/>`,
        noData(left + plotW / 2, top + plotH / 2),
      );
      y = bottom + 30;
      continue;
    }
    const minutes = lastS > 180;
    const xUnit = minutes ? 60 : 1;
    const xAxis = niceAxis(lastS / xUnit, 6);
    const yAxis = niceAxis(Math.max(...values), 5);
    const px = (s: number) => left + (s / xUnit / xAxis.end) * plotW;
    const py = (ms: number) => bottom - (Math.max(0, ms) / yAxis.end) * plotH;
    for (const v of ticks(yAxis.step, yAxis.end)) {
      body.push(
        `<line x1="${left}" y1="${c(py(v))}" x2="${left + plotW}" y2="${c(py(v))}" stroke="#e5e7eb"/>`,
        text(
          left - 6,
          py(v) + 4,
          tickLabel(v, yAxis.step),
          'text-anchor="end" fill="#6b7280" font-size="10"',
        ),
      );
    }
    for (const v of ticks(xAxis.step, xAxis.end)) {
      const x = left + (v / xAxis.end) * plotW;
      body.push(
        `<line x1="${c(x)}" y1="${bottom}" x2="${c(x)}" y2="${bottom + 4}" stroke="#374151"/>`,
        text(x, bottom + 16, tickLabel(v, xAxis.step), 'text-anchor="middle" fill="#6b7280" font-size="10"'),
      );
    }
    body.push(
      `<line x1="${left}" y1="${top}" x2="${left}" y2="${bottom}" stroke="#374151"/>`,
      `<line x1="${left}" y1="${bottom}" x2="${left + plotW}" y2="${bottom}" stroke="#374151"/>`,
      text(
        left + plotW / 2,
        bottom + 32,
        minutes ? "minutes" : "seconds",
        'text-anchor="middle" fill="#374151"',
      ),
      text(18, (top + bottom) / 2, "ms", 'text-anchor="middle" fill="#374151"'),
    );
    const absent = SERIES.filter((s) => !points.some((p) => finite(p[s.key]))).map((s) => s.name);
    if (absent.length) {
      body.push(
        text(left + plotW, y + 14, `${absent.join(", ")}: not recorded`, 'text-anchor="end" fill="#6b7280"'),
      );
    }
    for (const s of SERIES) {
      let d = "";
      let pen = false;
      const dots: string[] = [];
      for (const p of points) {
        const v = p[s.key];
        if (!finite(v)) {
          pen = false;
          continue;
        }
        d += `${pen ? "L" : "M"}${c(px(p.atS))} ${c(py(v))}`;
        pen = true;
        dots.push(`<circle cx="${c(px(p.atS))}" cy="${c(py(v))}" r="2" fill="${s.color}"/>`);
      }
      if (d) {
        body.push(
          `<path class="series-${s.name}" d="${d}" fill="none" stroke="${s.color}" stroke-width="1.5"${s.dash}/>`,
          ...dots,
        );
      }
    }
    y = bottom + 48;
  }
  return document(y, chart.title, chart.subtitle, body);
}
