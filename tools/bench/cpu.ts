/**
 * Where the CPU went during a measured window: the service (or baseline) process, nats-server, PostgreSQL (the
 * postmaster and its backends), the load generator, and the machine as a whole. Read from /proc, so it covers
 * only servers running on this machine; groups that cannot be found are left out.
 */
import { readdirSync, readFileSync } from "node:fs";
import { cpus } from "node:os";
import { busyPercent, type CpuSnapshot, machineCpu } from "./processes.ts";

const CLOCK_TICKS = 100;

type Stat = { ppid: number; comm: string; own: number; children: number };

function readStat(pid: number): Stat | null {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, "utf8");
    const comm = text.slice(text.indexOf("(") + 1, text.lastIndexOf(")"));
    const f = text.slice(text.lastIndexOf(")") + 2).split(" ");
    // proc(5), 1-based: ppid 4, utime 14, stime 15, cutime 16, cstime 17; f[0] is field 3.
    return {
      ppid: Number(f[1]),
      comm,
      own: (Number(f[11]) + Number(f[12])) / CLOCK_TICKS,
      children: (Number(f[13]) + Number(f[14])) / CLOCK_TICKS,
    };
  } catch {
    return null;
  }
}

function allPids(): number[] {
  return readdirSync("/proc")
    .filter((name) => /^\d+$/.test(name))
    .map(Number);
}

/** Children of `ppid` whose command name is `comm`. */
export function childPids(ppid: number, comm: string): number[] {
  return allPids().filter((pid) => {
    const s = readStat(pid);
    return s !== null && s.ppid === ppid && s.comm === comm;
  });
}

/** CPU seconds of a process and its descendants one level down (live ones, plus those it has reaped). */
export function treeCpuSeconds(root: number): number {
  const rootStat = readStat(root);
  if (!rootStat) return 0;
  let total = rootStat.own + rootStat.children;
  for (const pid of allPids()) {
    const s = readStat(pid);
    if (s && s.ppid === root) total += s.own;
  }
  return total;
}

export function processCpuSeconds(pid: number): number {
  const s = readStat(pid);
  return s ? s.own : 0;
}

export type CpuGroups = Record<string, () => number>;

/** CPU use over a window, as percent of one core per group, plus the machine's busy percent of all cores. */
export class CpuMeter {
  private readonly start: Record<string, number> = {};
  private readonly machineStart: CpuSnapshot;
  private readonly started = performance.now();

  constructor(private readonly groups: CpuGroups) {
    for (const [name, read] of Object.entries(groups)) this.start[name] = read();
    this.machineStart = machineCpu();
  }

  /** Call while the processes are still alive. `extra` adds groups measured otherwise (e.g. a child's rusage). */
  stop(extra: Record<string, number> = {}): CpuReport {
    const wallS = (performance.now() - this.started) / 1000;
    const corePct: Record<string, number> = {};
    for (const [name, read] of Object.entries(this.groups)) {
      corePct[name] = (100 * (read() - (this.start[name] ?? 0))) / wallS;
    }
    for (const [name, seconds] of Object.entries(extra)) corePct[name] = (100 * seconds) / wallS;
    const machineBusyPct = busyPercent(this.machineStart, machineCpu());
    const ours = Object.values(corePct).reduce((a, b) => a + b, 0);
    // Everything else on the box (other tests, the bench itself): a noise indicator for this measurement.
    corePct.other = Math.max(0, machineBusyPct * cpus().length - ours);
    return { wallS, corePct, machineBusyPct };
  }
}

export type CpuReport = {
  wallS: number;
  /** Per group: CPU time ÷ wall time × 100 (100 = one core fully busy); `other` = the rest of the machine. */
  corePct: Record<string, number>;
  /** All cores together, 0–100. */
  machineBusyPct: number;
};

/** The parent of a process, or null if it is not visible here. */
export function parentPid(pid: number): number | null {
  return readStat(pid)?.ppid ?? null;
}
