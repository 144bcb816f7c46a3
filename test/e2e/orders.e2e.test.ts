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
import { connect } from "@nats-io/transport-node";
import { CLI } from "../support/cli.ts";
import { freePort, getPostgres, type NatsServerHandle, startNats } from "../support/services.ts";

const SECRET = "e2e-secret-0123456789-0123456789-0123456789";

type Child = { proc: ReturnType<typeof Bun.spawn>; stdout: () => string };

function spawnCli(args: string[], env: Record<string, string>): Child {
  const proc = Bun.spawn([process.execPath, CLI, ...args], {
    env: { PATH: process.env.PATH ?? "", LOG_LEVEL: "warn", ...env },
    stdout: "pipe",
    stderr: "inherit",
  });
  let out = "";
  (async () => {
    const reader = (proc.stdout as ReadableStream<Uint8Array>).getReader();
    const decoder = new TextDecoder();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      out += decoder.decode(value);
    }
  })();
  return { proc, stdout: () => out };
}

async function until<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe().catch(() => undefined);
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(100);
  }
}

async function stopChild(child: Child): Promise<number> {
  child.proc.kill("SIGTERM");
  const timeout = Bun.sleep(20_000).then(() => "timeout" as const);
  const result = await Promise.race([child.proc.exited, timeout]);
  if (result === "timeout") {
    child.proc.kill("SIGKILL");
    throw new Error("service did not exit within 20 s of SIGTERM");
  }
  return result;
}

type Event = Record<string, string>;

async function readAllEvents(base: string): Promise<Event[]> {
  const all: Event[] = [];
  let after = "0";
  for (;;) {
    const page = (await (await fetch(`${base}/events?after=${after}&limit=97`)).json()) as {
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
): Promise<{ position: number; msgId: string | undefined; body: Event }[]> {
  const nc = await connect({ servers: natsUrl });
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

    const events = await until("all events sequenced", async () => {
      const events = await readAllEvents(base);
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
    expect(trading.map((m) => m.msgId)).toEqual(events.map((e) => e.sequenceId));
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
      const events = await until("the event", async () => {
        const events = await readAllEvents(`http://127.0.0.1:${port}`);
        return events.length > 0 ? events : undefined;
      });
      expect(events.map((e) => e.referenceId)).toEqual([referenceId ?? ""]);
      const trading = await until("TRADING", async () => {
        const messages = await readTrading(natsUrl ?? "");
        return messages.length > 0 ? messages : undefined;
      });
      expect(trading.map((m) => m.body.referenceId)).toEqual([referenceId ?? ""]);
      expect(await stopChild(child)).toBe(0);
    } finally {
      if (child.proc.exitCode === null) child.proc.kill("SIGKILL");
    }
  });
});
