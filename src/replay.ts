/**
 * `sequencer replay --after <seq>`: the sequenced events from TRADING as NDJSON on stdout (one event per line,
 * the exact published bytes), from sequenceId after+1 to the stream's last position when the replay started, or
 * on and on with --follow. A progress line goes to stderr. TRADING positions equal sequenceIds, so this is a
 * plain ordered read from a stream position, the way any consumer of TRADING can replay.
 *
 * TRADING may no longer hold the first event asked for (TRADING_MAX_AGE / TRADING_MAX_BYTES removed it): then the
 * replay stops with one line naming the earliest sequenceId TRADING holds and where the rest is (PostgreSQL, GET
 * /events?after=N), instead of silently starting later (docs/storage.md). Also when a message is removed while the
 * replay reads.
 */
import { DeliverPolicy, type JsMsg, jetstream, jetstreamManager } from "@nats-io/jetstream";
import { connectNats, type NatsIdentity } from "./adapters/nats/connection.ts";
import { TRADING_STREAM } from "./adapters/nats/topology.ts";

export type ReplayOptions = { natsUrl: string; after: bigint; follow: boolean; identity?: NatsIdentity };

/** TRADING no longer holds `wanted` (its retention limits removed it): the events from there are in PostgreSQL. */
export class TradingTrimmedError extends Error {
  override readonly name = "TradingTrimmedError";
  constructor(
    readonly wanted: bigint,
    /** The first sequenceId TRADING holds (last + 1 when it holds none). */
    readonly earliest: bigint,
    holdsNone: boolean,
  ) {
    const held = holdsNone
      ? `TRADING holds no events now (every one up to ${earliest - 1n} was removed by its retention limits)`
      : `the earliest TRADING still holds is ${earliest} (older ones were removed by its retention limits)`;
    super(
      `replay: TRADING no longer holds sequenceId ${wanted}: ${held}; read sequenceIds ${wanted}..${earliest - 1n} ` +
        `from PostgreSQL with GET /events?after=${wanted - 1n} (a reader or admin token; pages of up to 1000, ` +
        `continue with after=<next>), then replay --after ${earliest - 1n}`,
    );
  }
}

async function write(line: string): Promise<void> {
  if (!process.stdout.write(line)) await new Promise((resolve) => process.stdout.once("drain", resolve));
}

export async function replay({ natsUrl, after, follow, identity }: ReplayOptions): Promise<number> {
  const nc = await connectNats(natsUrl, { ...identity, timeout: 5_000 });
  let written = 0;
  try {
    const jsm = await jetstreamManager(nc);
    const state = (await jsm.streams.info(TRADING_STREAM)).state;
    const last = state.last_seq;
    if (!follow && BigInt(last) <= after) {
      process.stderr.write(`replay: nothing after ${after} (TRADING is at ${last})\n`);
      return 0;
    }
    // An empty stream reports first_seq = last_seq + 1 (also after its limits removed everything).
    const earliest = BigInt(state.messages > 0 ? state.first_seq : last + 1);
    if (after + 1n < earliest && after < BigInt(last)) {
      throw new TradingTrimmedError(after + 1n, earliest, state.messages === 0);
    }
    const consumer = await jetstream(nc).consumers.get(TRADING_STREAM, {
      deliver_policy: DeliverPolicy.StartSequence,
      opt_start_seq: Number(after) + 1,
    });
    const messages = await consumer.consume();
    const decoder = new TextDecoder();
    const progress = setInterval(() => {
      process.stderr.write(`replay: ${written} events written, at sequenceId ${Number(after) + written}\n`);
    }, 1_000);
    try {
      for await (const msg of messages as AsyncIterable<JsMsg>) {
        // A message removed by the limits while this replay read (the ordered consumer skips to the next one).
        const wanted = after + BigInt(written) + 1n;
        if (BigInt(msg.seq) > wanted) throw new TradingTrimmedError(wanted, BigInt(msg.seq), false);
        await write(`${decoder.decode(msg.data)}\n`);
        written++;
        if (!follow && msg.seq >= last) break;
      }
    } finally {
      clearInterval(progress);
      await messages.close();
    }
    process.stderr.write(
      `replay: done, ${written} events (sequenceId ${after + 1n}..${after + BigInt(written)})\n`,
    );
    return written;
  } finally {
    await nc.close();
  }
}
