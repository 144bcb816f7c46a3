/**
 * The replay phase (issue 17, target 5): `sequencer replay --after 0` against a plain JetStream ordered consumer
 * reading the same TRADING, both as child processes connected as the reader role, alternated in the same run.
 *
 * TRADING is filled once per run with N valid events the way the sequencer publishes them (JetStreamTradingLog:
 * the same bodies, subjects, chained-digest msg ids and expected-last-sequence headers), built here from the
 * src code the sequencer uses (encodeSequencedEvent, DigestChain), without PostgreSQL: a replay reads only
 * TRADING, and a million events through the real drain would take minutes. Each reader's figure is N ÷ the time
 * from spawning it to its exit (both pay a process start and a connect; 1M < 8 s is what a user waits for).
 */
import { readFileSync } from "node:fs";
import { TRADING_STREAM } from "../../src/adapters/nats/topology.ts";
import { JetStreamTradingLog } from "../../src/adapters/nats/trading-publisher.ts";
import { DigestChain } from "../../src/app/log-digest.ts";
import type { SequencedRecord } from "../../src/app/ports.ts";
import { encodeSequencedEvent } from "../../src/domain/events.ts";
import { SnowflakeGenerator } from "../../src/domain/ids.ts";
import { CpuMeter, type CpuReport } from "./cpu.ts";
import { type Ctx, freshTopology, natsCredentials, type Quiet, quiet, readProfile } from "./phases.ts";
import { type Child, exitedOk, logTail, peakRssMb, spawnBaseline, spawnReplay } from "./processes.ts";
import type { ProfileEntry } from "./profile.ts";

export type ReplayReaderResult = {
  events: number;
  /** From spawning the reader to its exit. */
  seconds: number;
  eventsPerSec: number;
  rssMb: number;
  cpu: CpuReport;
  quiet: Quiet;
};

export type ReplayResult = {
  events: number;
  fillS: number;
  ours: ReplayReaderResult;
  raw: ReplayReaderResult;
};

/** Events per JetStreamTradingLog.append: a sequencer batch's size. */
const FILL_BATCH = 1_000;

/** Deletes the streams and appends `count` chained CREATE_ORDER events to TRADING; returns the seconds taken. */
export async function fillTrading(ctx: Ctx, count: number): Promise<number> {
  const started = performance.now();
  await freshTopology(ctx);
  const log = new JetStreamTradingLog(ctx.nc, ctx.js, ctx.jsm, 30_000);
  const ids = new SnowflakeGenerator(1001);
  const chain = new DigestChain();
  const sequencedAt = new Date().toISOString();
  for (let first = 1; first <= count; first += FILL_BATCH) {
    const records: SequencedRecord[] = [];
    for (let i = first; i < Math.min(first + FILL_BATCH, count + 1); i++) {
      const sequenceId = BigInt(i);
      const payload = encodeSequencedEvent({
        sequenceId,
        previousId: sequenceId - 1n,
        referenceId: ids.next(),
        type: "CREATE_ORDER",
        createdAt: sequencedAt,
        sequencedAt,
        userId: BigInt(1 + (i % 1000)),
        orderId: ids.next(),
        direction: i % 2 ? "BUY" : "SELL",
        price: `${100 + (i % 50)}.25`,
        quantity: "1.5",
      });
      records.push({ sequenceId, type: "CREATE_ORDER", payload, digest: chain.next(payload) });
    }
    await log.append(records);
  }
  const stored = (await ctx.jsm.streams.info(TRADING_STREAM)).state.messages;
  if (stored !== count) throw new Error(`replay: TRADING holds ${stored} events, expected ${count}`);
  return (performance.now() - started) / 1000;
}

/** Runs a reader to its exit, measuring wall time, CPU (reader and nats-server) and peak RSS. */
async function timed(
  ctx: Ctx,
  spawn: () => Child,
  count: (child: Child) => number,
): Promise<ReplayReaderResult> {
  const quietBefore = await quiet(ctx);
  const started = performance.now();
  const child = spawn();
  let rssMb = 0;
  // The reader has exited when the meter stops (/proc no longer has it): its CPU is in "other".
  const meter = new CpuMeter({ ...ctx.infraCpu });
  // VmHWM is gone once the process exits: sample it while it runs.
  const rss = setInterval(() => {
    try {
      rssMb = Math.max(rssMb, peakRssMb(child.pid));
    } catch {
      // Exiting: /proc no longer has its memory.
    }
  }, 100);
  try {
    await exitedOk(child);
  } finally {
    clearInterval(rss);
  }
  const seconds = (performance.now() - started) / 1000;
  const cpu = meter.stop();
  const events = count(child);
  return { events, seconds, eventsPerSec: events / seconds, rssMb, cpu, quiet: quietBefore };
}

/** The events the replay said it wrote ("replay: done, N events …" on stderr). */
function replayedCount(child: Child): number {
  const done = /^replay: done, (\d+) events/m.exec(readFileSync(child.logPath, "utf8"));
  if (!done) throw new Error(`replay printed no "done" line:\n${logTail(child)}`);
  return Number(done[1]);
}

function consumedCount(child: Child): number {
  const line = readFileSync(child.logPath, "utf8")
    .trim()
    .split("\n")
    .reverse()
    .find((l) => l.startsWith("{"));
  if (!line) throw new Error(`the ordered consumer printed no result:\n${logTail(child)}`);
  return (JSON.parse(line) as { messages: number }).messages;
}

/** Both readers connect as the reader user (on the bench's authenticated broker), as a downstream reader would. */
const readerEnv = (ctx: Ctx) => ({
  NATS_URL: ctx.natsUrl,
  LOG_LEVEL: "warn",
  ...natsCredentials(ctx, "reader"),
});

/** Replay and the raw ordered consumer over the same TRADING of `ctx.opts.replayEvents` events. */
export async function measureReplay(ctx: Ctx): Promise<ReplayResult> {
  const n = ctx.opts.replayEvents;
  const fillS = await fillTrading(ctx, n);
  // The raw consumer first, then replay, in every run: with --runs the two alternate.
  const raw = await timed(
    ctx,
    () => spawnBaseline("ordered-consumer.ts", [], readerEnv(ctx), ctx.logDir),
    consumedCount,
  );
  const ours = await timed(ctx, () => spawnReplay(readerEnv(ctx), ctx.logDir), replayedCount);
  for (const [name, r] of [
    ["replay", ours],
    ["ordered consumer", raw],
  ] as const) {
    if (r.events !== n) throw new Error(`${name} read ${r.events} of ${n} events`);
  }
  return { events: n, fillS, ours, raw };
}

/**
 * One more replay under `bun --cpu-prof` (profile in `profileDir`), over the TRADING the last replay phase left
 * (filled again when something else emptied it since).
 */
export async function profileReplay(
  ctx: Ctx,
  profileDir: string,
): Promise<ReplayReaderResult & { profile: { file: string; top: ProfileEntry[] } }> {
  const n = ctx.opts.replayEvents;
  const held = await ctx.jsm.streams
    .info(TRADING_STREAM)
    .then((info) => info.state.messages)
    .catch(() => 0);
  if (held !== n) await fillTrading(ctx, n);
  const flags = ["--cpu-prof", `--cpu-prof-dir=${profileDir}`];
  const result = await timed(ctx, () => spawnReplay(readerEnv(ctx), ctx.logDir, flags), replayedCount);
  return { ...result, profile: readProfile(profileDir) };
}
