/**
 * `sequencer replay --after <seq>`: the sequenced events from TRADING as NDJSON on stdout (one event per line,
 * the exact published bytes), from sequenceId after+1 to the stream's last position when the replay started, or
 * on and on with --follow. A progress line goes to stderr. It reads through the same library a matching engine
 * uses (src/client, `exactly-once-sequencer/trading`): positions are checked to be gap-free and in order, and
 * from --after 0 the digest chain as well (from a later position the replay has no digest to start the chain
 * from, so it checks positions and order only).
 *
 * TRADING may no longer hold the first event asked for (TRADING_MAX_AGE / TRADING_MAX_BYTES removed it): then the
 * replay stops with one line naming the earliest sequenceId TRADING holds and where the rest is (PostgreSQL, GET
 * /events?after=N), instead of silently starting later (docs/storage.md). Also when a message is removed while the
 * replay reads.
 */
import { Buffer } from "node:buffer";
import { jetstreamManager } from "@nats-io/jetstream";
import { connectNats, type NatsIdentity } from "./adapters/nats/connection.ts";
import { TRADING_STREAM } from "./adapters/nats/topology.ts";
import { TradingTrimmedError, trimmedDetail } from "./client/trading-errors.ts";
import { subscribeTradingBatches } from "./client/trading-subscriber.ts";

export type ReplayOptions = { natsUrl: string; after: bigint; follow: boolean; identity?: NatsIdentity };

/** The library's TradingTrimmedError, worded for the CLI: resume with `replay --after`. */
export class ReplayTrimmedError extends TradingTrimmedError {
  override readonly name = "ReplayTrimmedError";
  constructor(trimmed: TradingTrimmedError) {
    super(trimmed.wanted, trimmed.earliest, trimmed.holdsNone);
    this.message =
      `replay: TRADING no longer holds sequenceId ${trimmed.wanted}: ` +
      `${trimmedDetail(trimmed.wanted, trimmed.earliest, trimmed.holdsNone)}, then replay --after ${trimmed.earliest - 1n}`;
  }
}

export { TradingTrimmedError };

/** Written to stdout once this many bytes are pending (a write per line was a third of replay's CPU). */
const CHUNK_BYTES = 256 * 1024;
const NEWLINE = 10;
/** Written chunks kept for reuse: a pipe that takes them as fast as they come needs one or two. */
const SPARE_CHUNKS = 4;

/**
 * Event bodies for stdout, each the bytes received from TRADING and a newline, copied into chunks written whole:
 * when a chunk is full (waiting for the pipe to drain), and whenever the reader waits for the broker (a macrotask
 * runs only then), so a --follow reader's lines do not wait for the next event. Bytes, not strings: joining and
 * encoding the lines again was a tenth of replay's CPU.
 */
class StdoutLines {
  private chunk: Buffer = Buffer.allocUnsafe(CHUNK_BYTES);
  /** Chunks whose write completed (the stream called back), to be filled again. */
  private readonly spare: Buffer[] = [];
  private used = 0;
  private scheduled = false;

  /** Whether a line of `bytes` (and its newline) no longer fits the chunk: then flush() first. */
  full(bytes: number): boolean {
    return this.used > 0 && this.used + bytes + 1 > this.chunk.length;
  }

  add(body: Uint8Array): void {
    // Only a line longer than a whole chunk gets here (into an empty chunk, after full() and a flush).
    if (this.used + body.length + 1 > this.chunk.length) {
      const bigger = Buffer.allocUnsafe(this.used + body.length + 1);
      this.chunk.copy(bigger, 0, 0, this.used);
      this.chunk = bigger;
    }
    this.chunk.set(body, this.used);
    this.chunk[this.used + body.length] = NEWLINE;
    this.used += body.length + 1;
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(() => void this.flush());
    }
  }

  async flush(): Promise<void> {
    this.scheduled = false;
    if (this.used === 0) return;
    // The stream may hold the written chunk until the pipe takes it: the next lines go into another one, a chunk
    // whose write has completed or a new one (a fresh 256 KB per flush was 1.5 % of a replay's CPU).
    const written = this.chunk;
    const full = written.subarray(0, this.used);
    this.chunk = this.spare.pop() ?? Buffer.allocUnsafe(CHUNK_BYTES);
    this.used = 0;
    const done = () => {
      if (written.length === CHUNK_BYTES && this.spare.length < SPARE_CHUNKS) this.spare.push(written);
    };
    if (!process.stdout.write(full, done))
      await new Promise((resolve) => process.stdout.once("drain", resolve));
  }
}

export async function replay({ natsUrl, after, follow, identity }: ReplayOptions): Promise<number> {
  const nc = await connectNats(natsUrl, { ...identity, timeout: 5_000 });
  let written = 0;
  const out = new StdoutLines();
  try {
    const jsm = await jetstreamManager(nc);
    const last = (await jsm.streams.info(TRADING_STREAM)).state.last_seq;
    if (!follow && BigInt(last) <= after) {
      process.stderr.write(`replay: nothing after ${after} (TRADING is at ${last})\n`);
      return 0;
    }
    const progress = setInterval(() => {
      process.stderr.write(`replay: ${written} events written, at sequenceId ${after + BigInt(written)}\n`);
    }, 1_000);
    try {
      // In batches (the messages that arrived together): one await per batch, not per event.
      const batches = subscribeTradingBatches({
        connection: nc,
        after,
        // From the start the chain starts at the zero digest; a later start has no stored digest to chain from.
        previousDigest: after === 0n ? undefined : null,
        ...(follow ? {} : { until: BigInt(last) }),
      });
      for await (const batch of batches) {
        for (const { body } of batch) {
          if (out.full(body.length)) await out.flush();
          out.add(body);
          written++;
        }
      }
    } catch (error) {
      throw error instanceof TradingTrimmedError ? new ReplayTrimmedError(error) : error;
    } finally {
      // Every event checked before a failure is written too, as a line-by-line writer would have.
      await out.flush();
      clearInterval(progress);
    }
    process.stderr.write(
      `replay: done, ${written} events (sequenceId ${after + 1n}..${after + BigInt(written)})\n`,
    );
    return written;
  } finally {
    await nc.close();
  }
}
