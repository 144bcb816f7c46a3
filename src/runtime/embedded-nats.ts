/**
 * The embedded broker for a first run: a `nats-server -js` child with its store under DATA_DIR/nats, on
 * loopback, stopped when this process exits. A pid file lets the next start stop a child that outlived a
 * crashed parent, so two servers never share one store.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { canConnect, freePort, portIsFree } from "./loopback.ts";
import { ensureNatsServer } from "./provision-tools.ts";

export type EmbeddedNats = {
  url: string;
  /** The same server over WebSocket (for edge-style clients: NATS_URL=ws://…). */
  wsUrl: string;
  stop(): Promise<void>;
};

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

export async function startEmbeddedNats(dataDir: string, startTimeoutMs = 15_000): Promise<EmbeddedNats> {
  // Installs nats-server through the package manager when it is missing, or throws one line saying how to get it.
  const bin = ensureNatsServer();
  const storeDir = join(dataDir, "nats");
  mkdirSync(storeDir, { recursive: true });
  const pidFile = join(storeDir, "nats-server.pid");
  stopStaleServer(pidFile);

  // 4222 when free (what a newcomer's `nats` CLI expects), else any free port.
  const port = (await portIsFree(4222)) ? 4222 : await freePort();
  const wsPort = await freePort();
  // WebSocket needs a config file (no command-line flag for it); everything stays on loopback.
  const configFile = join(storeDir, "nats-server.conf");
  writeFileSync(
    configFile,
    [
      `listen: "127.0.0.1:${port}"`,
      `jetstream { store_dir: ${JSON.stringify(storeDir)} }`,
      `websocket { listen: "127.0.0.1:${wsPort}", no_tls: true }`,
    ].join("\n"),
  );
  const logFd = openSync(join(storeDir, "nats-server.log"), "a");
  const child: ChildProcess = spawn(bin, ["-c", configFile], { stdio: ["ignore", logFd, logFd] });
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
    await new Promise((r) => setTimeout(r, 50));
  }

  return {
    url: `nats://127.0.0.1:${port}`,
    wsUrl: `ws://127.0.0.1:${wsPort}`,
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
