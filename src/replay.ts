/**
 * `sequencer replay --after <seq>`: the sequenced events from TRADING as NDJSON on stdout (one event per line,
 * the exact published bytes), from sequenceId after+1 to the stream's last position when the replay started, or
 * on and on with --follow. A progress line goes to stderr. TRADING positions equal sequenceIds, so this is a
 * plain ordered read from a stream position, the way any consumer of TRADING can replay.
 */
import { DeliverPolicy, type JsMsg, jetstream, jetstreamManager } from "@nats-io/jetstream";
import { connectNats, type NatsIdentity } from "./adapters/nats/connection.ts";
import { TRADING_STREAM } from "./adapters/nats/topology.ts";

export type ReplayOptions = { natsUrl: string; after: bigint; follow: boolean; identity?: NatsIdentity };

async function write(line: string): Promise<void> {
  if (!process.stdout.write(line)) await new Promise((resolve) => process.stdout.once("drain", resolve));
}

export async function replay({ natsUrl, after, follow, identity }: ReplayOptions): Promise<number> {
  const nc = await connectNats(natsUrl, { ...identity, timeout: 5_000 });
  let written = 0;
  try {
    const jsm = await jetstreamManager(nc);
    const last = (await jsm.streams.info(TRADING_STREAM)).state.last_seq;
    if (!follow && BigInt(last) <= after) {
      process.stderr.write(`replay: nothing after ${after} (TRADING is at ${last})\n`);
      return 0;
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
