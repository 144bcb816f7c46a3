/**
 * Child processes of the bench: the service CLI in one role, the baseline servers and loops. Each child's output
 * goes to a log file (shown when it fails), is killed if the bench dies, and is measured from /proc: peak RSS
 * (VmHWM) and CPU time.
 */

import { closeSync, openSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { SERVICE_HEAP_ENV } from "../../src/runtime/heap-sizing.ts";
import { killWithParent } from "../services/local-services.ts";

const CLI = join(import.meta.dir, "../../src/cli.ts");
const BASELINES = join(import.meta.dir, "baselines");

export type Child = {
  name: string;
  proc: ReturnType<typeof Bun.spawn>;
  pid: number;
  logPath: string;
};

const live = new Set<Child>();
let spawned = 0;

/** SIGKILL whatever is still running (on SIGINT or a failed run). */
export function killAll(): void {
  for (const child of live) if (child.proc.exitCode === null) child.proc.kill("SIGKILL");
  live.clear();
}

export function spawnChild(
  name: string,
  argv: string[],
  env: Record<string, string>,
  logDir: string,
  bunFlags: string[] = [],
  /** "ignore": stdout to /dev/null (a child that writes more than a log should hold); stderr still logged. */
  stdout: "log" | "ignore" = "log",
): Child {
  const logPath = join(logDir, `${String(++spawned).padStart(3, "0")}-${name}.log`);
  const fd = openSync(logPath, "a");
  const proc = Bun.spawn([process.execPath, ...bunFlags, ...argv], {
    env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "/tmp", ...env },
    stdout: stdout === "log" ? fd : "ignore",
    stderr: fd,
  });
  closeSync(fd);
  killWithParent(proc.pid);
  const child = { name, proc, pid: proc.pid, logPath };
  live.add(child);
  return child;
}

/** `sequencer serve --role <role>` as a child process. */
export function spawnService(
  role: "api" | "sequencer" | "all",
  env: Record<string, string>,
  logDir: string,
  bunFlags: string[] = [],
): Child {
  // Launched the way `npm start` launches it (the heap-sizing hint), unless the run overrides it.
  return spawnChild(
    `service-${role}`,
    [CLI, "serve", "--role", role],
    { ...SERVICE_HEAP_ENV, ...env },
    logDir,
    bunFlags,
  );
}

/** `sequencer replay --after 0` as a child process, stdout (one line per event) to /dev/null. */
export function spawnReplay(env: Record<string, string>, logDir: string, bunFlags: string[] = []): Child {
  return spawnChild("replay", [CLI, "replay", "--after", "0"], env, logDir, bunFlags, "ignore");
}

/** `sequencer provision` (the admin role creates the topology an authenticated broker's runtime roles may not). */
export async function provision(env: Record<string, string>, logDir: string): Promise<void> {
  await exitedOk(spawnChild("provision", [CLI, "provision"], env, logDir));
}

export function spawnBaseline(
  script: string,
  args: string[],
  env: Record<string, string>,
  logDir: string,
): Child {
  return spawnChild(script.replace(/\.ts$/, ""), [join(BASELINES, script), ...args], env, logDir);
}

export function logTail(child: Child, bytes = 3_000): string {
  try {
    return readFileSync(child.logPath, "utf8").slice(-bytes);
  } catch {
    return "(no log)";
  }
}

/** Polls `url` until it answers 2xx; fails early with the child's log if it exits. */
export async function waitReady(child: Child, url: string, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (child.proc.exitCode !== null) {
      throw new Error(`${child.name} exited with ${child.proc.exitCode} during start-up:\n${logTail(child)}`);
    }
    const ok = await fetch(url)
      .then((res) => res.ok)
      .catch(() => false);
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`${child.name} not ready at ${url} after ${timeoutMs} ms`);
    await Bun.sleep(50);
  }
}

/** SIGTERM, then SIGKILL after `graceMs`. */
export async function stopChild(child: Child, graceMs = 15_000): Promise<void> {
  live.delete(child);
  if (child.proc.exitCode !== null) return;
  child.proc.kill("SIGTERM");
  const timer = setTimeout(() => child.proc.kill("SIGKILL"), graceMs);
  await child.proc.exited;
  clearTimeout(timer);
}

/** Waits for a child that exits on its own; throws with its log on a non-zero exit. */
export async function exitedOk(child: Child): Promise<void> {
  const code = await child.proc.exited;
  live.delete(child);
  if (code !== 0) throw new Error(`${child.name} exited with ${code}:\n${logTail(child)}`);
}

/** Peak resident set size (VmHWM) in MB, read while the process is alive. */
export function peakRssMb(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const kb = /^VmHWM:\s+(\d+)\s+kB/m.exec(status)?.[1];
  if (!kb) throw new Error(`no VmHWM in /proc/${pid}/status`);
  return Number(kb) / 1024;
}

/** The resident-set figures of /proc/<pid>/status, in MB; null once the process is gone. */
export type Residency = { vmRss: number; anon: number; file: number; shmem: number };

export function residencyMb(pid: number): Residency | null {
  let status: string;
  try {
    status = readFileSync(`/proc/${pid}/status`, "utf8");
  } catch {
    return null;
  }
  const mb = (field: string) =>
    Number(new RegExp(`^${field}:\\s+(\\d+)\\s+kB`, "m").exec(status)?.[1] ?? 0) / 1024;
  return { vmRss: mb("VmRSS"), anon: mb("RssAnon"), file: mb("RssFile"), shmem: mb("RssShmem") };
}

const CLOCK_TICKS = 100; // USER_HZ on Linux

/** User + system CPU seconds the process has used so far. */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // After "pid (comm) ": state is field 3, utime field 14, stime field 15 (1-based in proc(5)).
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
}

export type CpuSnapshot = { busy: number; total: number };

/** Machine-wide CPU counters from /proc/stat. */
export function machineCpu(): CpuSnapshot {
  const line = readFileSync("/proc/stat", "utf8").split("\n")[0] ?? "";
  const values = line.trim().split(/\s+/).slice(1).map(Number);
  const idle = (values[3] ?? 0) + (values[4] ?? 0);
  const total = values.reduce((a, b) => a + b, 0);
  return { busy: total - idle, total };
}

/** Percent of all cores busy between two snapshots (200 % would be both cores of a 2-core box: we report 0–100). */
export function busyPercent(before: CpuSnapshot, after: CpuSnapshot): number {
  const total = after.total - before.total;
  return total > 0 ? (100 * (after.busy - before.busy)) / total : 0;
}

/**
 * Waits (up to maxWaitMs) for a second in which the machine's CPUs are less than `belowPct` busy, so that a
 * measurement does not start in the middle of someone else's burst. Returns how long it waited and the last
 * busy figure; 0 disables it.
 */
export async function waitForQuiet(
  belowPct: number,
  maxWaitMs: number,
): Promise<{ waitedS: number; busyPct: number }> {
  const started = performance.now();
  let busy = 0;
  if (belowPct <= 0) return { waitedS: 0, busyPct: Number.NaN };
  for (;;) {
    const before = machineCpu();
    await Bun.sleep(1_000);
    busy = busyPercent(before, machineCpu());
    const waited = performance.now() - started;
    if (busy < belowPct || waited >= maxWaitMs) return { waitedS: waited / 1000, busyPct: busy };
  }
}
