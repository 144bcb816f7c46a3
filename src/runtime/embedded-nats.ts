/**
 * The embedded broker for a first run: a `nats-server -js` child with its store under DATA_DIR/nats, on
 * loopback, stopped when this process exits. A pid file lets the next start stop a child that outlived a
 * crashed parent, so two servers never share one store.
 *
 * It refuses anyone without credentials, on TCP and WebSocket alike: one user per role with the permissions of
 * src/adapters/nats/permissions.ts (the same table as deploy/nats-auth.conf), each with a random password
 * generated on the first run into DATA_DIR/nats-credentials/<role>.password (0600, in a 0700 directory). The
 * config file names only environment variables; the passwords reach the child through its environment. The
 * WebSocket listener also refuses a browser page from another origin (`same_origin`). Where it listens is written
 * to DATA_DIR/nats/endpoint.json, so `sequencer inspect` and `replay` find it with no flags.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { NatsCredentials } from "../adapters/nats/credentials.ts";
import {
  NATS_ROLES,
  type NatsRole,
  passwordVariableOf,
  renderAuthorization,
} from "../adapters/nats/permissions.ts";
import { sleep } from "../app/sleep.ts";
import { canConnect, freePort, portIsFree } from "./loopback.ts";
import { ensureNatsServer } from "./provision-tools.ts";

export type EmbeddedNats = {
  url: string;
  /** The same server over WebSocket (for edge-style clients: NATS_URL=ws://…). */
  wsUrl: string;
  /** Each role's credentials on this server. */
  credentials(role: NatsRole): NatsCredentials;
  stop(): Promise<void>;
};

export type EmbeddedEndpoint = { url: string; wsUrl: string };

function credentialsDir(dataDir: string): string {
  return join(dataDir, "nats-credentials");
}

export function credentialsFileOf(dataDir: string, role: NatsRole): string {
  return join(credentialsDir(dataDir), `${role}.password`);
}

/** The role's password under DATA_DIR, generated (random, 0600) when missing. */
function ensurePassword(dataDir: string, role: NatsRole): string {
  const file = credentialsFileOf(dataDir, role);
  if (existsSync(file)) {
    const existing = readFileSync(file, "utf8").trim();
    if (/^[A-Za-z][A-Za-z0-9]{15,}$/.test(existing)) return existing;
  }
  mkdirSync(credentialsDir(dataDir), { recursive: true, mode: 0o700 });
  chmodSync(credentialsDir(dataDir), 0o700);
  // Starts with a letter and has only letters and digits: the server's config parser reads the environment
  // variable's value as a plain string.
  const password = `p${randomBytes(24).toString("hex")}`;
  writeFileSync(file, `${password}\n`, { mode: 0o600 });
  chmodSync(file, 0o600);
  return password;
}

/** The embedded broker's credentials for a role, as the CLI reads them from DATA_DIR (undefined when never started). */
export function embeddedCredentials(dataDir: string, role: NatsRole): NatsCredentials | undefined {
  const file = credentialsFileOf(dataDir, role);
  if (!existsSync(file)) return undefined;
  return { kind: "user", user: role, password: readFileSync(file, "utf8").trim() };
}

function endpointFile(dataDir: string): string {
  return join(dataDir, "nats", "endpoint.json");
}

/** Where the embedded broker of DATA_DIR listens (as last started), or undefined when it never ran. */
export function embeddedEndpoint(dataDir: string): EmbeddedEndpoint | undefined {
  try {
    const parsed = JSON.parse(readFileSync(endpointFile(dataDir), "utf8")) as Partial<EmbeddedEndpoint>;
    return typeof parsed.url === "string" && typeof parsed.wsUrl === "string"
      ? { url: parsed.url, wsUrl: parsed.wsUrl }
      : undefined;
  } catch {
    return undefined;
  }
}

/** Stops a nats-server left behind by a previous run that was killed before it could stop its child. */
function stopStaleServer(pidFile: string): void {
  if (!existsSync(pidFile)) return;
  const pid = Number(readFileSync(pidFile, "utf8").trim());
  rmSync(pidFile, { force: true });
  if (!Number.isInteger(pid) || pid <= 1) return;
  let cmdline = "";
  try {
    cmdline = readFileSync(`/proc/${pid}/cmdline`, "utf8");
  } catch {
    return; // not running (or no /proc): nothing to stop
  }
  if (cmdline.includes("nats-server")) process.kill(pid, "SIGKILL");
}

export async function startEmbeddedNats(
  dataDir: string,
  options: { startTimeoutMs?: number; bin?: string } = {},
): Promise<EmbeddedNats> {
  const startTimeoutMs = options.startTimeoutMs ?? 15_000;
  // Installs nats-server through the package manager when it is missing, or throws one line saying how to get it.
  const bin = options.bin ?? ensureNatsServer();
  const storeDir = join(dataDir, "nats");
  mkdirSync(storeDir, { recursive: true });
  const pidFile = join(storeDir, "nats-server.pid");
  stopStaleServer(pidFile);

  // 4222 when free (what a newcomer's `nats` CLI expects), else any free port.
  const port = (await portIsFree(4222)) ? 4222 : await freePort();
  const wsPort = await freePort();
  const passwords = Object.fromEntries(
    NATS_ROLES.map((role) => [role, ensurePassword(dataDir, role)]),
  ) as Record<NatsRole, string>;
  // WebSocket and authorization need a config file (no command-line flags for them); everything stays on loopback.
  const configFile = join(storeDir, "nats-server.conf");
  writeFileSync(
    configFile,
    [
      `listen: "127.0.0.1:${port}"`,
      `jetstream { store_dir: ${JSON.stringify(storeDir)} }`,
      // same_origin: a browser page may connect only when served from this very listener (none is): a page on
      // another site cannot reach the broker through the user's browser.
      `websocket { listen: "127.0.0.1:${wsPort}", no_tls: true, same_origin: true }`,
      renderAuthorization(),
    ].join("\n"),
    { mode: 0o600 },
  );
  const logFd = openSync(join(storeDir, "nats-server.log"), "a", 0o600);
  const env: Record<string, string | undefined> = { ...process.env };
  for (const role of NATS_ROLES) env[passwordVariableOf(role)] = passwords[role];
  const child: ChildProcess = spawn(bin, ["-c", configFile], { stdio: ["ignore", logFd, logFd], env });
  if (child.pid) writeFileSync(pidFile, String(child.pid));
  let exited = false;
  child.once("exit", () => {
    exited = true;
  });
  const killOnExit = () => child.kill("SIGKILL");
  process.once("exit", killOnExit);

  const deadline = Date.now() + startTimeoutMs;
  while (!(await canConnect(port))) {
    if (exited || Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error(`embedded nats-server did not start; see ${join(storeDir, "nats-server.log")}`);
    }
    await sleep(50);
  }

  const endpoint: EmbeddedEndpoint = { url: `nats://127.0.0.1:${port}`, wsUrl: `ws://127.0.0.1:${wsPort}` };
  writeFileSync(endpointFile(dataDir), `${JSON.stringify(endpoint)}\n`, { mode: 0o600 });
  return {
    ...endpoint,
    credentials: (role) => ({ kind: "user", user: role, password: passwords[role] }),
    async stop() {
      process.removeListener("exit", killOnExit);
      if (exited) return;
      const done = new Promise<void>((resolve) => child.once("exit", () => resolve()));
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 5_000);
      await done;
      clearTimeout(timer);
      rmSync(pidFile, { force: true });
    },
  };
}
