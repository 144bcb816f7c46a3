/**
 * External brokers: the service authenticates with what the environment gives (a token and an nkey seed here;
 * user + password in nats-permissions.int.test.ts), over TCP and WebSocket, and a refused credential stops
 * start-up with one line that names the kind of credential but never the secret — no retry loop.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { nkeys } from "@nats-io/nats-core";
import { connectNats, NatsAuthenticationError } from "../../src/adapters/nats/connection.ts";
import { CLI } from "../support/cli.ts";
import { type NatsServerHandle, startNats } from "../support/services.ts";

const TOKEN = "tTokenForTheTest0123456789";
const user = nkeys.createUser();
const seed = new TextDecoder().decode(user.getSeed());
let tokenServer: NatsServerHandle;
let nkeyServer: NatsServerHandle;

beforeAll(async () => {
  [tokenServer, nkeyServer] = await Promise.all([
    startNats({
      websocket: true,
      config: "authorization { token: $TEST_NATS_TOKEN }",
      env: { TEST_NATS_TOKEN: TOKEN },
    }),
    startNats({ config: `authorization { users: [ { nkey: ${user.getPublicKey()} } ] }` }),
  ]);
});

afterAll(async () => {
  await tokenServer?.stop();
  await nkeyServer?.stop();
});

describe("credentials from the environment reach the broker", () => {
  test("a token, over TCP and WebSocket; a wrong one is refused", async () => {
    for (const url of [tokenServer.url, tokenServer.wsUrl ?? ""]) {
      const nc = await connectNats(url, { credentials: { kind: "token", token: TOKEN } });
      await nc.flush();
      await nc.close();
      const wrong = await connectNats(url, {
        credentials: { kind: "token", token: "nope" },
        timeout: 3_000,
      }).catch((e: unknown) => e);
      expect(wrong).toBeInstanceOf(NatsAuthenticationError);
    }
  });

  test("an nkey seed; another key is refused and named by its public key only", async () => {
    const nc = await connectNats(nkeyServer.url, { credentials: { kind: "nkey", seed } });
    await nc.flush();
    await nc.close();
    const other = new TextDecoder().decode(nkeys.createUser().getSeed());
    const refused = await connectNats(nkeyServer.url, {
      credentials: { kind: "nkey", seed: other },
      timeout: 3_000,
    }).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(NatsAuthenticationError);
    expect(String(refused)).toContain("nkey U");
    expect(String(refused)).not.toContain(other);
  });
});

test("serve with a refused credential exits at once with one line, and never prints the secret", async () => {
  const started = Date.now();
  const proc = Bun.spawn([process.execPath, CLI, "serve", "--role", "api"], {
    env: {
      PATH: process.env.PATH ?? "",
      NATS_URL: tokenServer.url,
      NATS_TOKEN: "wrong-secret-token-value",
      AUTH_SECRET: "credentials-test-secret-0123456789-abcdef",
      DATABASE_URL: "postgres://u:p@127.0.0.1:1/none",
      PORT: "0",
      LOG_LEVEL: "warn",
    },
    stdout: "pipe",
    stderr: "pipe",
  });
  const exitCode = await Promise.race([proc.exited, Bun.sleep(20_000).then(() => "timeout" as const)]);
  if (exitCode === "timeout") proc.kill("SIGKILL");
  const stderr = await new Response(proc.stderr).text();
  const stdout = await new Response(proc.stdout).text();
  expect(exitCode).toBe(77);
  expect(Date.now() - started).toBeLessThan(15_000);
  expect(stderr.trim().split("\n")).toEqual([
    `NATS at ${tokenServer.url} refused a token (NATS_TOKEN): Authorization Violation`,
  ]);
  expect(stderr + stdout).not.toContain("wrong-secret-token-value");
});
