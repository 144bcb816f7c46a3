/**
 * The bench's pipeline phase, the parts that are arithmetic: the closed loop's window (TRADING's rate and every
 * process's CPU per sequenced event between the same two samples), the tail's per-interval verdicts (an interval
 * without a percentile fails), the ratios and targets in the summary (n/a when the other side did not run), and the
 * `all` broker user (both runtime roles' rights, nothing more), and the soak generator's scan for an answer's referenceId.
 */
import { describe, expect, test } from "bun:test";
import { ROLE_PERMISSIONS, renderAuthorization } from "../../src/adapters/nats/permissions.ts";
import {
  ALL_ROLE_PERMISSIONS,
  ALL_ROLE_USER,
  renderBenchAuthorization,
  unionPermissions,
} from "../../tools/bench/broker-auth.ts";
import { referenceIdOf } from "../../tools/bench/loadgen/bun-loadgen.ts";
import { headline, type PipelineResult } from "../../tools/bench/pipeline.ts";
import {
  type CapacitySample,
  intervalVerdict,
  tailSummary,
  windowFigures,
} from "../../tools/bench/pipeline-figures.ts";
import { type RunResult, renderTable, summarize } from "../../tools/bench/report.ts";

const sample = (atMs: number, seq: number, api: number, busy: number): CapacitySample => ({
  atMs,
  tradingLastSeq: seq,
  cpuS: { api, postgres: api / 2 },
  machine: { busy, total: busy * 2 },
});

describe("windowFigures", () => {
  test("rate and CPU per event between the first and the last sample inside the window", () => {
    const samples = [
      sample(0, 0, 0, 0), // warm-up: outside the window
      sample(1_000, 1_000, 1, 100),
      sample(2_000, 3_000, 1.1, 200),
      sample(3_000, 5_000, 1.2, 300),
      sample(4_000, 9_000, 9, 400), // after the window
    ];
    const w = windowFigures(samples, 500, 3_500);
    expect(w.windowS).toBe(2);
    expect(w.events).toBe(4_000);
    expect(w.tradingPerSec).toBe(2_000);
    expect(w.cpu.api?.corePct).toBeCloseTo(10, 6); // 0.2 s of CPU in 2 s
    expect(w.cpu.api?.usPerEvent).toBeCloseTo(50, 6); // 0.2 s / 4 000 events
    expect(w.cpu.postgres?.usPerEvent).toBeCloseTo(25, 6);
    expect(w.usPerEventSum).toBeCloseTo(75, 6);
    expect(w.machineBusyPct).toBe(50);
  });

  test("fewer than two samples in the window is an error, not a rate", () => {
    expect(() => windowFigures([sample(1_000, 10, 0, 0)], 0, 5_000)).toThrow(/no two TRADING samples/);
  });

  test("no events: the rate is 0 and the CPU per event is NaN (never a division into Infinity)", () => {
    const w = windowFigures([sample(0, 7, 0, 0), sample(1_000, 7, 0.5, 10)], 0, 1_000);
    expect(w.tradingPerSec).toBe(0);
    expect(w.cpu.api?.usPerEvent).toBeNaN();
  });
});

describe("tail verdicts", () => {
  test("each interval against 20 ms (HTTP) and 25 ms (accept→TRADING), limits included", () => {
    expect(intervalVerdict({ httpP99Ms: 20, toTradingP99Ms: 25 })).toEqual({
      httpOk: true,
      toTradingOk: true,
    });
    expect(intervalVerdict({ httpP99Ms: 20.1, toTradingP99Ms: 25.1 })).toEqual({
      httpOk: false,
      toTradingOk: false,
    });
  });

  test("an interval without a percentile fails; the worst is taken over the intervals that have one", () => {
    const s = tailSummary([
      { httpP99Ms: 3, toTradingP99Ms: 9 },
      { httpP99Ms: Number.NaN, toTradingP99Ms: Number.NaN },
      { httpP99Ms: 12, toTradingP99Ms: 30 },
    ]);
    expect(s).toEqual({
      worstHttpP99Ms: 12,
      worstToTradingP99Ms: 30,
      httpIntervalsMissed: 1,
      toTradingIntervalsMissed: 2,
      intervals: 3,
      met: false,
    });
  });

  test("met only with at least one interval and every one within both limits", () => {
    expect(tailSummary([]).met).toBe(false);
    expect(tailSummary([{ httpP99Ms: 1, toTradingP99Ms: 2 }]).met).toBe(true);
  });
});

/** A pipeline result with just what the summary reads. */
function pipeline(split: number, all: number | undefined, tail: [number, number][]): PipelineResult {
  const capacity = (layout: "split" | "all", rate: number) => ({
    tradingPerSec: rate,
    httpRps: rate * 1.5,
    windowS: 20,
    concurrency: 64,
    layout,
    window: {
      windowS: 20,
      events: rate * 20,
      tradingPerSec: rate,
      cpu: {},
      usPerEventSum: 100,
      machineBusyPct: 90,
    },
    loadgenCorePct: 30,
  });
  const rows = tail.map(([httpP99Ms, toTradingP99Ms]) => ({ httpP99Ms, toTradingP99Ms }));
  return {
    split: capacity("split", split),
    all: all === undefined ? { layout: "all", error: "refused" } : capacity("all", all),
    tail: { rate: split / 2, intervalS: 10, summary: tailSummary(rows) },
  } as unknown as PipelineResult;
}

const ingest = (rps: number) =>
  ({ ours: { rps }, bare: { rps }, justPostgres: { rps } }) as RunResult["ingest"];
const target = (runs: RunResult[], name: string) =>
  summarize(runs, 5_000).targets.find((t) => t.name === name);

describe("the summary's pipeline rows", () => {
  test("ratios within the run: pipeline ÷ ingest and role all ÷ split, against 0.70 and 0.90", () => {
    const runs: RunResult[] = [{ ingest: ingest(10_000), pipeline: pipeline(7_000, 6_000, [[5, 6]]) }];
    expect(target(runs, "pipeline ÷ ingest")).toMatchObject({ value: 0.7, met: true });
    expect(target(runs, "role all ÷ split")?.value).toBeCloseTo(6 / 7, 9);
    expect(target(runs, "role all ÷ split")?.met).toBe(false);
    expect(target(runs, "CPU µs per sequenced event")).toMatchObject({ value: 100, met: true });
    expect(target(runs, "tail HTTP p99, every interval")).toMatchObject({ value: 5, met: true });
  });

  test("without the ingest phase or a role-all figure the ratio is n/a, not a verdict", () => {
    const runs: RunResult[] = [{ pipeline: pipeline(3_000, undefined, [[5, 6]]) }];
    expect(target(runs, "pipeline ÷ ingest")).toBeUndefined();
    expect(target(runs, "role all ÷ split")).toBeUndefined();
    const table = renderTable(summarize(runs, 5_000), [], 5_000, 1);
    expect(table).toMatch(
      /pipeline events\/s \(api \+ sequencer\) +3,000 +ingest not run +n\/a +≥ 0\.70× +n\/a/,
    );
    expect(table).toMatch(
      /pipeline events\/s \(serve --role all\) +failed +split 3,000 +n\/a +≥ 0\.90× +n\/a/,
    );
  });

  test("a tail interval without answers fails the bound even when every p99 that exists is within it", () => {
    const runs: RunResult[] = [
      {
        pipeline: pipeline(3_000, 3_000, [
          [5, 6],
          [Number.NaN, Number.NaN],
        ]),
      },
    ];
    expect(target(runs, "tail HTTP p99, every interval")).toMatchObject({ value: 5, met: false });
    expect(target(runs, "tail accept→TRADING p99, every interval")).toMatchObject({ value: 6, met: false });
  });
});

test("a failure's headline says why, not just that a child exited", () => {
  expect(headline("service-all exited with 1 during start-up:\n  error: refused\n\nBun v1")).toBe(
    "service-all exited with 1 during start-up: — error: refused",
  );
});

describe("the `all` broker user", () => {
  test("both runtime roles' rights: the sequencer consumer's pull and ack, both inboxes", () => {
    const p = ALL_ROLE_PERMISSIONS;
    for (const subject of [
      ...ROLE_PERMISSIONS.api.publish.allow,
      ...ROLE_PERMISSIONS.sequencer.publish.allow,
    ]) {
      expect(p.publish.allow).toContain(subject);
    }
    expect(p.publish.deny).not.toContain("$JS.API.CONSUMER.MSG.NEXT.SEQUENCE.sequencer");
    expect(p.publish.deny).not.toContain("$JS.ACK.SEQUENCE.sequencer.>");
    expect(p.subscribe.allow.sort()).toEqual(["_INBOX_api.>", "_INBOX_sequencer.>"]);
  });

  test("nothing more: no wildcard, and the consumer's create and delete stay denied", () => {
    const p = ALL_ROLE_PERMISSIONS;
    expect(p.publish.allow).not.toContain(">");
    expect(p.publish.allow.length).toBe(
      new Set([...ROLE_PERMISSIONS.api.publish.allow, ...ROLE_PERMISSIONS.sequencer.publish.allow]).size,
    );
    expect(p.publish.deny).toContain("$JS.API.CONSUMER.DELETE.SEQUENCE.sequencer");
    expect(p.publish.deny).toContain("$JS.API.CONSUMER.CREATE.SEQUENCE.sequencer");
  });

  test("a deny only goes when the other role is allowed that very subject", () => {
    const u = unionPermissions(
      { publish: { allow: ["a"], deny: ["b", "c"] }, subscribe: { allow: ["x"] } },
      { publish: { allow: ["b"] }, subscribe: { allow: ["x", "y"] } },
    );
    expect(u).toEqual({ publish: { allow: ["a", "b"], deny: ["c"] }, subscribe: { allow: ["x", "y"] } });
  });

  test("rendered after the service's users, with its password from NATS_ALL_PASSWORD", () => {
    const base = renderAuthorization();
    const rendered = renderBenchAuthorization(base);
    expect(rendered.startsWith(base.slice(0, base.lastIndexOf("\n  ]")))).toBe(true);
    expect(rendered).toContain(`user: ${ALL_ROLE_USER}\n      password: $NATS_ALL_PASSWORD`);
    expect(rendered.match(/user: /g)?.length).toBe(5);
    expect(rendered.endsWith("    }\n  ]\n}\n")).toBe(true);
    expect(() => renderBenchAuthorization("users: []\n")).toThrow(/update broker-auth.ts/);
  });
});

describe("the soak generator's answer scan", () => {
  test("finds the referenceId in the API's answer as JSON.stringify writes it, and nothing in anything else", () => {
    const answer = JSON.stringify({ referenceId: "7377265183762149376", orderId: "7377265183762149377" });
    expect(referenceIdOf(answer)).toBe("7377265183762149376");
    expect(referenceIdOf(JSON.stringify({ orderId: "1", referenceId: "42" }))).toBe("42");
    expect(referenceIdOf(JSON.stringify({ error: "rate limited" }))).toBeUndefined();
    expect(referenceIdOf('{"referenceId":""}')).toBeUndefined();
    expect(referenceIdOf('{"referenceId":"12')).toBeUndefined();
    expect(referenceIdOf("")).toBeUndefined();
  });
});
