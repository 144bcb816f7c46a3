/**
 * Baseline for `sequencer replay`: a plain JetStream ordered consumer reading TRADING from position 1 to its last
 * position when it started, counting messages (no decoding, no checks, no output), connected the way replay
 * connects (src/adapters/nats/connection.ts, the reader role's inbox prefix) and pulling as many messages ahead
 * as replay's reader does (TRADING_PULL_MESSAGES). What a reader of TRADING cannot beat on this machine. Prints
 * one JSON line: {"messages","seconds"} (seconds from opening the consumer).
 *
 *   NATS_URL=… bun tools/bench/baselines/ordered-consumer.ts
 */
import { DeliverPolicy, jetstream, jetstreamManager } from "@nats-io/jetstream";
import { connectNats } from "../../../src/adapters/nats/connection.ts";
import { TRADING_STREAM } from "../../../src/adapters/nats/topology.ts";
import { TRADING_PULL_MESSAGES } from "../../../src/client/trading-pull.ts";
import { exitWithParent, fail, natsUserFromEnv, requireEnv } from "./common.ts";

async function main(): Promise<void> {
  exitWithParent();
  // As the reader user on the bench's authenticated broker (NATS_USER + NATS_PASSWORD), as replay connects.
  const { user, pass } = natsUserFromEnv();
  const credentials = user && pass ? { kind: "user" as const, user, password: pass } : undefined;
  const nc = await connectNats(requireEnv("NATS_URL"), { role: "reader", credentials, timeout: 5_000 });
  const last = (await (await jetstreamManager(nc)).streams.info(TRADING_STREAM)).state.last_seq;
  const started = performance.now();
  const consumer = await jetstream(nc).consumers.get(TRADING_STREAM, {
    deliver_policy: DeliverPolicy.StartSequence,
    opt_start_seq: 1,
  });
  let messages = 0;
  if (last > 0) {
    // The pull size replay's reader uses: nats.js's default (100 a pull) made this baseline slower than replay.
    const iterator = await consumer.consume({ max_messages: TRADING_PULL_MESSAGES });
    for await (const msg of iterator) {
      messages++;
      if (msg.seq >= last) break;
    }
  }
  const seconds = (performance.now() - started) / 1000;
  process.stdout.write(`${JSON.stringify({ messages, seconds })}\n`);
  await nc.close();
}

main().catch((error: unknown) => fail("ordered consumer", error));
