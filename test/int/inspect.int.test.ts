/** `sequencer inspect`: the verdict follows the real state of SEQUENCE, the consumer, TRADING and the log. */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { join } from "node:path";
import { headers } from "@nats-io/transport-node";
import { formatInspection, inspect } from "../../src/inspect.ts";
import { getPostgres, type NatsServerHandle, startNats } from "../support/services.ts";
import { makeOrder, openStack, runSequencer, type Stack, waitFor } from "../support/stack.ts";

let nats: NatsServerHandle;
let stack: Stack;
let databaseUrl: string;

beforeAll(async () => {
  nats = await startNats();
  databaseUrl = await (await getPostgres()).createDatabase();
  stack = await openStack(nats.url, databaseUrl);
});

afterAll(async () => {
  await stack.close();
  await nats.stop();
});

test("in sync, behind, then MISMATCH when TRADING runs ahead of the log", async () => {
  const empty = await inspect(nats.url, databaseUrl);
  expect(empty.verdict.state).toBe("in sync");

  for (let i = 0; i < 5; i++) await stack.intake.publish(makeOrder());
  const waiting = await inspect(nats.url, databaseUrl);
  expect(waiting.verdict).toEqual({ state: "behind", detail: "5 intake messages not yet sequenced" });
  expect(waiting.sequence.lastSeq).toBe(5);

  const running = await runSequencer(stack);
  await waitFor("drained", async () => (await inspect(nats.url, databaseUrl)).verdict.state === "in sync");
  await running.stop();
  const synced = await inspect(nats.url, databaseUrl);
  expect(synced.database).toEqual({ head: "5", count: "5", rejected: "0" });
  expect(synced.trading.lastSeq).toBe(5);
  expect(formatInspection(synced)).toContain("verdict    in sync: head 5");

  const h = headers();
  h.set("Nats-Msg-Id", "by-hand");
  await stack.js.publish("trading.create_order", "{}", { headers: h });
  const broken = await inspect(nats.url, databaseUrl);
  expect(broken.verdict.state).toBe("MISMATCH");
  expect(broken.verdict.detail).toContain("TRADING is at 6");

  // The CLI prints the same as JSON and exits 3 on a mismatch.
  const cli = Bun.spawn([process.execPath, join(import.meta.dir, "../../src/cli.ts"), "inspect", "--json"], {
    env: {
      PATH: process.env.PATH ?? "",
      NATS_URL: nats.url,
      DATABASE_URL: databaseUrl,
      AUTH_SECRET: "x".repeat(32),
    },
    stdout: "pipe",
    stderr: "pipe",
  });
  const [out, code] = await Promise.all([new Response(cli.stdout).text(), cli.exited]);
  expect(code).toBe(3);
  expect(JSON.parse(out).verdict.state).toBe("MISMATCH");
});
