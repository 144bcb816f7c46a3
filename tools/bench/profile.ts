/**
 * Self time per function from a V8/JSC `.cpuprofile` (what `bun --cpu-prof` writes): each sample is charged to
 * the node on top of the stack, then nodes are grouped by function and location. Percentages are of the samples,
 * i.e. of the time the JavaScript thread was busy.
 *
 *   bun tools/bench/profile.ts <file.cpuprofile> [top]     prints the table
 */
import { readFileSync } from "node:fs";

type CallFrame = { functionName: string; url: string; lineNumber: number; columnNumber: number };
type ProfileNode = { id: number; callFrame: CallFrame; hitCount?: number };
type CpuProfile = {
  nodes: ProfileNode[];
  samples?: number[];
  timeDeltas?: number[];
  startTime: number;
  endTime: number;
};

export type ProfileEntry = { function: string; location: string; selfMs: number; selfPct: number };

function location(frame: CallFrame): string {
  if (!frame.url) return "(native)";
  const path = frame.url.replace(/^file:\/\//, "");
  const short = path.includes("/node_modules/")
    ? path.slice(path.lastIndexOf("/node_modules/") + "/node_modules/".length)
    : path.replace(/^.*?\/(src|test)\//, "$1/");
  return frame.lineNumber >= 0 ? `${short}:${frame.lineNumber + 1}` : short;
}

export function summarizeProfile(path: string, top = 15): ProfileEntry[] {
  const profile = JSON.parse(readFileSync(path, "utf8")) as CpuProfile;
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const selfUs = new Map<number, number>();
  const samples = profile.samples ?? [];
  if (samples.length > 0) {
    // The profiler samples only while JavaScript runs; a long time delta is an idle gap, not work. So each
    // sample counts for one sampling interval (the median delta), whatever the gap before or after it.
    const deltas = [...(profile.timeDeltas ?? [])].sort((a, b) => a - b);
    const interval = deltas.length ? (deltas[Math.floor(deltas.length / 2)] as number) : 1000;
    for (const id of samples) selfUs.set(id, (selfUs.get(id) ?? 0) + interval);
  } else {
    const interval = (profile.endTime - profile.startTime) / Math.max(1, sumHits(profile.nodes));
    for (const node of profile.nodes) selfUs.set(node.id, (node.hitCount ?? 0) * interval);
  }
  const grouped = new Map<string, ProfileEntry>();
  let totalUs = 0;
  for (const [id, us] of selfUs) {
    const frame = byId.get(id)?.callFrame;
    if (!frame) continue;
    totalUs += us;
    const name = frame.functionName || "(anonymous)";
    const where = location(frame);
    const key = `${name}@${where}`;
    const entry = grouped.get(key) ?? { function: name, location: where, selfMs: 0, selfPct: 0 };
    entry.selfMs += us / 1000;
    grouped.set(key, entry);
  }
  return [...grouped.values()]
    .map((e) => ({ ...e, selfPct: totalUs > 0 ? (100 * e.selfMs * 1000) / totalUs : 0 }))
    .sort((a, b) => b.selfMs - a.selfMs)
    .slice(0, top);
}

function sumHits(nodes: ProfileNode[]): number {
  return nodes.reduce((sum, node) => sum + (node.hitCount ?? 0), 0);
}

export function formatProfile(entries: readonly ProfileEntry[]): string {
  const rows = entries.map(
    (e) =>
      `${e.selfPct.toFixed(1).padStart(5)} %  ${e.selfMs.toFixed(0).padStart(7)} ms  ${e.function}  ${e.location}`,
  );
  return [" self %    self ms  function  location", ...rows].join("\n");
}

if (import.meta.main) {
  const file = process.argv[2];
  if (!file) {
    process.stderr.write("usage: bun tools/bench/profile.ts <file.cpuprofile> [top]\n");
    process.exit(64);
  }
  process.stdout.write(`${formatProfile(summarizeProfile(file, Number(process.argv[3] ?? 25)))}\n`);
}
