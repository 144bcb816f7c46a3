/**
 * The embedded broker (`serve` with no NATS_URL) refuses everyone but the service's own roles: a client without
 * credentials, on TCP and on WebSocket, or a web page from another origin; the per-role passwords live under
 * DATA_DIR, private to its owner; and the CLI's read commands still work from DATA_DIR with no flags.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readdirSync, rmSync, statSync } from "node:fs";
import { connect as tcpConnect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { jetstreamManager } from "@nats-io/jetstream";
import { connectNats, NatsAuthenticationError } from "../../src/adapters/nats/connection.ts";
import { NATS_ROLES } from "../../src/adapters/nats/permissions.ts";
import { credentialsFileOf, embeddedCredentials, embeddedEndpoint } from "../../src/runtime/embedded-nats.ts";
import { CLI } from "../support/cli.ts";
import { freePort } from "../support/services.ts";

const dataDir = mkdtempSync(join(tmpdir(), "seq-embedded-sec-"));
let proc: ReturnType<typeof Bun.spawn>;
let natsUrl = "";
let wsUrl = "";

/** The HTTP status line nats-server answers to a WebSocket upgrade carrying this Origin. */
function upgradeStatus(url: string, origin: string): Promise<string> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = tcpConnect({ host: hostname, port: Number(port) }, () => {
      socket.write(
        [
          "GET / HTTP/1.1",
          `Host: ${hostname}:${port}`,
          "Upgrade: websocket",
          "Connection: Upgrade",
          "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
          "Sec-WebSocket-Version: 13",
          `Origin: ${origin}`,
          "",
          "",
        ].join("\r\n"),
      );
    });
    socket.setTimeout(5_000, () => {
      socket.destroy();
      reject(new Error("no answer to the upgrade within 5 s"));
    });
    socket.once("data", (data) => {
      socket.destroy();
      resolve(data.toString("latin1").split("\r\n")[0] ?? "");
    });
    socket.once("error", reject);
  });
}

beforeAll(async () => {
  const port = await freePort();
  proc = Bun.spawn([process.execPath, CLI, "serve"], {
    env: {
      PATH: process.env.PATH ?? "",
      LOG_LEVEL: "warn",
      PORT: String(port),
      OPS_PORT: "0",
      DATA_DIR: dataDir,
    },
    stdout: "ignore",
    stderr: "inherit",
  });
  const deadline = Date.now() + 60_000;
  for (;;) {
    const ready = await fetch(`http://127.0.0.1:${port}/readyz`).then(
      (r) => r.ok,
      () => false,
    );
    if (ready) break;
    if (Date.now() > deadline || proc.exitCode !== null) throw new Error("the service did not become ready");
    await Bun.sleep(200);
  }
  const endpoint = embeddedEndpoint(dataDir);
  if (!endpoint) throw new Error("the embedded broker wrote no endpoint file");
  ({ url: natsUrl, wsUrl } = endpoint);
}, 90_000);

afterAll(async () => {
  proc?.kill("SIGTERM");
  await Promise.race([proc?.exited, Bun.sleep(20_000)]);
  if (proc?.exitCode === null) proc.kill("SIGKILL");
  rmSync(dataDir, { recursive: true, force: true });
});

describe("the embedded broker refuses clients without credentials", () => {
  test("TCP: no credentials, and a wrong password, are refused with one typed error", async () => {
    const noCredentials = await connectNats(natsUrl, { timeout: 3_000 }).then(
      () => null,
      (error: unknown) => error,
    );
    expect(noCredentials).toBeInstanceOf(NatsAuthenticationError);
    expect(String(noCredentials)).toContain("Authorization Violation");
    const wrong = await connectNats(natsUrl, {
      timeout: 3_000,
      credentials: { kind: "user", user: "api", password: "guessed-password" },
    }).then(
      () => null,
      (error: unknown) => error,
    );
    expect(wrong).toBeInstanceOf(NatsAuthenticationError);
    expect(String(wrong)).not.toContain("guessed-password");
  });

  test("WebSocket: no credentials are refused; a page from another origin is refused before NATS", async () => {
    const noCredentials = await connectNats(wsUrl, { timeout: 3_000 }).then(
      () => null,
      (error: unknown) => error,
    );
    expect(noCredentials).toBeInstanceOf(NatsAuthenticationError);
    expect(await upgradeStatus(wsUrl, "https://evil.example")).toContain("403");
    // The control: the listener's own origin is let through to the WebSocket handshake.
    expect(await upgradeStatus(wsUrl, wsUrl.replace("ws://", "http://"))).toContain("101");
  });

  test("each role's own credentials are accepted, over TCP and WebSocket", async () => {
    for (const url of [natsUrl, wsUrl]) {
      const nc = await connectNats(url, {
        role: "reader",
        credentials: embeddedCredentials(dataDir, "reader"),
      });
      const info = await (await jetstreamManager(nc)).streams.info("TRADING");
      expect(info.config.name).toBe("TRADING");
      await nc.close();
    }
  });
});

describe("DATA_DIR keeps the credentials private", () => {
  test("one password file per role, 0600, in a 0700 directory", () => {
    for (const role of NATS_ROLES) {
      const file = credentialsFileOf(dataDir, role);
      expect(statSync(file).mode & 0o777).toBe(0o600);
      expect(statSync(join(file, "..")).mode & 0o777).toBe(0o700);
    }
    // Four distinct random passwords.
    const passwords = NATS_ROLES.map((role) => {
      const c = embeddedCredentials(dataDir, role);
      return c?.kind === "user" ? c.password : "";
    });
    expect(new Set(passwords).size).toBe(4);
    expect(passwords.every((p) => p.length >= 40)).toBe(true);
  });

  test("nothing under DATA_DIR is readable or writable by group or others (PGlite's files included)", () => {
    const open: string[] = [];
    const walk = (dir: string) => {
      for (const entry of readdirSync(dir, { withFileTypes: true })) {
        const path = join(dir, entry.name);
        if (entry.isSymbolicLink()) continue;
        if ((statSync(path).mode & 0o077) !== 0) open.push(path);
        if (entry.isDirectory()) walk(path);
      }
    };
    if ((statSync(dataDir).mode & 0o077) !== 0) open.push(dataDir);
    walk(dataDir);
    expect(open.slice(0, 5)).toEqual([]);
  });
});

test("inspect finds the embedded broker from DATA_DIR with no flags", () => {
  const result = Bun.spawnSync([process.execPath, CLI, "inspect", "--json"], {
    env: { PATH: process.env.PATH ?? "", DATA_DIR: dataDir },
  });
  expect(result.stderr.toString()).toBe("");
  expect(result.exitCode).toBe(0);
  const inspection = JSON.parse(result.stdout.toString()) as { trading: { lastSeq: number } };
  expect(inspection.trading.lastSeq).toBeGreaterThanOrEqual(0);
});
