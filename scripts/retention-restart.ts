/**
 * Which SEQUENCE retention keeps every acknowledged message across nats-server restarts (docs/storage.md):
 * a publisher (unique msg ids) and an acking pull consumer run while the server is restarted four times (SIGTERM);
 * then every id that got a PubAck must have reached the consumer.
 *
 *   bun scripts/retention-restart.ts interest|workqueue|limits [port]
 */
import { spawn } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AckPolicy, jetstream, jetstreamManager, type RetentionPolicy } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";

const policy = (process.argv[2] ?? "workqueue") as RetentionPolicy;
const port = Number(process.argv[3] ?? 14_350);
const dir = mkdtempSync(join(tmpdir(), `retention-${policy}-`));
const start = () =>
  spawn("nats-server", ["-js", "-a", "127.0.0.1", "-p", String(port), "-sd", dir], { stdio: "ignore" });
let server = start();
await Bun.sleep(800);
const options = { servers: `127.0.0.1:${port}`, maxReconnectAttempts: -1, reconnectTimeWait: 50 };
const publisher = await connect(options);
const subscriber = await connect(options);
const jsm = await jetstreamManager(publisher);
const js = jetstream(publisher);
await jsm.streams.add({ name: "S", subjects: ["s.>"], retention: policy, duplicate_window: 5e9 });
await jsm.consumers.add("S", { durable_name: "c", ack_policy: AckPolicy.Explicit, ack_wait: 3e9 });
const seen = new Set<string>();
const accepted = new Set<string>();
const consumer = await jetstream(subscriber).consumers.get("S", "c");
void (async () => {
  for (;;) {
    try {
      for await (const m of await consumer.consume({ max_messages: 500, expires: 2_000 })) {
        seen.add(m.string());
        m.ack();
      }
    } catch {
      await Bun.sleep(100);
    }
  }
})();
let next = 0;
let stop = false;
const publishing = (async () => {
  while (!stop) {
    const batch = Array.from({ length: 50 }, () => {
      const id = String(next++);
      return js.publish("s.y", id, { msgID: id, timeout: 1_000 }).then(
        () => accepted.add(id),
        () => {},
      );
    });
    await Promise.all(batch);
  }
})();
for (let round = 0; round < 4; round++) {
  await Bun.sleep(1_500);
  server.kill("SIGTERM");
  await new Promise((resolve) => server.on("exit", resolve));
  server = start();
}
await Bun.sleep(1_500);
stop = true;
await publishing;
await Bun.sleep(8_000); // redeliveries after ack_wait
const missing = [...accepted].filter((id) => !seen.has(id));
console.log(
  JSON.stringify({ policy, accepted: accepted.size, missing: missing.length, sample: missing.slice(0, 5) }),
);
server.kill("SIGTERM");
process.exit(missing.length === 0 ? 0 : 1);
