/**
 * Baseline (a), the floor of our architecture: a bare Elysia handler that only publishes the order to JetStream
 * with a msgID and answers 202 after the PubAck. No auth, no validation, no idempotency, no metrics.
 * Env: PORT, NATS_URL (NATS_USER + NATS_PASSWORD on the bench's authenticated broker). Stream BENCH_BARE (file storage, like SEQUENCE), subjects benchbare.>.
 */
import { DiscardPolicy, jetstream, jetstreamManager, RetentionPolicy, StorageType } from "@nats-io/jetstream";
import { connect, nanos } from "@nats-io/transport-node";
import { Elysia } from "elysia";
import { exitWithParent, fail, natsUserFromEnv, requireEnv } from "./common.ts";

export const BARE_STREAM = "BENCH_BARE";

async function main(): Promise<void> {
  exitWithParent();
  const nc = await connect({ servers: requireEnv("NATS_URL"), ...natsUserFromEnv() });
  const jsm = await jetstreamManager(nc);
  await jsm.streams.delete(BARE_STREAM).catch(() => false);
  await jsm.streams.add({
    name: BARE_STREAM,
    subjects: ["benchbare.>"],
    storage: StorageType.File,
    retention: RetentionPolicy.Limits,
    discard: DiscardPolicy.New,
    duplicate_window: nanos(120_000),
  });
  const js = jetstream(nc);
  const prefix = `${process.pid}-${Date.now()}-`;
  let counter = 0;

  const app = new Elysia()
    .get("/healthz", () => ({ status: "ok" }))
    .post("/orders", async ({ body, set }) => {
      const referenceId = `${prefix}${++counter}`;
      await js.publish(
        "benchbare.create_order",
        JSON.stringify({ referenceId, createdAt: new Date().toISOString(), ...(body as object) }),
        { msgID: referenceId, expect: { streamName: BARE_STREAM }, timeout: 5_000 },
      );
      set.status = 202;
      return { referenceId };
    })
    .listen({ port: Number(requireEnv("PORT")), hostname: "127.0.0.1" });

  const stop = async () => {
    await app.stop();
    await nc.drain().catch(() => {});
    process.exit(0);
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

main().catch((error) => fail("bare-publish baseline", error));
