/**
 * The monitoring files under deploy/ are checked by Prometheus's own tool, and against the metrics a running
 * service really serves: promtool checks the alert rules, runs their unit tests (alerts.test.yml) and checks the
 * scrape config; the live /metrics of an API and a sequencer (on a real nats-server and PostgreSQL, after a few
 * orders) passes `promtool check metrics` without a remark; and every metric name the alerts and the Grafana
 * dashboard use appears in that live output, so a renamed metric fails here instead of leaving a panel blank or an
 * alert silent. Broken inputs make promtool fail, which shows the checks run.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadConfig } from "../../src/config.ts";
import { createLogger } from "../../src/logger.ts";
import { ensureTestTool, PROMTOOL } from "../../src/runtime/provision-tools.ts";
import { type RunningService, startService } from "../../src/service.ts";
import { type ProcessResult, runProcess } from "../support/process.ts";
import { getPostgres, type NatsServerHandle, startNats } from "../support/services.ts";
import { waitFor } from "../support/wait.ts";

const ROOT = join(import.meta.dir, "../..");
const ALERTS = join(ROOT, "deploy/prometheus/alerts.yml");
const ALERT_TESTS = join(ROOT, "deploy/prometheus/alerts.test.yml");
const CONFIG = join(ROOT, "deploy/prometheus/prometheus.yml");
const DASHBOARD = join(ROOT, "deploy/grafana/sequencer-dashboard.json");
/** Series Prometheus makes itself for every target, never in a /metrics body. */
const SCRAPE_SERIES = new Set(["up"]);

const promtool = ensureTestTool(PROMTOOL);

/** promtool's path; without it the test fails with the reason (these checks are the point of the file). */
function promtoolPath(): string {
  if ("unavailable" in promtool) throw new Error(`promtool is needed here: ${promtool.unavailable}`);
  return promtool.path;
}

type Run = ProcessResult;

function runPromtool(args: string[], stdin?: string, cwd = ROOT): Promise<Run> {
  return runProcess([promtoolPath(), ...args], { cwd, stdin });
}

/** Exit 0, or a failure that shows what promtool said. */
function expectSuccess(run: Run): void {
  expect({ code: run.code, said: run.code === 0 ? "" : `${run.out}${run.err}` }).toEqual({
    code: 0,
    said: "",
  });
}

// PromQL words that look like identifiers but name no metric (functions and aggregations are recognised by the
// "(" after them instead).
const PROMQL_WORDS = new Set([
  "and",
  "or",
  "unless",
  "by",
  "without",
  "on",
  "ignoring",
  "group_left",
  "group_right",
  "offset",
  "bool",
  "inf",
  "nan",
  "atan2",
]);

/**
 * The metric names a PromQL expression selects: what is left once strings, label matchers, ranges, grouping
 * label lists and Grafana variables are removed, minus function calls and PromQL's own words.
 */
function metricNames(expr: string): string[] {
  const bare = expr
    .replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`/g, " ")
    .replace(/\{[^}]*\}/g, " ")
    .replace(/\[[^\]]*\]/g, " ")
    .replace(/\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, " ")
    .replace(/\$\{?\w+\}?/g, " ");
  const names = new Set<string>();
  // Not after a digit or a dot: "2m" (a duration) and "1e3" hold no name.
  for (const match of bare.matchAll(/(?<![\w.:])[A-Za-z_:][\w:]*(?![\w:]|\s*\()/g)) {
    if (!PROMQL_WORDS.has(match[0])) names.add(match[0]);
  }
  return [...names].sort();
}

/** Every name a /metrics body defines: its families (histograms with _bucket, _sum, _count) and its samples. */
function exposedNames(body: string): Set<string> {
  const names = new Set<string>();
  for (const line of body.split("\n")) {
    const type = /^# TYPE (\S+) (\S+)/.exec(line);
    if (type?.[1]) {
      names.add(type[1]);
      if (type[2] === "histogram")
        for (const suffix of ["_bucket", "_sum", "_count"]) names.add(type[1] + suffix);
    } else if (line && !line.startsWith("#")) {
      names.add(line.split(/[{\s]/)[0] ?? "");
    }
  }
  return names;
}

type Rule = { alert?: string; record?: string; expr: string };

function alertRules(): Rule[] {
  const file = Bun.YAML.parse(readFileSync(ALERTS, "utf8")) as { groups: { rules: Rule[] }[] };
  return file.groups.flatMap((group) => group.rules);
}

type Panel = {
  id: number;
  type: string;
  title: string;
  datasource?: { type: string; uid: string };
  targets?: { expr: string; datasource?: { uid: string } }[];
  panels?: Panel[];
};
type Dashboard = {
  schemaVersion: number;
  uid: string;
  panels: Panel[];
  templating: { list: { name: string; type: string; query: unknown }[] };
};

const dashboard = JSON.parse(readFileSync(DASHBOARD, "utf8")) as Dashboard;
const allPanels = dashboard.panels.flatMap((panel) => [panel, ...(panel.panels ?? [])]);
const dashboardExprs = allPanels.flatMap((panel) =>
  (panel.targets ?? []).map((target) => ({ panel: panel.title, expr: target.expr })),
);
/** The metrics the dashboard's variables list labels of (`label_values(<metric>…, <label>)`). */
const variableMetrics = dashboard.templating.list.flatMap((variable) => {
  const query = typeof variable.query === "string" ? variable.query : JSON.stringify(variable.query);
  return [...query.matchAll(/label_values\(\s*([A-Za-z_:][\w:]*)/g)].map((m) => m[1] as string);
});

test("promtool is at hand (installed through the package manager when missing)", () => {
  expect(promtool).toEqual({ path: expect.stringMatching(/promtool$/) });
});

describe("promtool on the files under deploy/prometheus", () => {
  test("check rules: alerts.yml is valid, and every alert waits (for:), has a severity and tells what to do", async () => {
    const run = await runPromtool(["check", "rules", ALERTS]);
    expectSuccess(run);
    expect(run.out).toContain(`SUCCESS: ${alertRules().length} rules found`);
    const file = Bun.YAML.parse(readFileSync(ALERTS, "utf8")) as {
      groups: {
        rules: {
          alert: string;
          for?: string;
          labels?: Record<string, string>;
          annotations?: Record<string, string>;
        }[];
      }[];
    };
    for (const rule of file.groups.flatMap((group) => group.rules)) {
      expect({ alert: rule.alert, for: rule.for }).toEqual({
        alert: rule.alert,
        for: expect.stringMatching(/^\d+m$/),
      });
      expect(["warning", "critical"]).toContain(rule.labels?.severity ?? "");
      expect(rule.annotations?.summary?.length ?? 0).toBeGreaterThan(10);
      expect(rule.annotations?.description?.length ?? 0).toBeGreaterThan(80);
    }
  });

  test("test rules: every alert fires on its series and stays silent on the look-alikes", async () => {
    const run = await runPromtool(["test", "rules", ALERT_TESTS]);
    expectSuccess(run);
    expect(run.out).toContain("SUCCESS");
    // Every alert has at least one case that expects it to fire.
    const tests = Bun.YAML.parse(readFileSync(ALERT_TESTS, "utf8")) as {
      tests: { alert_rule_test: { alertname: string; exp_alerts: unknown[] }[] }[];
    };
    const fired = new Set(
      tests.tests.flatMap((t) =>
        t.alert_rule_test.filter((c) => c.exp_alerts.length > 0).map((c) => c.alertname),
      ),
    );
    expect([...fired].sort()).toEqual(
      alertRules()
        .map((rule) => rule.alert as string)
        .sort(),
    );
  });

  test("check config: prometheus.yml scrapes api and sequencer on :9464 and finds alerts.yml beside it", async () => {
    // From another working directory: rule_files must resolve relative to the config file, not to the cwd.
    const run = await runPromtool(["check", "config", CONFIG], undefined, tmpdir());
    expectSuccess(run);
    expect(run.out).toContain("SUCCESS: 1 rule files found");
    expect(run.out).toContain(`SUCCESS: ${alertRules().length} rules found`);
    const config = Bun.YAML.parse(readFileSync(CONFIG, "utf8")) as {
      scrape_configs: { job_name: string; static_configs: { targets: string[] }[] }[];
    };
    const targets = Object.fromEntries(
      config.scrape_configs.map((job) => [job.job_name, job.static_configs.flatMap((s) => s.targets)]),
    );
    expect(targets).toEqual({ api: ["api-1:9464", "api-2:9464"], sequencer: ["sequencer:9464"] });
  });

  test("promtool fails on a broken rule file, a rule test whose expectation is wrong and a lint problem", async () => {
    const dir = mkdtempSync(join(tmpdir(), "promtool-"));
    try {
      const broken = join(dir, "broken.yml");
      writeFileSync(
        broken,
        "groups:\n  - name: broken\n    rules:\n      - alert: Broken\n        expr: sum(rate(http_requests_total[5m]) >\n        for: soon\n",
      );
      const run = await runPromtool(["check", "rules", broken]);
      expect(run.code).not.toBe(0);
      expect(`${run.out}${run.err}`).toContain("FAILED");

      // The shipped tests with one expected number changed: promtool compares what the alert says, not only
      // that it fires.
      writeFileSync(join(dir, "alerts.yml"), readFileSync(ALERTS));
      const tests = readFileSync(ALERT_TESTS, "utf8");
      const wrong = tests.replace("TRADING is 80 events behind", "TRADING is 81 events behind");
      expect(wrong).not.toBe(tests);
      writeFileSync(join(dir, "alerts.test.yml"), wrong);
      const failed = await runPromtool(["test", "rules", join(dir, "alerts.test.yml")]);
      expect(failed.code).not.toBe(0);
      expect(`${failed.out}${failed.err}`).toContain('summary="TRADING is 80 events behind');

      // A lint problem in a /metrics body: promtool check metrics says so and exits non-zero.
      const lint = await runPromtool(
        ["check", "metrics"],
        "# HELP orders Orders\n# TYPE orders counter\norders 1\n",
      );
      expect(lint.code).not.toBe(0);
      expect(`${lint.out}${lint.err}`).toContain('counter metrics should have "_total" suffix');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("the Grafana dashboard", () => {
  test("is a schemaVersion 39 dashboard whose every panel queries the DS_PROMETHEUS datasource variable", () => {
    expect(dashboard.schemaVersion).toBe(39);
    expect(dashboard.templating.list.find((v) => v.name === "DS_PROMETHEUS")).toMatchObject({
      type: "datasource",
      query: "prometheus",
    });
    const ids = allPanels.map((panel) => panel.id);
    expect(new Set(ids).size).toBe(ids.length);
    const queried = allPanels.filter((panel) => panel.type !== "row");
    expect(queried.length).toBeGreaterThan(15);
    for (const panel of queried) {
      expect({ panel: panel.title, uid: panel.datasource?.uid }).toEqual({
        panel: panel.title,
        uid: `\${DS_PROMETHEUS}`,
      });
      expect(panel.targets?.length ?? 0).toBeGreaterThan(0);
    }
  });

  test("shows every operator figure: request rate and latency, lag, heads, leader, batches, refusals, memory", () => {
    const used = new Set(dashboardExprs.flatMap(({ expr }) => metricNames(expr)));
    for (const name of [
      "http_requests_total",
      "http_request_duration_seconds_bucket",
      "sequencer_events_total",
      "intake_lag_messages",
      "sequence_head",
      "sequencer_leader",
      "sequencer_batch_size_bucket",
      "sequencer_transaction_duration_seconds_bucket",
      "sequencer_duplicates_total",
      "sequencer_rejected_total",
      "sequencer_republished_total",
      "http_rate_limited_total",
      "http_refused_total",
      "http_overloaded_total",
      "process_resident_memory_bytes",
      "process_heap_used_bytes",
    ]) {
      expect({ name, used: used.has(name) }).toEqual({ name, used: true });
    }
  });

  test("every panel query is valid PromQL (promtool checks them as recording rules)", async () => {
    const dir = mkdtempSync(join(tmpdir(), "dashboard-promql-"));
    try {
      // Grafana's variables as Prometheus would receive them with "All" selected.
      const rules = dashboardExprs.map(({ expr }, i) => ({
        record: `dashboard:panel_query_${i}`,
        expr: expr.replaceAll("$__rate_interval", "5m").replace(/\$(job|instance)\b/g, ".*"),
      }));
      const file = join(dir, "dashboard.rules.yml");
      writeFileSync(file, JSON.stringify({ groups: [{ name: "dashboard", rules }] }));
      const run = await runPromtool(["check", "rules", file]);
      expectSuccess(run);
      expect(run.out).toContain(`SUCCESS: ${rules.length} rules found`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

test("metricNames finds the selected metrics and nothing else", () => {
  expect(
    metricNames(
      'histogram_quantile(0.99, sum by (le, route) (rate(http_request_duration_seconds_bucket{job=~"$job", route!~"/a|b"}[$__rate_interval]))) ' +
        '/ on() group_left sum(sequence_head{store="trading"} offset 2m) > 1e3 and absent(up) or vector(0) unless bool x:y_z',
    ),
  ).toEqual(["http_request_duration_seconds_bucket", "sequence_head", "up", "x:y_z"]);
});

describe("against a running API and sequencer", () => {
  let nats: NatsServerHandle;
  let api: RunningService | undefined;
  let sequencer: RunningService | undefined;
  const bodies: { role: string; body: string }[] = [];
  let exposed = new Set<string>();

  async function metricsOf(service: RunningService): Promise<string> {
    const res = await fetch(`${service.opsUrl}/metrics`);
    expect(res.status).toBe(200);
    return res.text();
  }

  beforeAll(async () => {
    nats = await startNats();
    const env = {
      NATS_URL: nats.url,
      DATABASE_URL: await (await getPostgres()).createDatabase(),
      AUTH_SECRET: "prometheus-test-secret-0123456789-abcdef",
      PORT: "0",
      OPS_PORT: "0",
      WORKER_ID: "11",
      RATE_LIMIT: "off",
    };
    api = await startService(loadConfig(env), "api", createLogger({}, "silent"));
    sequencer = await startService(loadConfig(env), "sequencer", createLogger({}, "silent"));
    const token = (await api.tokens?.mint(4242n)) ?? "";
    const order = (authorization: string) =>
      fetch(`${api?.url}/orders`, {
        method: "POST",
        headers: { authorization, "content-type": "application/json" },
        body: JSON.stringify({ direction: "BUY", price: "100.5", quantity: "1" }),
      });
    // A few orders, so that the latency, publish, batch and transaction histograms have samples; and one
    // refused request, so that the refusal counters have a labelled sample.
    for (let i = 0; i < 5; i++) expect((await order(`Bearer ${token}`)).status).toBe(202);
    expect((await order("Bearer not-a-token")).status).toBe(401);
    const seq = sequencer;
    await waitFor(
      "the sequencer to sequence the orders",
      async () => /^sequencer_events_total 5$/m.test(await metricsOf(seq)),
      30_000,
    );
    bodies.push(
      { role: "api", body: await metricsOf(api) },
      { role: "sequencer", body: await metricsOf(seq) },
    );
    exposed = new Set(bodies.flatMap(({ body }) => [...exposedNames(body)]));
  }, 90_000);

  afterAll(async () => {
    await sequencer?.stop();
    await api?.stop();
    await nats?.stop();
  });

  test("/metrics of both roles passes promtool check metrics without a remark, histograms with samples", async () => {
    for (const { role, body } of bodies) {
      const run = await runPromtool(["check", "metrics"], body);
      expect({ role, code: run.code, said: `${run.out}${run.err}` }).toEqual({ role, code: 0, said: "" });
    }
    expect(bodies.find((b) => b.role === "api")?.body).toMatch(
      /^http_request_duration_seconds_count\{[^}]*route="\/orders"/m,
    );
    const sequencerBody = bodies.find((b) => b.role === "sequencer")?.body;
    expect(sequencerBody).toMatch(/^sequencer_leader 1$/m);
    expect(sequencerBody).toMatch(/^sequencer_batch_size_count [1-9]/m);
    expect(sequencerBody).toMatch(/^sequencer_transaction_duration_seconds_count [1-9]/m);
  });

  test("every metric the alerts and the dashboard use is in the live /metrics", () => {
    const missing: string[] = [];
    for (const rule of alertRules()) {
      for (const name of metricNames(rule.expr)) {
        if (!exposed.has(name) && !SCRAPE_SERIES.has(name)) missing.push(`alert ${rule.alert}: ${name}`);
      }
    }
    for (const { panel, expr } of dashboardExprs) {
      for (const name of metricNames(expr)) if (!exposed.has(name)) missing.push(`panel "${panel}": ${name}`);
    }
    for (const name of variableMetrics) if (!exposed.has(name)) missing.push(`dashboard variable: ${name}`);
    expect(missing).toEqual([]);
    // The check has teeth: the names were found, and a misspelt one would not be in the live set.
    expect(alertRules().flatMap((rule) => metricNames(rule.expr)).length).toBeGreaterThan(12);
    expect(variableMetrics.length).toBeGreaterThan(0);
    expect(exposed.has("http_requests_total")).toBe(true);
    expect(exposed.has("http_request_total")).toBe(false);
  });

  test("only the ops listener serves /metrics: the public ports answer 404", async () => {
    for (const service of [api, sequencer]) {
      const res = await fetch(`${service?.url}/metrics`);
      expect(res.status).toBe(404);
      expect(await res.text()).not.toContain("# TYPE");
    }
  });
});
