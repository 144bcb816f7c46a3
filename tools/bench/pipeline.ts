/**
 * The pipeline phase (issue 17, targets 1–4): the whole service under load on an authenticated broker, JWTs,
 * digests and the per-user rate limit on, as deployed.
 * a. sustained, split: `serve --role api` + `serve --role sequencer`, a closed loop at --concurrency for the
 *    warm-up + --pipeline-duration; the figure is the rate TRADING grew at, with the CPU of every process over the
 *    same window per sequenced event;
 * b. sustained, `serve --role all`: the same, one process doing both, connected as the `all` user (broker-auth.ts);
 * c. tail: an open loop (fixed schedule, latency from each request's due time) at half of a.'s rate for
 *    --tail-minutes, a row per --tail-interval, each row's p99s against 20 ms (HTTP) and 25 ms (accept→TRADING),
 *    then the outcome checks G1–G4.
 * The machinery is the soak's (soak.ts); this file only runs it in that order.
 */
import { tradingWindowMs } from "../../src/adapters/nats/topology.ts";
import { type Ctx, resetStreams, topology } from "./phases.ts";
import { type TailSummary, tailSummary } from "./pipeline-figures.ts";
import {
  type Broker,
  brokerOf,
  type Layout,
  measureCapacity,
  type OpenLoopRun,
  runOpenLoop,
  type SoakCapacity,
} from "./soak.ts";

/** Role all could not be measured: what stopped it (a finding to report, e.g. refused credentials). */
export type CapacityFailure = { layout: Layout; error: string };

export type PipelineTail = OpenLoopRun & {
  rate: number;
  minutes: number;
  intervalS: number;
  /**
   * The streams' duplicate windows in effect (DUPLICATE_WINDOW for SEQUENCE, TRADING_DUPLICATE_WINDOW for TRADING,
   * or --service-env): nats-server holds every msg id of them, which at these rates decides its memory and much of
   * the tail (docs/performance.md, "the duplicate windows").
   */
  duplicateWindowS?: number;
  tradingDuplicateWindowS?: number;
  summary: TailSummary;
};

export type PipelineResult = {
  broker: string;
  authenticated: boolean;
  warmupS: number;
  split: SoakCapacity;
  all: SoakCapacity | CapacityFailure;
  tail: PipelineTail;
};

/** The first two non-empty lines: "<child> exited with 1 during start-up:" alone says nothing of why. */
export function headline(message: string): string {
  return message
    .split("\n")
    .map((line) => line.trim())
    .filter(Boolean)
    .slice(0, 2)
    .join(" — ");
}

export function isFailure(c: SoakCapacity | CapacityFailure): c is CapacityFailure {
  return "error" in c;
}

const fmt = (v: number) => Math.round(v).toLocaleString("en-US");

/** One progress line per sustained measurement: the rate, the answers, and the CPU per event by process. */
function capacityNote(name: string, c: SoakCapacity): string {
  const perProcess = Object.entries(c.window.cpu)
    .map(([process, cpu]) => `${process} ${cpu.usPerEvent.toFixed(0)}`)
    .join(", ");
  return `pipeline ${name}: TRADING kept up with ${fmt(c.tradingPerSec)} events/s over ${c.windowS.toFixed(1)} s (API answered ${fmt(c.httpRps)} req/s); CPU µs per event: ${perProcess}, sum ${c.window.usPerEventSum.toFixed(0)}; machine ${c.window.machineBusyPct.toFixed(0)} % busy${
    c.batches
      ? `; ${fmt(c.batches.batches)} batches of ${c.batches.meanBatchSize.toFixed(1)}, mean commit ${(c.batches.meanMs.transaction ?? Number.NaN).toFixed(1)} ms`
      : ""
  }`;
}

async function sustained(
  ctx: Ctx,
  broker: Broker,
  layout: Layout,
  tag: string,
): Promise<SoakCapacity | CapacityFailure> {
  const { concurrency, warmupMs, pipelineDurationMs: durationMs } = ctx.opts;
  const what = layout === "split" ? "api + sequencer processes" : "serve --role all";
  ctx.progress.step(
    `pipeline: sustained, ${what}, closed loop at ${concurrency} conns, ${warmupMs / 1000} + ${durationMs / 1000} s${tag}`,
  );
  const run = measureCapacity(ctx, broker, { layout, warmupMs, durationMs });
  if (layout === "split") return run;
  // Role all is the comparison, not the subject: when it cannot run here, that is the finding, and the split
  // figures and the tail are still measured.
  return run.catch((error: unknown) => {
    const message = error instanceof Error ? error.message : String(error);
    ctx.progress.note(`pipeline ${layout}: could not be measured: ${headline(message)}`);
    return { layout, error: message };
  });
}

export async function measurePipeline(ctx: Ctx, tag = ""): Promise<PipelineResult> {
  const broker = brokerOf(ctx);
  try {
    const split = (await sustained(ctx, broker, "split", tag)) as SoakCapacity;
    ctx.progress.note(capacityNote("split", split));
    const all = await sustained(ctx, broker, "all", tag);
    if (!isFailure(all)) ctx.progress.note(capacityNote("role all", all));

    const rate = Math.max(1, Math.round(split.tradingPerSec / 2));
    const durationMs = Math.round(ctx.opts.tailMinutes * 60_000);
    const intervalMs = Math.min(ctx.opts.tailIntervalMs, durationMs);
    ctx.progress.step(
      `pipeline: tail, ${ctx.opts.tailMinutes} min open loop at ${fmt(rate)} req/s (half of split), a row per ${intervalMs / 1000} s${tag}`,
    );
    // The same warm-up the closed loops get: fresh processes are still compiling their hot paths at first.
    const run = await runOpenLoop(ctx, broker, {
      rate,
      durationMs,
      intervalMs,
      label: "tail",
      warmupMs: ctx.opts.warmupMs,
    });
    const summary = tailSummary(run.rows);
    const windows = topology(ctx);
    ctx.progress.note(
      `pipeline tail: worst interval HTTP p99 ${summary.worstHttpP99Ms.toFixed(1)} ms, accept→TRADING p99 ${summary.worstToTradingP99Ms.toFixed(1)} ms; ${run.checks.filter((c) => !c.ok).length} of ${run.checks.length} outcome checks failed`,
    );
    return {
      broker: broker.description,
      authenticated: broker.authenticated,
      warmupS: ctx.opts.warmupMs / 1000,
      split,
      all,
      tail: {
        ...run,
        rate,
        minutes: ctx.opts.tailMinutes,
        intervalS: intervalMs / 1000,
        duplicateWindowS: windows.duplicateWindowMs / 1000,
        tradingDuplicateWindowS: tradingWindowMs(windows) / 1000,
        summary,
      },
    };
  } finally {
    // On NATS_URL the streams must not be left full for the next phase; the bench's own broker goes with its dir.
    await resetStreams(broker.jsm).catch((error: unknown) =>
      ctx.progress.note(`pipeline: could not delete SEQUENCE/TRADING: ${String(error)}`),
    );
  }
}
