/**
 * Least privilege on the broker, against a real nats-server running the shipped deploy/nats-auth.conf: the
 * service's roles do all their work with their own users (an API process and a sequencer process, provisioned by
 * the admin role) with not one permission refusal in the server's log, and every attack found on an open broker
 * is refused by the server itself.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type JetStreamClient, jetstream, jetstreamManager } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/transport-node";
import { connectNats, NatsAuthenticationError } from "../../src/adapters/nats/connection.ts";
import { NATS_ROLES, type NatsRole, passwordVariableOf } from "../../src/adapters/nats/permissions.ts";
import { type Config, ConfigError, loadConfig } from "../../src/config.ts";
import { createLogger } from "../../src/logger.ts";
import { replay } from "../../src/replay.ts";
import { ensureNatsServer } from "../../src/runtime/provision-tools.ts";
import { provisionBroker, type RunningService, startService } from "../../src/service.ts";
import { getPostgres, type NatsServerHandle, startNats } from "../support/services.ts";
import { waitFor } from "../support/wait.ts";

const root = join(import.meta.dir, "../..");
const SECRET = "nats-permissions-test-secret-0123456789";
const PASSWORD: Record<NatsRole, string> = {
  api: "pApiPassword0123456789",
  sequencer: "pSequencerPassword0123456789",
  reader: "pReaderPassword0123456789",
  admin: "pAdminPassword0123456789",
};
const silent = createLogger({}, "silent");

let nats: NatsServerHandle;
let databaseUrl: string;
let api: RunningService;
let sequencer: RunningService;
const open: NatsConnection[] = [];

function configAs(role: NatsRole, extra: Record<string, string> = {}): Config {
  return loadConfig({
    NATS_URL: nats.url,
    NATS_USER: role,
    NATS_PASSWORD: PASSWORD[role],
    DATABASE_URL: databaseUrl,
    AUTH_SECRET: SECRET,
    PORT: "0",
    OPS_PORT: "0",
    ...extra,
  });
}

async function as(role: NatsRole): Promise<NatsConnection> {
  const nc = await connectNats(nats.url, {
    role,
    credentials: { kind: "user", user: role, password: PASSWORD[role] },
  });
  open.push(nc);
  return nc;
}

/** What the server said to a request: "ok", or the refusal (a permission violation names the subject). */
async function attempt(nc: NatsConnection, subject: string, data = ""): Promise<string> {
  try {
    await nc.request(subject, data, { timeout: 3_000 });
    return "ok";
  } catch (error) {
    return String(error instanceof Error && error.cause ? error.cause : error);
  }
}

function refused(answer: string, subject: string) {
  expect(answer).toContain(`Permissions Violation for Publish to "${subject}"`);
}

/** Permission refusals the server logged after `from` (a byte offset into its log). */
function serverViolations(from = 0): string[] {
  return readFileSync(nats.logPath, "utf8")
    .slice(from)
    .split("\n")
    .filter((line) => /Violation/.test(line));
}

beforeAll(async () => {
  nats = await startNats({
    config: readFileSync(join(root, "deploy/nats-auth.conf"), "utf8"),
    env: Object.fromEntries(NATS_ROLES.map((role) => [passwordVariableOf(role), PASSWORD[role]])),
  });
  databaseUrl = await (await getPostgres()).createDatabase();
}, 60_000);

afterAll(async () => {
  for (const nc of open) await nc.close().catch(() => {});
  await api?.stop();
  await sequencer?.stop();
  await nats?.stop();
});

describe("the service's roles do their work with nothing more than their own permissions", () => {
  test("a runtime role cannot create the topology; it says to provision as admin, in one line", async () => {
    const error = await startService(configAs("api"), "api", silent).then(
      (s) => s.stop().then(() => null),
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(ConfigError);
    expect(String(error)).toContain("sequencer provision");
  });

  test("admin provisions; API and sequencer processes take orders, sequence them and publish TRADING", async () => {
    const logFrom = readFileSync(nats.logPath, "utf8").length;
    await provisionBroker(configAs("admin"), silent);
    api = await startService(configAs("api"), "api", silent);
    sequencer = await startService(configAs("sequencer"), "sequencer", silent);
    const token = await api.tokens?.mint(42n);
    const headers = { authorization: `Bearer ${token}`, "content-type": "application/json" };
    const answers = [];
    for (let i = 0; i < 5; i++) {
      const res = await fetch(`${api.url}/orders`, {
        method: "POST",
        headers: i < 2 ? { ...headers, "idempotency-key": `perm-${i}` } : headers,
        body: JSON.stringify({ direction: "BUY", price: `${100 + i}`, quantity: "1" }),
      });
      expect(res.status).toBe(202);
      answers.push((await res.json()) as { referenceId: string });
    }
    // An unknown reference makes the API read the waiting SEQUENCE messages (message gets).
    expect((await fetch(`${api.url}/references/1`, { headers })).status).toBe(404);
    const reader = await as("reader");
    const jsm = await jetstreamManager(reader);
    await waitFor(
      "TRADING holds the 5 orders",
      async () => (await jsm.streams.info("TRADING")).state.last_seq === 5,
    );
    for (const { referenceId } of answers) {
      expect((await fetch(`${api.url}/references/${referenceId}`, { headers })).status).toBe(200);
    }
    expect((await fetch(`${api.opsUrl}/metrics`)).status).toBe(200);
    expect((await fetch(`${sequencer.url}/readyz`)).status).toBe(200);
    // The reader replays TRADING (an ordered consumer) the way `sequencer replay` does.
    const written = await replay({
      natsUrl: nats.url,
      after: 2n,
      follow: false,
      identity: { role: "reader", credentials: { kind: "user", user: "reader", password: PASSWORD.reader } },
    });
    expect(written).toBe(3);
    expect(serverViolations(logFrom)).toEqual([]);
  }, 60_000);
});

describe("every attack is refused by the server", () => {
  test("no credentials, or another role's password, cannot connect", async () => {
    const none = await connectNats(nats.url, { timeout: 3_000 }).catch((e: unknown) => e);
    expect(none).toBeInstanceOf(NatsAuthenticationError);
    const wrong = await connectNats(nats.url, {
      timeout: 3_000,
      credentials: { kind: "user", user: "admin", password: PASSWORD.api },
    }).catch((e: unknown) => e);
    expect(wrong).toBeInstanceOf(NatsAuthenticationError);
  });

  test("phantom events: only the api may publish intake", async () => {
    for (const role of ["sequencer", "reader"] as const) {
      const nc = await as(role);
      refused(await attempt(nc, "sequence.deposit", '{"type":"DEPOSIT"}'), "sequence.deposit");
    }
  });

  test("forged output: only the sequencer may publish TRADING", async () => {
    for (const role of ["api", "reader"] as const) {
      const nc = await as(role);
      refused(await attempt(nc, "trading.deposit", "{}"), "trading.deposit");
    }
  });

  test("lost orders: nobody but the sequencer may pull from or ack for the durable consumer", async () => {
    for (const role of ["api", "reader"] as const) {
      const nc = await as(role);
      refused(
        await attempt(nc, "$JS.API.CONSUMER.MSG.NEXT.SEQUENCE.sequencer", '{"batch":1}'),
        "$JS.API.CONSUMER.MSG.NEXT.SEQUENCE.sequencer",
      );
      refused(
        await attempt(nc, "$JS.ACK.SEQUENCE.sequencer.1.1.1.1.0"),
        "$JS.ACK.SEQUENCE.sequencer.1.1.1.1.0",
      );
    }
    // Nor redefine it to pull through a new name, nor replace or delete it.
    const apiNc = await as("api");
    for (const subject of [
      "$JS.API.CONSUMER.DURABLE.CREATE.SEQUENCE.sequencer",
      "$JS.API.CONSUMER.CREATE.SEQUENCE.sequencer",
      "$JS.API.CONSUMER.DELETE.SEQUENCE.sequencer",
    ]) {
      refused(await attempt(apiNc, subject, "{}"), subject);
    }
  });

  test("no runtime role may delete, purge or change a stream or bucket", async () => {
    for (const role of ["api", "sequencer", "reader"] as const) {
      const nc = await as(role);
      for (const subject of [
        "$JS.API.STREAM.DELETE.SEQUENCE",
        "$JS.API.STREAM.PURGE.SEQUENCE",
        "$JS.API.STREAM.DELETE.TRADING",
        "$JS.API.STREAM.PURGE.TRADING",
        "$JS.API.STREAM.UPDATE.TRADING",
        "$JS.API.STREAM.PURGE.KV_IDEMPOTENCY",
        "$JS.API.STREAM.CREATE.EVIL",
      ]) {
        refused(await attempt(nc, subject, "{}"), subject);
      }
    }
    await expect((await jetstreamManager(await as("admin"))).streams.info("TRADING")).resolves.toBeDefined();
  });

  test("poisoned idempotency: only the api may write the IDEMPOTENCY bucket, and only it may read it", async () => {
    for (const role of ["sequencer", "reader"] as const) {
      const nc = await as(role);
      refused(await attempt(nc, "$KV.IDEMPOTENCY.42.kv-poison", "{}"), "$KV.IDEMPOTENCY.42.kv-poison");
      refused(
        await attempt(nc, "$JS.API.DIRECT.GET.KV_IDEMPOTENCY.$KV.IDEMPOTENCY.42.kv-poison"),
        "$JS.API.DIRECT.GET.KV_IDEMPOTENCY.$KV.IDEMPOTENCY.42.kv-poison",
      );
    }
  });

  test("reading what is not theirs: intake is not for readers, and no role may read another's inbox", async () => {
    // Nor for the api any more: it reads waiting intake by message gets (a work-queue stream takes no other consumer).
    for (const role of ["reader", "api"] as const) {
      refused(
        await attempt(await as(role), "$JS.API.CONSUMER.CREATE.SEQUENCE", "{}"),
        "$JS.API.CONSUMER.CREATE.SEQUENCE",
      );
    }
    for (const role of ["reader", "sequencer"] as const) {
      const nc = await as(role);
      const sub = nc.subscribe("_INBOX_api.>");
      const closed = await Promise.race([sub.closed, Bun.sleep(3_000).then(() => "still open")]);
      expect(String(closed)).toContain('Permissions Violation for Subscription to "_INBOX_api.>"');
    }
  });

  test("junk cannot fill the intake store: SEQUENCE refuses a message over its size cap", async () => {
    const js: JetStreamClient = jetstream(await as("api"));
    const error = await js.publish("sequence.deposit", "x".repeat(5_000)).catch((e: unknown) => e);
    expect(String(error)).toContain("maximum");
    const kv = await new Kvm(js).open("IDEMPOTENCY");
    expect(await kv.get("never-written")).toBeNull();
  });
});

test("compose's deploy/nats.conf parses only when every role's password is in the environment", () => {
  const dir = mkdtempSync(join(tmpdir(), "nats-conf-"));
  try {
    // sync_interval is nats-server 2.10's (compose runs 2.10; Debian ships 2.9): the rest must parse as shipped.
    const shipped = readFileSync(join(root, "deploy/nats.conf"), "utf8");
    writeFileSync(join(dir, "nats.conf"), shipped.replace(/^\s*sync_interval:.*$/m, ""));
    copyFileSync(join(root, "deploy/nats-auth.conf"), join(dir, "nats-auth.conf"));
    const check = (env: Record<string, string>) =>
      Bun.spawnSync([ensureNatsServer(), "-t", "-c", join(dir, "nats.conf")], {
        env: { PATH: "/usr/bin:/bin", ...env },
      });
    const withPasswords = check(
      Object.fromEntries(NATS_ROLES.map((r) => [passwordVariableOf(r), PASSWORD[r]])),
    );
    expect(withPasswords.stderr.toString() + withPasswords.stdout.toString()).toContain("is valid");
    expect(withPasswords.exitCode).toBe(0);
    const without = check({});
    expect(without.exitCode).not.toBe(0);
    expect(without.stderr.toString()).toContain("NATS_API_PASSWORD");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("after every attack, the service still works for its own roles", async () => {
  const token = await api.tokens?.mint(43n);
  const res = await fetch(`${api.url}/orders`, {
    method: "POST",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: JSON.stringify({ direction: "SELL", price: "99", quantity: "1" }),
  });
  expect(res.status).toBe(202);
  const jsm = await jetstreamManager(await as("reader"));
  await waitFor(
    "TRADING holds the 6th order",
    async () => (await jsm.streams.info("TRADING")).state.last_seq === 6,
  );
  expect((await fetch(`${sequencer.url}/readyz`)).status).toBe(200);
});
