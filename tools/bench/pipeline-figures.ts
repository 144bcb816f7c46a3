/**
 * The pipeline phase's arithmetic, kept apart from the processes so it can be tested: what a closed loop's samples
 * (TRADING's last sequence and every process's CPU seconds, read together every 250 ms) say about the measured
 * window, and how the open loop's intervals compare with the tail targets.
 */

/** One reading during the closed loop: TRADING's last_seq and each process's CPU seconds at the same moment. */
export type CapacitySample = {
  atMs: number;
  tradingLastSeq: number;
  /** CPU seconds so far, per process (api, sequencer or all, nats, postgres). */
  cpuS: Record<string, number>;
  /** Machine-wide /proc/stat counters (jiffies): how busy the box was, a noise indicator. */
  machine: { busy: number; total: number };
};

export type ProcessCpu = {
  cpuS: number;
  /** 100 = one core busy for the whole window. */
  corePct: number;
  /** CPU µs per event sequenced in the window. */
  usPerEvent: number;
};

export type WindowFigures = {
  windowS: number;
  /** Events TRADING grew by in the window. */
  events: number;
  tradingPerSec: number;
  cpu: Record<string, ProcessCpu>;
  /** Sum over the sampled processes (the service's, nats-server, PostgreSQL; never the load generator). */
  usPerEventSum: number;
  /** All cores together, 0–100. */
  machineBusyPct: number;
};

/**
 * The first and the last sample inside [fromMs, toMs]: TRADING's growth and each process's CPU between them, so
 * the rate and the CPU cover exactly the same interval. Throws with fewer than two samples in the window.
 */
export function windowFigures(
  samples: readonly CapacitySample[],
  fromMs: number,
  toMs: number,
): WindowFigures {
  const window = samples.filter((s) => s.atMs >= fromMs && s.atMs <= toMs);
  const first = window[0];
  const last = window[window.length - 1];
  if (!first || !last || last.atMs <= first.atMs) {
    throw new Error(`no two TRADING samples in the measured window (${window.length} of ${samples.length})`);
  }
  const windowS = (last.atMs - first.atMs) / 1000;
  const events = last.tradingLastSeq - first.tradingLastSeq;
  const cpu: Record<string, ProcessCpu> = {};
  for (const [name, end] of Object.entries(last.cpuS)) {
    const cpuS = end - (first.cpuS[name] ?? end);
    cpu[name] = {
      cpuS,
      corePct: (100 * cpuS) / windowS,
      usPerEvent: events > 0 ? (cpuS * 1e6) / events : Number.NaN,
    };
  }
  const machineTotal = last.machine.total - first.machine.total;
  return {
    windowS,
    events,
    tradingPerSec: events / windowS,
    cpu,
    usPerEventSum: Object.values(cpu).reduce((sum, c) => sum + c.usPerEvent, 0),
    machineBusyPct: machineTotal > 0 ? (100 * (last.machine.busy - first.machine.busy)) / machineTotal : 0,
  };
}

/** Issue 17, target 2: in every interval of the tail run. */
export const TAIL_HTTP_P99_LIMIT_MS = 20;
export const TAIL_TO_TRADING_P99_LIMIT_MS = 25;

export type IntervalVerdict = { httpOk: boolean; toTradingOk: boolean };

/** An interval without a single answer (or accepted order) has no percentile: that fails, it is not skipped. */
export function intervalVerdict(row: { httpP99Ms: number; toTradingP99Ms: number }): IntervalVerdict {
  return {
    httpOk: Number.isFinite(row.httpP99Ms) && row.httpP99Ms <= TAIL_HTTP_P99_LIMIT_MS,
    toTradingOk: Number.isFinite(row.toTradingP99Ms) && row.toTradingP99Ms <= TAIL_TO_TRADING_P99_LIMIT_MS,
  };
}

export type TailSummary = {
  /** The largest p99 among the intervals that have one; NaN when none has. */
  worstHttpP99Ms: number;
  worstToTradingP99Ms: number;
  /** Intervals over a limit, or with no percentile at all. */
  httpIntervalsMissed: number;
  toTradingIntervalsMissed: number;
  intervals: number;
  /** Every interval within both limits (and there was at least one). */
  met: boolean;
};

export function tailSummary(rows: readonly { httpP99Ms: number; toTradingP99Ms: number }[]): TailSummary {
  const worst = (values: number[]) => {
    const finite = values.filter(Number.isFinite);
    return finite.length ? Math.max(...finite) : Number.NaN;
  };
  const verdicts = rows.map(intervalVerdict);
  const httpIntervalsMissed = verdicts.filter((v) => !v.httpOk).length;
  const toTradingIntervalsMissed = verdicts.filter((v) => !v.toTradingOk).length;
  return {
    worstHttpP99Ms: worst(rows.map((r) => r.httpP99Ms)),
    worstToTradingP99Ms: worst(rows.map((r) => r.toTradingP99Ms)),
    httpIntervalsMissed,
    toTradingIntervalsMissed,
    intervals: rows.length,
    met: rows.length > 0 && httpIntervalsMissed === 0 && toTradingIntervalsMissed === 0,
  };
}
