/**
 * The TRADING library outside Bun: a Deno process imports it by the package's name (`exactly-once-sequencer/
 * trading`, the package.json "exports" entry; Deno runs the TypeScript as it is) and reads events from a real
 * nats-server; Node (20 here, which cannot run TypeScript) runs it bundled by `bun build --target node`, the way a
 * Node service without type stripping would consume it.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runProcess } from "../support/process.ts";
import { type NatsServerHandle, startNats } from "../support/services.ts";
import { openTradingFixture, type TradingFixture } from "../support/trading-fixture.ts";

const ROOT = join(import.meta.dir, "../..");
const DENO = join(ROOT, "node_modules/.bin/deno");
const CHILD = join(import.meta.dir, "trading-subscriber.child.ts");

let nats: NatsServerHandle;
let trading: TradingFixture;
const scratch = mkdtempSync(join(tmpdir(), "trading-client-"));

beforeAll(async () => {
  nats = await startNats();
  trading = await openTradingFixture(nats.url, 8);
}, 60_000);

afterAll(async () => {
  await trading?.close();
  await nats?.stop();
  rmSync(scratch, { recursive: true, force: true });
});

/** Runs `cmd` to its end: stdout lines, stderr and exit code. */
async function run(cmd: string[]): Promise<{ lines: string[]; err: string; code: number }> {
  const { out, err, code } = await runProcess(cmd, {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "/root" },
  });
  return { lines: out.trim().split("\n").filter(Boolean), err, code };
}

const expected = (from: number, to: number) =>
  trading.published.slice(from, to).map((p) => `${p.sequenceId} ${p.digest}`);

test("under Deno: reads events 1..5 from the start and 4..8 from a middle position, chain checked", async () => {
  const fromStart = await run([DENO, "run", "-A", CHILD, nats.url, "0", "5"]);
  expect(fromStart.err).toBe("");
  expect(fromStart.code).toBe(0);
  expect(fromStart.lines).toEqual(expected(0, 5));
  const middle = await run([DENO, "run", "-A", CHILD, nats.url, "3", "8", trading.digestOf(3n)]);
  expect(middle.code).toBe(0);
  expect(middle.lines).toEqual(expected(3, 8));
  // A wrong previous digest: the typed refusal ends the process with its message.
  const wrong = await run([DENO, "run", "-A", CHILD, nats.url, "3", "8", trading.digestOf(2n)]);
  expect(wrong.code).not.toBe(0);
  expect(wrong.err).toContain("TradingDigestError");
}, 60_000);

test("under Node (bundled): reads events 1..8", async () => {
  const bundle = join(scratch, "child.mjs");
  const built = await run([process.execPath, "build", CHILD, "--target", "node", "--outfile", bundle]);
  expect(built.code).toBe(0);
  const node = await run(["node", bundle, nats.url, "0", "8"]);
  expect(node.err).toBe("");
  expect(node.code).toBe(0);
  expect(node.lines).toEqual(expected(0, 8));
}, 60_000);
