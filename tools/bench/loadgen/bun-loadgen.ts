/**
 * The built-in HTTP load generator, run as its own process (`bun tools/bench/loadgen/bun-loadgen.ts <spec.json>`)
 * so its event loop never competes with the service's. Three modes:
 * - closed: a fixed number of keep-alive connections, each sending its next request when the last one answered
 *   (what wrk does); gives requests/s and latency at that concurrency;
 * - open: a fixed offered rate, whatever the answers (capped in-flight requests); records, for every 2xx, the
 *   referenceId and the wall-clock time of the answer, so the end-to-end phase can match them on TRADING;
 * - soak: open loop for a long run, streamed: one line per request on stdout as it resolves (see soakLoop), so the
 *   bench can report minute by minute without the generator holding every answer until the end. It sends with
 *   raw-http.ts rather than `fetch` (a third less CPU a request, taken from the service on a shared box).
 * The result (closed, open) is written as JSON to spec.out.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { percentile, sortedCopy, wallMs } from "../stats.ts";
import { RawHttpClient } from "./raw-http.ts";

export type LoadSpec = {
  url: string;
  headers: Record<string, string>;
  /** Authorization headers taken in turn, one per request (the load spread over many users). */
  authorizations?: string[];
  body: string;
  mode: "closed" | "open" | "soak";
  /** closed: connections; open: most requests in flight (beyond it a due request is counted as skipped). */
  concurrency: number;
  /** open mode: requests per second. */
  rate?: number;
  warmupMs: number;
  durationMs: number;
  out: string;
};

export type LoadResult = {
  requests: number;
  durationS: number;
  rps: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  non2xx: number;
  errors: number;
  /** open mode: due requests not sent because `concurrency` were already in flight. */
  skipped?: number;
  /** open mode: [referenceId, wall-clock ms of the 2xx answer] for each measured request. */
  answers?: [string, number][];
  /** CPU seconds the load generator itself used (warm-up included), filled in by the parent. */
  generatorCpuS?: number;
};

type Window = { measureFrom: number; end: number };

let turn = 0;

function headersFor(spec: LoadSpec): Record<string, string> {
  const all = spec.authorizations;
  if (!all || all.length === 0) return spec.headers;
  turn = (turn + 1) % all.length;
  return { ...spec.headers, authorization: all[turn] as string };
}

async function oneRequest(spec: LoadSpec, wantBody: boolean): Promise<{ ok: boolean; body?: string }> {
  const res = await fetch(spec.url, { method: "POST", headers: headersFor(spec), body: spec.body });
  const ok = res.status >= 200 && res.status < 300;
  if (wantBody && ok) return { ok, body: await res.text() };
  await res.arrayBuffer();
  return { ok };
}

async function closedLoop(spec: LoadSpec, win: Window): Promise<LoadResult> {
  const latencies: number[] = [];
  let non2xx = 0;
  let errors = 0;
  const worker = async () => {
    for (;;) {
      const started = performance.now();
      if (started >= win.end) return;
      try {
        const { ok } = await oneRequest(spec, false);
        if (started >= win.measureFrom) {
          latencies.push(performance.now() - started);
          if (!ok) non2xx++;
        }
      } catch {
        if (started >= win.measureFrom) errors++;
        await Bun.sleep(1);
      }
    }
  };
  await Promise.all(Array.from({ length: spec.concurrency }, worker));
  return summarize(latencies, non2xx, errors, (win.end - win.measureFrom) / 1000);
}

async function openLoop(spec: LoadSpec, win: Window, started: number): Promise<LoadResult> {
  const rate = spec.rate ?? 1000;
  const latencies: number[] = [];
  const answers: [string, number][] = [];
  let non2xx = 0;
  let errors = 0;
  let skipped = 0;
  let sent = 0;
  let inFlight = 0;
  const pending = new Set<Promise<void>>();

  const send = (measured: boolean) => {
    inFlight++;
    const t0 = performance.now();
    const p = oneRequest(spec, measured)
      .then(({ ok, body }) => {
        if (!measured) return;
        latencies.push(performance.now() - t0);
        if (!ok) {
          non2xx++;
          return;
        }
        const referenceId = body ? (JSON.parse(body) as { referenceId?: string }).referenceId : undefined;
        if (referenceId) answers.push([referenceId, wallMs()]);
      })
      .catch(() => {
        if (measured) errors++;
      })
      .finally(() => {
        inFlight--;
        pending.delete(p);
      });
    pending.add(p);
  };

  for (;;) {
    const now = performance.now();
    if (now >= win.end) break;
    const due = Math.floor(((now - started) * rate) / 1000);
    while (sent < due) {
      sent++;
      if (inFlight >= spec.concurrency) {
        if (now >= win.measureFrom) skipped++;
        continue;
      }
      send(now >= win.measureFrom);
    }
    await Bun.sleep(1);
  }
  await Promise.all(pending);
  return { ...summarize(latencies, non2xx, errors, (win.end - win.measureFrom) / 1000), skipped, answers };
}

/** Longest a soak request may take: an answer that never comes must not hold the run's end forever. */
const SOAK_REQUEST_TIMEOUT_MS = 30_000;
/**
 * How often the soak's schedule wakes up to send what is due. Each request's latency is still taken from its own
 * due time, so waking every millisecond instead of once per request (5,000 timers a second at 5k req/s) adds at most
 * 1 ms to what a request reports, and leaves the CPU — which this generator shares with the service on one box — to
 * the service.
 */
const SOAK_TICK_MS = 1;

/** The soak's requests as bytes, one per authorization (taken in turn), written once. */
function soakRequests(spec: LoadSpec): Uint8Array[] {
  const all = spec.authorizations?.length ? spec.authorizations : [undefined];
  return all.map((authorization) =>
    RawHttpClient.post(
      spec.url,
      authorization === undefined ? spec.headers : { ...spec.headers, authorization },
      spec.body,
    ),
  );
}

/** Why a request got no answer, as one token for the soak's line (its referenceId field): the error's message, slugged. */
export function failureReason(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  return (
    message
      .replace(/[^A-Za-z0-9]+/g, "-")
      .replace(/^-|-$/g, "")
      .slice(0, 60) || "unknown"
  );
}

const REFERENCE_ID_KEY = '"referenceId":"';

/** The referenceId of a 2xx answer: the API writes it as a JSON string, so a scan finds it without a parse. */
export function referenceIdOf(body: string): string | undefined {
  const at = body.indexOf(REFERENCE_ID_KEY);
  if (at < 0) return undefined;
  const from = at + REFERENCE_ID_KEY.length;
  const to = body.indexOf('"', from);
  return to > from ? body.slice(from, to) : undefined;
}

/**
 * The soak's schedule: request i is due at start + i / rate, sent then whatever the earlier ones did (beyond
 * `concurrency` in flight it is skipped, not delayed). Writes `start <wall ms>` first, then per request
 * `<status> <due wall ms> <sent wall ms> <answered wall ms> <referenceId or ->` (status 0 = no answer, with
 * why in place of the referenceId; -1 = skipped), and `end`. The send time shows how much of a late answer was this generator's own lateness.
 * Latency is taken from the due time, so a stall in the generator or the service counts against the service.
 */
async function soakLoop(spec: LoadSpec): Promise<void> {
  const rate = spec.rate ?? 1000;
  let buffered = "";
  const flush = () => {
    if (buffered) process.stdout.write(buffered);
    buffered = "";
  };
  const flusher = setInterval(flush, 50);
  const started = performance.now();
  const wallAt = (perfMs: number) => (performance.timeOrigin + perfMs).toFixed(3);
  process.stdout.write(`start ${wallAt(started)}\n`);
  const end = started + spec.durationMs;
  const client = new RawHttpClient(spec.url, soakRequests(spec), SOAK_REQUEST_TIMEOUT_MS);
  let inFlight = 0;
  let unanswered: (() => void) | undefined;
  const record = (status: number, due: number, sent: number, answered: number, referenceId = "-") => {
    buffered += `${status} ${wallAt(due)} ${wallAt(sent)} ${wallAt(answered)} ${referenceId}\n`;
  };
  const settled = () => {
    inFlight--;
    if (inFlight === 0) unanswered?.();
  };
  const send = (due: number) => {
    const sent = performance.now();
    inFlight++;
    client
      .request()
      .then(({ status, body }) => {
        const ok = status >= 200 && status < 300;
        record(status, due, sent, performance.now(), ok ? referenceIdOf(body) : undefined);
      })
      .catch((error: unknown) => record(0, due, sent, performance.now(), failureReason(error)))
      .finally(settled);
  };
  const interval = 1000 / rate;
  for (let i = 0; ; ) {
    const now = performance.now();
    for (let due = started + i * interval; due <= now && due < end; due = started + ++i * interval) {
      if (inFlight >= spec.concurrency) record(-1, due, due, due);
      else send(due);
    }
    if (started + i * interval >= end) break;
    await Bun.sleep(SOAK_TICK_MS);
  }
  if (inFlight > 0) await new Promise<void>((resolve) => (unanswered = resolve));
  client.close();
  clearInterval(flusher);
  flush();
  process.stdout.write("end\n");
}

function summarize(latencies: number[], non2xx: number, errors: number, durationS: number): LoadResult {
  const sorted = sortedCopy(latencies);
  return {
    requests: latencies.length,
    durationS,
    rps: latencies.length / durationS,
    p50Ms: percentile(sorted, 50),
    p99Ms: percentile(sorted, 99),
    maxMs: sorted.length ? (sorted[sorted.length - 1] as number) : Number.NaN,
    non2xx,
    errors,
  };
}

async function main(): Promise<void> {
  const specPath = process.argv[2];
  if (!specPath) throw new Error("usage: bun-loadgen.ts <spec.json>");
  const spec = JSON.parse(readFileSync(specPath, "utf8")) as LoadSpec;
  // Never outlive the bench: a load generator orphaned by a killed parent would keep hammering the port.
  setInterval(() => process.ppid === 1 && process.exit(3), 1_000).unref();
  if (spec.mode === "soak") {
    await soakLoop(spec);
    process.exit(0);
  }
  const started = performance.now();
  const win = { measureFrom: started + spec.warmupMs, end: started + spec.warmupMs + spec.durationMs };
  const result = spec.mode === "open" ? await openLoop(spec, win, started) : await closedLoop(spec, win);
  writeFileSync(spec.out, JSON.stringify(result));
  process.exit(0);
}

if (import.meta.main) {
  main().catch((error: unknown) => {
    process.stderr.write(`bun-loadgen: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(1);
  });
}
