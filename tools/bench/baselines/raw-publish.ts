/**
 * Baseline (c), the broker limit on this machine: pipelined JetStream publishes without HTTP. `inFlight`
 * publishes are kept outstanding (each awaiting its PubAck), each with a msgID, intake-sized payloads.
 * Prints one JSON line: {"messages","seconds","msgsPerSec"}.
 *
 *   NATS_URL=… bun tools/bench/baselines/raw-publish.ts <messages> <inFlight> [--no-async-traces]
 */
import { DiscardPolicy, jetstream, jetstreamManager, RetentionPolicy, StorageType } from "@nats-io/jetstream";
import { connect, nanos } from "@nats-io/transport-node";
import { exitWithParent, fail, natsUserFromEnv, requireEnv, samplePayload } from "./common.ts";

const STREAM = "BENCH_RAW";

async function main(): Promise<void> {
  exitWithParent();
  const messages = Number(process.argv[2] ?? 100_000);
  const inFlight = Number(process.argv[3] ?? 2_000);
  const noAsyncTraces = process.argv.includes("--no-async-traces");
  const nc = await connect({ servers: requireEnv("NATS_URL"), noAsyncTraces, ...natsUserFromEnv() });
  const jsm = await jetstreamManager(nc);
  await jsm.streams.delete(STREAM).catch(() => false);
  await jsm.streams.add({
    name: STREAM,
    subjects: ["benchraw.>"],
    storage: StorageType.File,
    retention: RetentionPolicy.Limits,
    discard: DiscardPolicy.New,
    duplicate_window: nanos(120_000),
  });
  const js = jetstream(nc);
  const payloads = Array.from({ length: 1000 }, (_, i) => samplePayload(i));
  const run = async (count: number, idPrefix: string) => {
    let next = 0;
    const worker = async () => {
      while (next < count) {
        const i = next++;
        await js.publish("benchraw.create_order", payloads[i % payloads.length] as string, {
          msgID: `${idPrefix}${i}`,
          expect: { streamName: STREAM },
          timeout: 10_000,
        });
      }
    };
    await Promise.all(Array.from({ length: Math.min(inFlight, count) }, worker));
  };
  await run(Math.min(5_000, messages), "warm-"); // JIT and connection warm-up, not measured
  const started = performance.now();
  await run(messages, "m-");
  const seconds = (performance.now() - started) / 1000;
  await jsm.streams.delete(STREAM).catch(() => false);
  await nc.close();
  process.stdout.write(`${JSON.stringify({ messages, seconds, msgsPerSec: messages / seconds })}\n`);
  process.exit(0);
}

main().catch((error) => fail("raw-publish baseline", error));
