/**
 * `npm run bench -- --quick` (bun tools/bench/index.ts) as a child process, once: it starts its own nats-server
 * and PostgreSQL, runs every phase at tiny sizes, prints the table and writes the JSON. Only that the command works is checked — every figure is a
 * positive number — never a timing threshold (CI machines vary; docs/performance.md has the real figures).
 * The soak, which a default run leaves out, gets its own smoke run: 12 s, a row per 3 s. Both write their SVG
 * charts beside the JSON.
 */
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { runProcess } from "../support/process.ts";
import { onPglite } from "../support/services.ts";

/** What `npm run bench` runs. */
const BENCH = join(import.meta.dir, "../../tools/bench/index.ts");
const dir = mkdtempSync(join(tmpdir(), "bench-e2e-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const FIGURES = [
  "ingest.ours.rps",
  "ingest.ours.p50Ms",
  "ingest.ours.p99Ms",
  "ingest.bare.rps",
  "ingest.bare.p99Ms",
  "ingest.justPostgres.rps",
  "ingest.justPostgres.p99Ms",
  "ratio.ingestVsBare",
  "ratio.ingestVsJustPostgres",
  "raw.msgsPerSec",
  "raw.noAsyncTraces.msgsPerSec",
  "drain.ours.eventsPerSec",
  "drain.naive.eventsPerSec",
  "ratio.drainVsNaive",
  "e2e.p50Ms",
  "e2e.p99Ms",
  "e2e.maxMs",
  "e2e.achievedRps",
  "rss.apiMb",
  "rss.sequencerMb",
  "replay.eventsPerSec",
  "replay.raw.eventsPerSec",
  "pipeline.split.tradingPerSec",
  "pipeline.split.cpuUsPerEvent",
  "pipeline.all.tradingPerSec",
  "ratio.pipelineVsIngest",
  "pipeline.tail.worstHttpP99Ms",
  "pipeline.tail.worstToTradingP99Ms",
  "ratio.replayVsRaw",
];

/** The two charts beside `jsonPath`, checked to be printed, written and SVG; returns their text. */
function charts(stdout: string, jsonPath: string): { throughput: string; latency: string } {
  const throughputPath = join(dirname(jsonPath), "throughput.svg");
  const latencyPath = join(dirname(jsonPath), "latency-over-time.svg");
  expect(stdout).toContain(`charts: ${throughputPath}, ${latencyPath}`);
  const [throughput, latency] = [readFileSync(throughputPath, "utf8"), readFileSync(latencyPath, "utf8")];
  for (const svg of [throughput, latency]) {
    expect(svg).toStartWith('<svg xmlns="http://www.w3.org/2000/svg"');
    expect(svg.trimEnd()).toEndWith("</svg>");
    expect(svg).not.toContain("NaN");
  }
  return { throughput, latency };
}

type TailOutcome = {
  warmup: { accepted: number };
  checks: { name: string; ok: boolean }[];
  duplicateWindowS: number;
  tradingDuplicateWindowS: number;
  rows: { sendLateP99Ms: number; httpP99Ms: number }[];
};

/** `npm run bench -- <args> --json <jsonPath>`, killed after timeoutMs; throws with both outputs on a non-zero exit. */
async function bench(
  args: string[],
  jsonPath: string,
  timeoutMs = 85_000,
): Promise<{ stdout: string; stderr: string }> {
  const env: Record<string, string> = { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? dir };
  if (process.env.PG_BIN) env.PG_BIN = process.env.PG_BIN;
  // No NATS_URL / DATABASE_URL: the bench starts its own servers.
  const {
    out: stdout,
    err: stderr,
    code,
  } = await runProcess([process.execPath, BENCH, ...args, "--json", jsonPath], { env, timeoutMs });
  if (code !== 0) throw new Error(`bench exited with ${code}\n--- stdout\n${stdout}\n--- stderr\n${stderr}`);
  return { stdout, stderr };
}

test("--help prints the bench's usage on stdout and exits 0; an unknown option is a usage error (exit 64)", async () => {
  const env = { PATH: process.env.PATH ?? "" };
  const help = await runProcess([process.execPath, BENCH, "--help"], { env });
  expect({ code: help.code, err: help.err }).toEqual({ code: 0, err: "" });
  expect(help.out).toStartWith("usage: npm run bench -- [--quick]");
  expect(help.out).toContain("--only ingest,raw,drain,e2e,pipeline,replay,soak,growth");

  const wrong = await runProcess([process.execPath, BENCH, "--no-such-option"], { env });
  expect(wrong.code).toBe(64);
  expect(wrong.out).toBe("");
  expect(wrong.err).toContain("usage: npm run bench --");
});

// The benchmark compares designs on a real, durable PostgreSQL; it refuses to run on the PGlite fallback.
test.skipIf(onPglite)(
  "bench --quick prints the table and writes JSON with every figure a positive number (needs real PostgreSQL)",
  async () => {
    const jsonPath = join(dir, "result.json");
    // A quick default run is about 80 s on the 2-core CI box, the pipeline phase (two sustained runs and a tail)
    // half of it.
    const { stdout, stderr } = await bench(["--quick"], jsonPath, 170_000);

    // The table, with the ratio column and a row per measurement.
    expect(stdout).toContain("ours÷base");
    for (const row of [
      "ingest req/s",
      "ingest p99 ms",
      "raw JetStream publish",
      "drain events/s",
      "e2e p99 ms",
      "replay events/s",
      "pipeline events/s (api + sequencer)",
      "pipeline events/s (serve --role all)",
      "CPU µs/event (api+seq+nats+pg)",
    ]) {
      expect(stdout).toContain(row);
    }
    expect(stdout).toContain(`JSON: ${jsonPath}`);
    // The soak is not part of a default run.
    expect(stdout).not.toContain("soak —");
    // Which load generator was used is said.
    expect(stderr).toMatch(/load generator: ingest (wrk|built-in Bun generator)/);

    const json = JSON.parse(readFileSync(jsonPath, "utf8")) as {
      quick: boolean;
      generator: { ingest: string };
      figures: Record<string, unknown>;
      targets: { name: string; met: unknown }[];
      runs: unknown[];
    };
    expect(json.quick).toBe(true);
    expect(["wrk", "bun"]).toContain(json.generator.ingest);
    for (const name of FIGURES) {
      const value = json.figures[name];
      if (typeof value !== "number" || !Number.isFinite(value) || value <= 0) {
        throw new Error(`figure ${name} is ${JSON.stringify(value)}, expected a positive number`);
      }
    }
    for (const value of Object.values(json.figures)) expect(typeof value).toBe("number");
    expect(json.targets.length).toBeGreaterThanOrEqual(9);
    expect(json.targets.every((t) => typeof t.met === "boolean")).toBe(true);
    expect(json.runs.length).toBe(1);
    // The tail's outcome checks hold with its warm-up load counted in them (and in no row).
    const tail = (json.runs[0] as { pipeline: { tail: TailOutcome } }).pipeline.tail;
    expect(tail.warmup.accepted).toBeGreaterThan(0);
    // Each row says how late the generator itself sent (part of, so at most, the HTTP figure), and the tail says
    // which duplicate window the streams had (the service's default here).
    for (const row of tail.rows) {
      expect(row.sendLateP99Ms).toBeGreaterThanOrEqual(0);
      expect(row.sendLateP99Ms).toBeLessThanOrEqual(row.httpP99Ms);
    }
    expect(tail.duplicateWindowS).toBe(30);
    expect(tail.tradingDuplicateWindowS).toBe(10);
    expect(stdout).toContain("duplicate windows SEQUENCE 30 s, TRADING 10 s");
    expect(tail.checks.map((c) => [c.name, c.ok])).toEqual([
      ["G1 no loss", true],
      ["G2 no duplicates", true],
      ["G3 no gaps", true],
      ["G4 no phantom", true],
    ]);

    // The charts: every phase's bars with its baselines, and the end-to-end run's latency per second.
    const { throughput, latency } = charts(stdout, jsonPath);
    for (const label of [
      "the service (api)",
      "bare publish",
      "just-Postgres",
      "the sequencer",
      "naive loop",
      "sequencer replay",
      "raw ordered consumer",
    ])
      expect(throughput).toContain(`>${label}</text>`);
    expect(throughput.match(/<rect class="bar" /g)?.length).toBe(9);
    expect(latency).toContain(">End to end at 500 req/s, per 1 s");
    expect(latency).toMatch(/<path class="series-p99" d="M[\d.]+ [\d.]+/);
  },
  180_000,
);

test.skipIf(onPglite)(
  "bench --only soak prints a row per interval, each process's memory slope with a verdict, and G1–G4 (needs real PostgreSQL)",
  async () => {
    const jsonPath = join(dir, "soak.json");
    // The capacity measurement included (no --soak-rate): 1 s + 3 s closed loop, then 12 s of soak.
    const { stdout } = await bench(
      ["--quick", "--only", "soak", "--soak-minutes", "0.2", "--soak-interval", "3"],
      jsonPath,
    );
    expect(stdout).toMatch(/^rate: half the sustained capacity: TRADING kept up with [\d,]+ events\/s/m);
    // Rows 1..4 (3 s each): "<n>  0:0<s>  <accepted> …".
    for (const [n, at] of [
      [1, "0:03"],
      [2, "0:06"],
      [3, "0:09"],
      [4, "0:12"],
    ])
      expect(stdout).toMatch(new RegExp(`^${n}\\s+${at}\\s+[\\d,]+\\s`, "m"));
    for (const name of ["api", "sequencer", "nats", "postgres"])
      expect(stdout).toMatch(
        new RegExp(`^${name}\\s+[\\d.]+\\s+[\\d.]+\\s+[+-][\\d.]+\\s+[+-][\\d.]+ %\\s+(PASS|FAIL)$`, "m"),
      );
    for (const check of ["G1 no loss", "G2 no duplicates", "G3 no gaps", "G4 no phantom"])
      expect(stdout).toMatch(new RegExp(`^${check}\\s+(PASS|FAIL)\\s`, "m"));
    // Only the soak ran: no phases' table.
    expect(stdout).not.toContain("ours÷base");

    const json = JSON.parse(readFileSync(jsonPath, "utf8")) as {
      soak: { rows: { rssMb: Record<string, number> }[]; trends: { process: string }[]; checks: unknown[] };
    };
    expect(json.soak.rows.length).toBe(4);
    expect(Object.keys(json.soak.rows[0]?.rssMb ?? {}).sort()).toEqual([
      "api",
      "nats",
      "postgres",
      "sequencer",
    ]);
    expect(json.soak.trends.map((t) => t.process).sort()).toEqual(["api", "nats", "postgres", "sequencer"]);
    expect(json.soak.checks.length).toBe(4);

    // No phase with baselines ran: the throughput chart says so; the latency chart has the soak's 4 rows.
    const { throughput, latency } = charts(stdout, jsonPath);
    expect(throughput).toContain(">no data</text>");
    expect(latency).toContain("Soak at ");
    expect(latency).toMatch(/<path class="series-p50" d="M[\d.]+ [\d.]+(L[\d.]+ [\d.]+){3}"/);
  },
  90_000,
);

test.skipIf(onPglite)(
  "bench --only replay fills TRADING and reads it with replay and a raw ordered consumer (needs real PostgreSQL)",
  async () => {
    const jsonPath = join(dir, "replay.json");
    const { stdout } = await bench(["--quick", "--only", "replay", "--replay-events", "2000"], jsonPath);
    expect(stdout).toMatch(/^replay events\/s\s+[\d,]+\s+raw ordered consumer [\d,]+\s+[\d.]+×\s+≥ 0\.90×/m);
    expect(stdout).not.toContain("drain events/s");
    const json = JSON.parse(readFileSync(jsonPath, "utf8")) as {
      figures: Record<string, number>;
      runs: { replay: { events: number; ours: { events: number }; raw: { events: number } } }[];
    };
    for (const name of ["replay.eventsPerSec", "replay.raw.eventsPerSec", "ratio.replayVsRaw"])
      expect(json.figures[name]).toBeGreaterThan(0);
    // Both readers read every event the fill appended.
    expect(json.runs[0]?.replay).toMatchObject({
      events: 2000,
      ours: { events: 2000 },
      raw: { events: 2000 },
    });
  },
  90_000,
);

test.skipIf(onPglite)(
  "bench --only growth builds a valid large log and compares drain and reads against an empty one (needs real PostgreSQL)",
  async () => {
    const jsonPath = join(dir, "growth.json");
    const { stdout } = await bench(["--quick", "--only", "growth"], jsonPath);
    expect(stdout).not.toContain("ours÷base");
    expect(stdout).toMatch(/^drain of 2,000, events\/s \(median of 2\)\s+[\d,]+\s+[\d,]+\s+[\d.]+×/m);
    const json = JSON.parse(readFileSync(jsonPath, "utf8")) as {
      growth: { rows: number; ratios: Record<string, number>; small: unknown; large: unknown };
    };
    expect(json.growth.rows).toBe(20_000);
    for (const name of ["drain", "eventsP50", "eventsP99", "referencesP50", "referencesP99"]) {
      const value = json.growth.ratios[name];
      if (typeof value !== "number" || !Number.isFinite(value) || value <= 0) {
        throw new Error(`growth ratio ${name} is ${JSON.stringify(value)}, expected a positive number`);
      }
    }
  },
  90_000,
);
