/**
 * Load generation for the HTTP phases: wrk when it is on PATH (a C load generator, the lightest on CPU), else the
 * built-in Bun generator in a child process. The fixed-rate end-to-end phase always uses the built-in one (wrk has
 * no fixed-rate mode, and the phase needs each answer's referenceId).
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { LoadResult, LoadSpec } from "./bun-loadgen.ts";

export type { LoadResult } from "./bun-loadgen.ts";

export type GeneratorKind = "wrk" | "bun";
export type Generator = { kind: GeneratorKind; description: string };
/** `authorizations`: Authorization headers taken in turn, one per request (the load spread over many users). */
export type Target = {
  url: string;
  headers: Record<string, string>;
  authorizations?: string[];
  body: string;
};

const BUN_LOADGEN = join(import.meta.dir, "bun-loadgen.ts");

function wrkVersion(): string | null {
  const r = spawnSync("wrk", ["--version"], { encoding: "utf8" });
  if (r.error) return null;
  const line = `${r.stdout}${r.stderr}`.split("\n")[0] ?? "";
  return /^wrk /.test(line) ? line.replace(/ Copyright.*$/, "").trim() : null;
}

/** wrk if installed (unless `requested` says otherwise); throws if wrk is requested and missing. */
export function pickGenerator(requested: GeneratorKind | undefined): Generator {
  const version = requested === "bun" ? null : wrkVersion();
  if (requested === "wrk" && !version) throw new Error("--generator wrk: wrk is not on PATH");
  return version
    ? { kind: "wrk", description: `${version}, 2 threads` }
    : {
        kind: "bun",
        description: `built-in Bun generator (bun ${Bun.version}, own process, fetch keep-alive)${
          requested === "bun" ? "" : "; wrk not on PATH"
        }`,
      };
}

/** Closed-loop load (fixed concurrency): warm-up first (not counted), then the measured window. */
export async function runClosedLoad(
  generator: Generator,
  target: Target,
  options: { concurrency: number; warmupMs: number; durationMs: number },
): Promise<LoadResult> {
  if (generator.kind === "wrk") {
    const warm =
      options.warmupMs > 0 ? await runWrk(target, options.concurrency, options.warmupMs) : undefined;
    const result = await runWrk(target, options.concurrency, options.durationMs);
    return { ...result, generatorCpuS: (result.generatorCpuS ?? 0) + (warm?.generatorCpuS ?? 0) };
  }
  return runBunLoadgen({ ...target, mode: "closed", ...options });
}

/** Open-loop load at a fixed rate, always with the built-in generator; returns each 2xx's referenceId. */
export function runOpenLoad(
  target: Target,
  options: { rate: number; maxInFlight: number; warmupMs: number; durationMs: number },
): Promise<LoadResult> {
  return runBunLoadgen({
    ...target,
    mode: "open",
    rate: options.rate,
    concurrency: options.maxInFlight,
    warmupMs: options.warmupMs,
    durationMs: options.durationMs,
  });
}

/** One soak request as the generator reported it (wall-clock ms; status 0 = no answer, -1 = skipped). */
export type SoakAnswer = {
  status: number;
  dueMs: number;
  /** When the generator sent it: after dueMs by the generator's own lateness (its event loop, the shared cores). */
  sentMs: number;
  answeredMs: number;
  referenceId: string | undefined;
  /** Status 0 only: why there was no answer (the generator's error, as one token). */
  failure?: string;
};

/**
 * Open-loop load for the soak, with each request reported as it resolves: `onStart` gets the schedule's start
 * (wall ms), `onAnswer` every request. Resolves with the generator's CPU seconds when the schedule has run out
 * and every request has resolved; `signal` stops the generator early (the run has failed).
 */
export async function runSoakLoad(
  target: Target,
  options: { rate: number; maxInFlight: number; durationMs: number; signal?: AbortSignal },
  handlers: { onStart(wallMs: number): void; onAnswer(answer: SoakAnswer): void },
): Promise<{ generatorCpuS: number }> {
  const dir = mkdtempSync(join(tmpdir(), "bench-loadgen-"));
  try {
    const specPath = join(dir, "spec.json");
    const spec: LoadSpec = {
      ...target,
      mode: "soak",
      rate: options.rate,
      concurrency: options.maxInFlight,
      warmupMs: 0,
      durationMs: options.durationMs,
      out: join(dir, "unused.json"),
    };
    writeFileSync(specPath, JSON.stringify(spec));
    const proc = Bun.spawn([process.execPath, BUN_LOADGEN, specPath], { stdout: "pipe", stderr: "inherit" });
    options.signal?.addEventListener("abort", () => proc.kill());
    let ended = false;
    await forEachLine(proc.stdout, (line) => {
      const [head, due, sent, answered, ref] = line.split(" ");
      if (head === "start") handlers.onStart(Number(due));
      else if (head === "end") ended = true;
      else if (head !== undefined && due !== undefined && sent !== undefined && answered !== undefined) {
        handlers.onAnswer({
          status: Number(head),
          dueMs: Number(due),
          sentMs: Number(sent),
          answeredMs: Number(answered),
          ...(head === "0"
            ? { referenceId: undefined, failure: ref ?? "unknown" }
            : { referenceId: ref === "-" ? undefined : ref }),
        });
      }
    });
    const code = await proc.exited;
    options.signal?.throwIfAborted();
    if (code !== 0 || !ended) throw new Error(`built-in load generator (soak) exited with ${code}`);
    return { generatorCpuS: cpuSecondsOf(proc) };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function forEachLine(
  stream: ReadableStream<Uint8Array>,
  onLine: (line: string) => void,
): Promise<void> {
  const decoder = new TextDecoder();
  let rest = "";
  for await (const chunk of stream) {
    const lines = (rest + decoder.decode(chunk, { stream: true })).split("\n");
    rest = lines.pop() ?? "";
    for (const line of lines) if (line) onLine(line);
  }
  if (rest) onLine(rest);
}

async function runBunLoadgen(spec: Omit<LoadSpec, "out">): Promise<LoadResult> {
  const dir = mkdtempSync(join(tmpdir(), "bench-loadgen-"));
  try {
    const out = join(dir, "result.json");
    const specPath = join(dir, "spec.json");
    writeFileSync(specPath, JSON.stringify({ ...spec, out }));
    const proc = Bun.spawn([process.execPath, BUN_LOADGEN, specPath], {
      stdout: "inherit",
      stderr: "inherit",
    });
    const code = await proc.exited;
    if (code !== 0) throw new Error(`built-in load generator exited with ${code}`);
    const result = JSON.parse(readFileSync(out, "utf8")) as LoadResult;
    return { ...result, generatorCpuS: cpuSecondsOf(proc) };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function cpuSecondsOf(proc: { resourceUsage(): { cpuTime: { total: bigint } } | undefined }): number {
  return Number(proc.resourceUsage()?.cpuTime.total ?? 0n) / 1e6;
}

function luaString(value: string): string {
  return JSON.stringify(value); // a JSON string literal is a valid Lua string literal for these ASCII values
}

/** Lua for wrk: POST with the headers and body, and a machine-readable summary line at the end. */
function wrkScript(target: Target): string {
  const headers = Object.entries(target.headers)
    .map(([name, value]) => `wrk.headers[${luaString(name)}] = ${luaString(value)}`)
    .join("\n");
  const authorizations = target.authorizations ?? [];
  // With Authorization headers to take in turn, each request is formatted with the next one (per wrk thread).
  const rotate =
    authorizations.length === 0
      ? ""
      : `authorizations = { ${authorizations.map(luaString).join(", ")} }
counter = 0
request = function()
  counter = counter + 1
  wrk.headers["authorization"] = authorizations[(counter % #authorizations) + 1]
  return wrk.format()
end
`;
  return `wrk.method = "POST"
wrk.body = ${luaString(target.body)}
${headers}
${rotate}done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "WRK_RESULT %d %d %d %d %d %d %d %d %d %d\\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), latency.max,
    e.status, e.connect, e.read, e.write, e.timeout))
end
`;
}

async function runWrk(target: Target, concurrency: number, durationMs: number): Promise<LoadResult> {
  const dir = mkdtempSync(join(tmpdir(), "bench-wrk-"));
  try {
    const script = join(dir, "post.lua");
    writeFileSync(script, wrkScript(target));
    const seconds = Math.max(1, Math.round(durationMs / 1000));
    const proc = Bun.spawn(
      ["wrk", "-t2", `-c${concurrency}`, `-d${seconds}s`, "--timeout", "10s", "-s", script, target.url],
      { stdout: "pipe", stderr: "pipe" },
    );
    const [out, err, code] = await Promise.all([
      new Response(proc.stdout).text(),
      new Response(proc.stderr).text(),
      proc.exited,
    ]);
    const line = out.split("\n").find((l) => l.startsWith("WRK_RESULT "));
    if (code !== 0 || !line) throw new Error(`wrk failed (exit ${code}):\n${out}\n${err}`);
    const [requests, durationUs, p50, p99, max, status, connect, read, write, timeout] = line
      .slice("WRK_RESULT ".length)
      .trim()
      .split(/\s+/)
      .map(Number) as number[];
    const durationS = (durationUs ?? 0) / 1e6;
    return {
      requests: requests ?? 0,
      durationS,
      rps: (requests ?? 0) / durationS,
      p50Ms: (p50 ?? 0) / 1000,
      p99Ms: (p99 ?? 0) / 1000,
      maxMs: (max ?? 0) / 1000,
      non2xx: status ?? 0,
      errors: (connect ?? 0) + (read ?? 0) + (write ?? 0) + (timeout ?? 0),
      generatorCpuS: cpuSecondsOf(proc),
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
