/**
 * End to end through the real CLI process: HTTP → JetStream SEQUENCE → sequencer → PostgreSQL → TRADING.
 * Hundreds of concurrent orders; every 202 must show up exactly once, 1..N, in `events` and on TRADING.
 * A second test runs the embedded first-run path (`serve` with no NATS_URL/DATABASE_URL) as a newcomer would.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type JsMsg, jetstream, jetstreamManager } from "@nats-io/jetstream";
import { connectNats, type NatsIdentity } from "../../src/adapters/nats/connection.ts";
import { tradingMsgId } from "../../src/adapters/nats/trading-publisher.ts";
import { chainDigests, ZERO_DIGEST } from "../../src/app/log-digest.ts";
import { embeddedCredentials } from "../../src/runtime/embedded-nats.ts";
import { CLI, type CliChild, cliToken, spawnCli, stopCli } from "../support/cli.ts";
import { freePort, getPostgres, type NatsServerHandle, startNats } from "../support/services.ts";
import { until } from "../support/wait.ts";

const SECRET = "e2e-secret-0123456789-0123456789-0123456789";

type Child = CliChild;
const stopChild = stopCli;

type Event = Record<string, string>;

/** The whole log through GET /events, as a reader. */
async function readAllEvents(base: string, readerToken: string): Promise<Event[]> {
  const all: Event[] = [];
  let after = "0";
  for (;;) {
    const res = await fetch(`${base}/events?after=${after}&limit=97`, {
      headers: { authorization: `Bearer ${readerToken}` },
    });
    const page = (await res.json()) as {
      events: Event[];
      next: string | null;
    };
    all.push(...page.events);
    if (page.events.length < 97 || page.next === null) return all;
    after = page.next;
  }
}

async function readTrading(
  natsUrl: string,
  identity: NatsIdentity = {},
): Promise<{ position: number; msgId: string | undefined; body: Event }[]> {
  const nc = await connectNats(natsUrl, identity);
  try {
    const jsm = await jetstreamManager(nc);
    const last = (await jsm.streams.info("TRADING")).state.last_seq;
    const out: { position: number; msgId: string | undefined; body: Event }[] = [];
    if (last === 0) return out;
    const messages = await (await jetstream(nc).consumers.get("TRADING")).consume();
    for await (const msg of messages as AsyncIterable<JsMsg>) {
      out.push({ position: msg.seq, msgId: msg.headers?.get("Nats-Msg-Id"), body: msg.json<Event>() });
      if (msg.seq >= last) break;
    }
    await messages.close();
    return out;
  } finally {
    await nc.close();
  }
}

function order(i: number) {
  return JSON.stringify({
    direction: i % 2 ? "BUY" : "SELL",
    price: `${100 + (i % 7)}.5`,
    quantity: `${1 + (i % 3)}`,
  });
}

describe("order flow against real nats-server and PostgreSQL", () => {
  let nats: NatsServerHandle;
  let child: Child;
  let base: string;
  let env: Record<string, string>;
  const dataDir = mkdtempSync(join(tmpdir(), "seq-e2e-"));

  beforeAll(async () => {
    nats = await startNats();
    const port = await freePort();
    env = {
      NATS_URL: nats.url,
      DATABASE_URL: await (await getPostgres()).createDatabase(),
      PORT: String(port),
      AUTH_SECRET: SECRET,
      DATA_DIR: dataDir,
      WORKER_ID: "7",
      // This test is about exactly-once under concurrency and sends 400 orders at once as one user: the per-user
      // rate limit (tested in test/int/http-hardening.int.test.ts) would refuse most of them.
      RATE_LIMIT: "off",
    };
    child = spawnCli(["serve"], env);
    base = `http://127.0.0.1:${port}`;
    await until("readiness", async () => ((await fetch(`${base}/readyz`)).ok ? true : undefined));
  });

  afterAll(async () => {
    if (child.proc.exitCode === null) child.proc.kill("SIGKILL");
    await nats.stop();
    rmSync(dataDir, { recursive: true, force: true });
  });

  test("400 concurrent orders: each 202 appears exactly once, 1..N, in events and on TRADING", async () => {
    const tokenCli = spawnCli(["token", "--user", "42"], env);
    expect(await tokenCli.proc.exited).toBe(0);
    const token = tokenCli.stdout().trim();
    expect(token).toMatch(/^[\w-]+\.[\w-]+\.[\w-]+$/); // only the JWT on stdout

    const answers = await Promise.all(
      Array.from({ length: 400 }, (_, i) =>
        fetch(`${base}/orders`, {
          method: "POST",
          headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
          body: order(i),
        }).then(async (res) => ({ status: res.status, body: (await res.json()) as Event })),
      ),
    );
    expect(answers.map((a) => a.status)).toEqual(answers.map(() => 202));
    const accepted = answers.map((a) => a.body.referenceId ?? "");

    const readerToken = await cliToken(env, "1", "reader");
    const events = await until("all events sequenced", async () => {
      const events = await readAllEvents(base, readerToken);
      return events.length >= accepted.length ? events : undefined;
    });
    expect(events.length).toBe(accepted.length);
    expect(events.map((e) => e.sequenceId)).toEqual(events.map((_, i) => String(i + 1)));
    expect(events.map((e) => e.previousId)).toEqual(events.map((_, i) => String(i)));
    expect(new Set(events.map((e) => e.referenceId))).toEqual(new Set(accepted));
    expect(events.every((e) => e.userId === "42" && e.type === "CREATE_ORDER")).toBe(true);
    const byRef = new Map(answers.map((a) => [a.body.referenceId, a.body.orderId]));
    expect(events.every((e) => byRef.get(e.referenceId) === e.orderId)).toBe(true);

    const trading = await until("TRADING complete", async () => {
      const messages = await readTrading(nats.url);
      return messages.length >= accepted.length ? messages : undefined;
    });
    expect(trading.map((m) => m.position)).toEqual(events.map((_, i) => i + 1));
    // Nats-Msg-Id = `<sequenceId>:<the digest's first 32 hex characters>`, the digest chained over the published
    // bodies.
    const digests = chainDigests(
      ZERO_DIGEST,
      trading.map((m) => JSON.stringify(m.body)),
    );
    expect(trading.map((m) => m.msgId)).toEqual(
      events.map((e, i) => `${e.sequenceId}:${(digests[i] ?? "").slice(0, 32)}`),
    );
    expect(trading.map((m) => m.msgId)).toEqual(
      events.map((e, i) => tradingMsgId({ sequenceId: BigInt(e.sequenceId ?? 0), digest: digests[i] ?? "" })),
    );
    expect(trading.map((m) => m.body)).toEqual(events);
  });

  test("SIGTERM shuts the service down cleanly with exit code 0", async () => {
    expect(await stopChild(child)).toBe(0);
  });
});

describe("embedded first run (no NATS_URL, no DATABASE_URL)", () => {
  const dataDir = mkdtempSync(join(tmpdir(), "seq-embedded-"));
  afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

  test("serve starts nats-server + PGlite, prints a working curl, and the order reaches events and TRADING", async () => {
    const port = await freePort();
    const child = spawnCli(["serve"], { PORT: String(port), DATA_DIR: dataDir });
    try {
      const banner = await until(
        "the start-up banner",
        async () => (child.stdout().includes("curl -sS -X POST") ? child.stdout() : undefined),
        60_000,
      );
      const token = /Bearer ([\w.-]+)/.exec(banner)?.[1];
      const natsUrl = /NATS (nats:\/\/[\d.:]+)/.exec(banner)?.[1];
      expect(token).toBeDefined();
      expect(natsUrl).toBeDefined();
      const res = await fetch(`http://127.0.0.1:${port}/orders`, {
        method: "POST",
        headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
        body: JSON.stringify({ direction: "BUY", price: "100.5", quantity: "2" }),
      });
      expect(res.status).toBe(202);
      const { referenceId } = (await res.json()) as Event;
      const readerToken = await cliToken({ PATH: process.env.PATH ?? "", DATA_DIR: dataDir }, "1", "reader");
      const events = await until("the event", async () => {
        const events = await readAllEvents(`http://127.0.0.1:${port}`, readerToken);
        return events.length > 0 ? events : undefined;
      });
      expect(events.map((e) => e.referenceId)).toEqual([referenceId ?? ""]);
      const trading = await until("TRADING", async () => {
        // As the reader role, with the password the service generated under DATA_DIR.
        const messages = await readTrading(natsUrl ?? "", {
          role: "reader",
          credentials: embeddedCredentials(dataDir, "reader"),
        });
        return messages.length > 0 ? messages : undefined;
      });
      expect(trading.map((m) => m.body.referenceId)).toEqual([referenceId ?? ""]);
      // The CLI's read commands find the embedded broker and its reader credentials from DATA_DIR alone.
      const replayed = Bun.spawnSync([process.execPath, CLI, "replay", "--after", "0"], {
        env: { PATH: process.env.PATH ?? "", DATA_DIR: dataDir },
      });
      expect(replayed.exitCode).toBe(0);
      expect(JSON.parse(replayed.stdout.toString().trim()).referenceId).toBe(referenceId);
      expect(await stopChild(child)).toBe(0);
    } finally {
      if (child.proc.exitCode === null) child.proc.kill("SIGKILL");
    }
  });
});
