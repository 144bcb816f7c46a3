/** `sequencer inspect`: the verdict follows the real state of SEQUENCE, the consumer, TRADING and the log. */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { headers } from "@nats-io/transport-node";
import { sql } from "drizzle-orm";
import { formatInspection, inspect, verifyLog } from "../../src/inspect.ts";
import { getPostgres, type NatsServerHandle, startNats } from "../support/services.ts";
import { makeOrder, openStack, runSequencer, type Stack } from "../support/stack.ts";
import { waitFor } from "../support/wait.ts";

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

/**
 * `inspect` compares TRADING's last message with the log, and `inspect --verify [--from N]` walks the whole log and
 * TRADING in step: OK on a good log, and the first bad sequenceId once an events row is tampered with.
 */
describe("the digest chain under inspect and inspect --verify", () => {
  let verifyNats: NatsServerHandle;
  let verifyStack: Stack;
  let url: string;

  beforeAll(async () => {
    verifyNats = await startNats();
    url = await (await getPostgres()).createDatabase();
    verifyStack = await openStack(verifyNats.url, url);
    for (let i = 0; i < 30; i++) await verifyStack.intake.publish(makeOrder());
    const running = await runSequencer(verifyStack, { batchSize: 7 });
    await waitFor("sequenced", async () => (await inspect(verifyNats.url, url)).verdict.state === "in sync");
    await running.stop();
  });

  afterAll(async () => {
    await verifyStack.close();
    await verifyNats.stop();
  });

  const execute = (query: ReturnType<typeof sql>) => verifyStack.database.db.execute(query);

  /** `sequencer inspect --verify [args]` as the CLI: its one line and its exit code. */
  async function cliVerify(...args: string[]): Promise<{ out: string; code: number }> {
    const cli = Bun.spawn(
      [process.execPath, join(import.meta.dir, "../../src/cli.ts"), "inspect", "--verify", ...args],
      {
        env: {
          PATH: process.env.PATH ?? "",
          NATS_URL: verifyNats.url,
          DATABASE_URL: url,
          AUTH_SECRET: "x".repeat(32),
        },
        stdout: "pipe",
        stderr: "pipe",
      },
    );
    const [out, code] = await Promise.all([new Response(cli.stdout).text(), cli.exited]);
    return { out: out.trim(), code };
  }

  test("a good log: inspect checks the tail, --verify (from 1 or from N) passes, and the CLI exits 0", async () => {
    const inspection = await inspect(verifyNats.url, url);
    expect(inspection.verdict.state).toBe("in sync");
    expect(inspection.tail).toEqual({ sequenceId: "30", difference: null });
    expect(formatInspection(inspection)).toContain("its last message matches the log");

    const verified = await verifyLog(verifyNats.url, url, 1n);
    expect(verified).toMatchObject({ state: "OK", sequenceId: null });
    expect(verified.detail).toContain("events 1..30 chain intact, TRADING 1..30 match");
    expect((await verifyLog(verifyNats.url, url, 12n)).detail).toContain("events 12..30");
    const cli = await cliVerify();
    expect(cli.code).toBe(0);
    expect(cli.out).toStartWith("verify     OK: events 1..30");
  });

  test("a tampered payload is named by --verify (exit 3), and by plain inspect when it is TRADING's last", async () => {
    const original = (await verifyStack.store.find({ sequenceId: 12n }))?.payload ?? "";
    const tampered = original.replace('"quantity":"1.5"', '"quantity":"1500"');
    expect(tampered).not.toBe(original);
    await execute(sql`update events set payload = ${tampered} where sequence_id = 12`);
    try {
      const verified = await verifyLog(verifyNats.url, url, 1n);
      expect(verified.state).toBe("MISMATCH");
      expect(verified.sequenceId).toBe("12");
      expect(verified.detail).toContain("does not follow from its payload");
      expect(verified.detail).toContain("TRADING: the message body differs");
      const cli = await cliVerify();
      expect(cli.code).toBe(3);
      expect(cli.out).toStartWith("verify     MISMATCH at sequenceId 12:");
      // From past the tampered row, the rest of the log checks out.
      expect((await verifyLog(verifyNats.url, url, 13n)).state).toBe("OK");
    } finally {
      await execute(sql`update events set payload = ${original} where sequence_id = 12`);
    }
    expect((await verifyLog(verifyNats.url, url, 1n)).state).toBe("OK");

    // The tail: plain inspect compares TRADING's last message with the log and says MISMATCH.
    const last = (await verifyStack.store.find({ sequenceId: 30n }))?.payload ?? "";
    await execute(
      sql`update events set payload = ${last.replace('"quantity":"1.5"', '"quantity":"2"')} where sequence_id = 30`,
    );
    try {
      const inspection = await inspect(verifyNats.url, url);
      expect(inspection.verdict.state).toBe("MISMATCH");
      expect(inspection.verdict.detail).toContain("sequenceId 30");
      expect(inspection.verdict.detail).toContain("body differs");
    } finally {
      await execute(sql`update events set payload = ${last} where sequence_id = 30`);
    }
  });

  test("a broken digest chain is named at the first row whose stored digest does not follow", async () => {
    await execute(
      sql`update events set digest = sha256(convert_to('not the chain', 'UTF8')) where sequence_id = 7`,
    );
    const verified = await verifyLog(verifyNats.url, url, 1n);
    expect(verified).toMatchObject({ state: "MISMATCH", sequenceId: "7" });
    expect(verified.detail).toContain("stored digest");
    expect(verified.detail).toContain("its msg id carries the digest");
    // --from 8 chains from row 7's stored digest, which row 8's no longer follows from.
    expect(await verifyLog(verifyNats.url, url, 8n)).toMatchObject({ state: "MISMATCH", sequenceId: "8" });
    expect((await verifyLog(verifyNats.url, url, 9n)).state).toBe("OK");
    const cli = await cliVerify("--from", "5");
    expect(cli.code).toBe(3);
    expect(cli.out).toStartWith("verify     MISMATCH at sequenceId 7:");
  });
});
