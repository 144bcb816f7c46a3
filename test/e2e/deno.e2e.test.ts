/**
 * The API runs unchanged under Deno 2 (the `deno` npm package): a Deno API process takes orders, a Bun sequencer
 * sequences them, against the test nats-server and PostgreSQL. Only src/runtime/http-server.ts knows which
 * runtime serves HTTP.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { join } from "node:path";
import { freePort, getPostgres, type NatsServerHandle, startNats } from "../support/services.ts";
import { until } from "../support/wait.ts";

const ROOT = join(import.meta.dir, "../..");
const DENO = join(ROOT, "node_modules/.bin/deno");
const SECRET = "deno-e2e-secret-0123456789-0123456789";

type Child = ReturnType<typeof Bun.spawn>;
let nats: NatsServerHandle;
let env: Record<string, string>;
const children: Child[] = [];

function spawn(cmd: string[], extra: Record<string, string>): Child {
  const child = Bun.spawn(cmd, {
    cwd: ROOT,
    env: {
      PATH: process.env.PATH ?? "",
      HOME: process.env.HOME ?? "/root",
      LOG_LEVEL: "warn",
      ...env,
      ...extra,
    },
    stdout: "ignore",
    stderr: "inherit",
  });
  children.push(child);
  return child;
}

beforeAll(async () => {
  nats = await startNats();
  env = {
    NATS_URL: nats.url,
    DATABASE_URL: await (await getPostgres()).createDatabase(),
    AUTH_SECRET: SECRET,
  };
});

afterAll(async () => {
  for (const child of children) if (child.exitCode === null) child.kill("SIGKILL");
  await nats.stop();
});

test("orders posted to the API running under Deno are sequenced by the Bun sequencer", async () => {
  const apiPort = await freePort();
  // OPS_PORT 0: each process's ops listener on its own free port.
  const api = spawn([DENO, "run", "-A", "src/cli.ts", "serve", "--role", "api"], {
    PORT: String(apiPort),
    OPS_PORT: "0",
  });
  const sequencerPort = await freePort();
  spawn([process.execPath, "src/cli.ts", "serve", "--role", "sequencer"], {
    PORT: String(sequencerPort),
    OPS_PORT: "0",
  });
  const base = `http://127.0.0.1:${apiPort}`;
  await until("the Deno API", async () => ((await fetch(`${base}/readyz`)).ok ? true : undefined));

  const token = Bun.spawnSync([process.execPath, "src/cli.ts", "token", "--user", "31"], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? "", ...env },
  })
    .stdout.toString()
    .trim();
  const answers = await Promise.all(
    Array.from({ length: 30 }, (_, i) =>
      fetch(`${base}/orders`, {
        method: "POST",
        headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
        body: JSON.stringify({ direction: i % 2 ? "BUY" : "SELL", price: `${i + 1}.5`, quantity: "2" }),
      }).then(async (res) => ({ status: res.status, body: (await res.json()) as { referenceId: string } })),
    ),
  );
  expect(answers.map((a) => a.status)).toEqual(answers.map(() => 202));
  const bad = await fetch(`${base}/orders`, {
    method: "POST",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: JSON.stringify({ direction: "BUY", price: "1e5", quantity: "1" }),
  });
  expect(bad.status).toBe(400);
  expect(((await bad.json()) as { error: { field: string } }).error.field).toBe("price");

  const events = await until("30 sequenced events", async () => {
    // The user's own events (GET /me/events) under Deno: all 30 are user 31's.
    const res = await fetch(`${base}/me/events?after=0&limit=100`, {
      headers: { authorization: `Bearer ${token}` },
    });
    const page = (await res.json()) as {
      events: { sequenceId: string; referenceId: string }[];
    };
    return page.events.length === 30 ? page.events : undefined;
  });
  expect(events.map((e) => e.sequenceId)).toEqual(Array.from({ length: 30 }, (_, i) => String(i + 1)));
  expect(new Set(events.map((e) => e.referenceId))).toEqual(new Set(answers.map((a) => a.body.referenceId)));

  api.kill("SIGTERM");
  expect(await api.exited).toBe(0);
});
