/**
 * A three-node JetStream cluster of real nats-server processes on loopback, for tests.
 *
 * Each node gets its own temp dir with a config file (server_name, client listen on 127.0.0.1:<free port>,
 * HTTP monitoring on 127.0.0.1:<free port>, JetStream store_dir, cluster { name, listen 127.0.0.1:<free port>,
 * routes to the other two }) and a log.
 * start() returns once every node answers `$JS.API.INFO` (which needs a JetStream meta leader); a node can be
 * SIGKILLed and restarted on the same ports and store by name; stop() ends every node and deletes the dirs.
 *
 * Nothing started here may outlive the test process: stop() in afterAll, a process "exit" hook, and per node a
 * detached watchdog shell that SIGKILLs the node and removes its dir once this process is gone (bun test does not
 * always emit "exit", and no hook runs on SIGKILL).
 */
import { type ChildProcess, spawn } from "node:child_process";
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { jetstreamManager } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { canConnect } from "../../src/runtime/loopback.ts";
import { ensureNatsServer } from "../../src/runtime/provision-tools.ts";
import { freePort } from "../support/services.ts";
import { sleep } from "../support/wait.ts";

export type ClusterNode = {
  /** server_name, e.g. "n1". */
  readonly name: string;
  /** nats://127.0.0.1:PORT (client port). */
  readonly url: string;
  readonly port: number;
  readonly clusterPort: number;
  /** HTTP monitoring port (http://127.0.0.1:PORT/connz, /jsz, ...). */
  readonly monitorPort: number;
  readonly dir: string;
  readonly logPath: string;
  /** The current process (undefined before the first start). */
  proc: ChildProcess | undefined;
  /** How many times this node was started. */
  starts: number;
};

export type NatsClusterOptions = {
  /** Number of nodes (3 by default). */
  size?: number;
  /** Cluster name (the `cluster { name }` block). */
  name?: string;
  /** Bound on start() waiting for a meta leader. */
  readyTimeoutMs?: number;
};

const liveClusters = new Set<NatsCluster>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on("exit", () => {
    for (const cluster of liveClusters) cluster.stopSync();
  });
}

function isRunning(proc: ChildProcess | undefined): proc is ChildProcess {
  return proc !== undefined && proc.exitCode === null && proc.signalCode === null;
}

/**
 * One detached shell per cluster that polls this process (via /proc, since a zombie passes `kill -0`) and, once it
 * is gone, SIGKILLs every node (the pid each launch writes to <dir>/pid, if it still is a nats-server) and removes
 * the node dirs. It exits by itself once stop() has removed the dirs. One per cluster rather than per launch, so a
 * node that was killed and not restarted still has its dir removed.
 */
function spawnWatchdog(dirs: readonly string[]): void {
  const script = [
    `alive() { s=$(sed -n 's/.*) \\(.\\).*/\\1/p' "/proc/$PARENT_PID/stat" 2>/dev/null); [ -n "$s" ] && [ "$s" != Z ]; }`,
    `anydir() { for d in $NODE_DIRS; do [ -d "$d" ] && return 0; done; return 1; }`,
    "while alive && anydir; do sleep 0.5; done",
    "if ! alive; then",
    "  for d in $NODE_DIRS; do",
    `    p=$(cat "$d/pid" 2>/dev/null)`,
    `    if [ -n "$p" ] && grep -q nats-server "/proc/$p/cmdline" 2>/dev/null; then kill -9 "$p"; fi`,
    "  done",
    "  sleep 0.2",
    `  for d in $NODE_DIRS; do rm -rf "$d"; done`,
    "fi",
  ].join("\n");
  const proc = spawn("sh", ["-c", script], {
    detached: true,
    stdio: "ignore",
    env: {
      PATH: process.env.PATH ?? "/usr/bin:/bin",
      PARENT_PID: String(process.pid),
      NODE_DIRS: dirs.join(" "),
    },
  });
  proc.unref();
}

function logTail(path: string, bytes = 3_000): string {
  try {
    return readFileSync(path, "utf8").slice(-bytes);
  } catch {
    return "(no log)";
  }
}

export class NatsCluster {
  private stopped = false;

  private constructor(
    readonly name: string,
    readonly nodes: readonly ClusterNode[],
    private readonly readyTimeoutMs: number,
    private readonly bin: string,
  ) {}

  /** Writes the configs, starts every node and waits (bounded) until JetStream has a meta leader. */
  static async start(options: NatsClusterOptions = {}): Promise<NatsCluster> {
    const size = options.size ?? 3;
    const name = options.name ?? `seqtest${process.pid}`;
    const bin = ensureNatsServer();
    installExitHook();
    const ports: { port: number; clusterPort: number; monitorPort: number }[] = [];
    const taken = new Set<number>();
    const distinctPort = async () => {
      // freePort may hand out the same port again once it is closed; every port here must be distinct.
      for (let attempt = 0; attempt < 100; attempt++) {
        const port = await freePort();
        if (!taken.has(port)) {
          taken.add(port);
          return port;
        }
      }
      throw new Error("could not find distinct free ports");
    };
    while (ports.length < size) {
      ports.push({
        port: await distinctPort(),
        clusterPort: await distinctPort(),
        monitorPort: await distinctPort(),
      });
    }
    const nodes: ClusterNode[] = ports.map(({ port, clusterPort, monitorPort }, i) => {
      const nodeName = `n${i + 1}`;
      const dir = mkdtempSync(join(tmpdir(), `nats-cluster-${nodeName}-`));
      const routes = ports
        .filter((_, j) => j !== i)
        .map((p) => `    "nats-route://127.0.0.1:${p.clusterPort}"`)
        .join("\n");
      writeFileSync(
        join(dir, "nats.conf"),
        [
          `server_name: "${nodeName}"`,
          `listen: "127.0.0.1:${port}"`,
          `http: "127.0.0.1:${monitorPort}"`,
          "jetstream {",
          `  store_dir: "${join(dir, "jetstream")}"`,
          "  max_memory_store: 256MB",
          "  max_file_store: 1GB",
          "}",
          "cluster {",
          `  name: "${name}"`,
          `  listen: "127.0.0.1:${clusterPort}"`,
          "  routes: [",
          routes,
          "  ]",
          "}",
          "",
        ].join("\n"),
      );
      return {
        name: nodeName,
        url: `nats://127.0.0.1:${port}`,
        port,
        clusterPort,
        monitorPort,
        dir,
        logPath: join(dir, "nats-server.log"),
        proc: undefined,
        starts: 0,
      };
    });
    const cluster = new NatsCluster(name, nodes, options.readyTimeoutMs ?? 30_000, bin);
    liveClusters.add(cluster);
    spawnWatchdog(nodes.map((n) => n.dir));
    try {
      await Promise.all(nodes.map((node) => cluster.launch(node)));
      await cluster.waitForMetaLeader();
    } catch (error) {
      await cluster.stop();
      throw error;
    }
    return cluster;
  }

  /** Client URLs of every node, in node order. */
  get urls(): string[] {
    return this.nodes.map((n) => n.url);
  }

  node(name: string): ClusterNode {
    const node = this.nodes.find((n) => n.name === name);
    if (!node) throw new Error(`no node ${name} (have ${this.nodes.map((n) => n.name).join(", ")})`);
    return node;
  }

  /**
   * Names of the client connections each running node holds now (its monitoring endpoint /connz), e.g. to see
   * which node a service process is connected to. A node that does not answer within 2 s is left out.
   */
  async connectionNames(): Promise<Record<string, string[]>> {
    const out: Record<string, string[]> = {};
    await Promise.all(
      this.liveNodes().map(async (node) => {
        try {
          const res = await fetch(`http://127.0.0.1:${node.monitorPort}/connz?limit=1024`, {
            signal: AbortSignal.timeout(2_000),
          });
          const body = (await res.json()) as { connections?: { name?: string }[] };
          out[node.name] = (body.connections ?? []).map((c) => c.name ?? "(unnamed)");
        } catch {}
      }),
    );
    return out;
  }

  running(name: string): boolean {
    return isRunning(this.node(name).proc);
  }

  /** Nodes that are up now. */
  liveNodes(): ClusterNode[] {
    return this.nodes.filter((n) => isRunning(n.proc));
  }

  /** A client connection that knows every node (survives any one of them going away). */
  connect(options: { timeoutMs?: number } = {}): Promise<NatsConnection> {
    return connect({
      servers: this.liveNodes().map((n) => n.url),
      timeout: options.timeoutMs ?? 5_000,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 250,
    });
  }

  private async launch(node: ClusterNode): Promise<void> {
    if (this.stopped) throw new Error("cluster already stopped");
    if (isRunning(node.proc)) throw new Error(`${node.name} is already running`);
    node.starts += 1;
    const fd = openSync(node.logPath, "a");
    let proc: ChildProcess;
    try {
      proc = spawn(this.bin, ["-c", join(node.dir, "nats.conf")], { stdio: ["ignore", fd, fd] });
    } finally {
      closeSync(fd);
    }
    node.proc = proc;
    if (proc.pid === undefined) throw new Error(`${node.name}: nats-server did not start`);
    writeFileSync(join(node.dir, "pid"), String(proc.pid));
    const deadline = Date.now() + 10_000;
    for (;;) {
      if (proc.exitCode !== null || proc.signalCode !== null) {
        throw new Error(
          `${node.name}: nats-server exited during start-up (code ${proc.exitCode}):\n${logTail(node.logPath)}`,
        );
      }
      if (await canConnect(node.port)) return;
      if (Date.now() > deadline) {
        throw new Error(`${node.name}: not accepting connections after 10 s:\n${logTail(node.logPath)}`);
      }
      await sleep(25);
    }
  }

  /**
   * Waits (bounded) until every running node answers `$JS.API.INFO`: the request is answered only once the
   * JetStream meta group has a leader, so this means the cluster can create and place streams.
   */
  async waitForMetaLeader(timeoutMs = this.readyTimeoutMs): Promise<{ ms: number }> {
    const started = Date.now();
    const pending = new Set(this.liveNodes().map((n) => n.name));
    let lastError = "";
    while (pending.size > 0) {
      for (const name of [...pending]) {
        const node = this.node(name);
        let nc: NatsConnection | undefined;
        try {
          nc = await connect({ servers: node.url, timeout: 2_000, ignoreClusterUpdates: true });
          const jsm = await jetstreamManager(nc, { timeout: 2_000 });
          await jsm.getAccountInfo();
          pending.delete(name);
        } catch (error) {
          lastError = `${name}: ${error instanceof Error ? error.message : String(error)}`;
        } finally {
          await nc?.close().catch(() => {});
        }
      }
      if (pending.size === 0) break;
      if (Date.now() - started > timeoutMs) {
        throw new Error(
          `no JetStream meta leader after ${timeoutMs} ms (still waiting for ${[...pending].join(", ")}; ` +
            `last error ${lastError})\n${this.logTails()}`,
        );
      }
      await sleep(200);
    }
    return { ms: Date.now() - started };
  }

  /** SIGKILLs a node and waits (bounded) until it is gone. */
  async kill(name: string, timeoutMs = 10_000): Promise<void> {
    const node = this.node(name);
    const proc = node.proc;
    if (!isRunning(proc)) return;
    const exited = new Promise<void>((resolve) => proc.once("exit", () => resolve()));
    proc.kill("SIGKILL");
    const timedOut = sleep(timeoutMs).then(() => "timeout" as const);
    if ((await Promise.race([exited, timedOut])) === "timeout") {
      throw new Error(`${name} did not exit within ${timeoutMs} ms of SIGKILL`);
    }
  }

  /** Starts a stopped (killed) node again on the same ports, config and store; waits until it accepts clients. */
  async restart(name: string): Promise<void> {
    await this.launch(this.node(name));
  }

  /**
   * Lines of every node's log that match `pattern`, with their time (nats-server logs local time to the
   * microsecond), oldest first, e.g. /new stream leader for '\$G > SEQUENCE'/ to time an election.
   */
  logLines(pattern: RegExp): { node: string; at: number; line: string }[] {
    const out: { node: string; at: number; line: string }[] = [];
    for (const node of this.nodes) {
      let text = "";
      try {
        text = readFileSync(node.logPath, "utf8");
      } catch {
        continue;
      }
      for (const line of text.split("\n")) {
        if (!pattern.test(line)) continue;
        const m = /(\d{4})\/(\d\d)\/(\d\d) (\d\d):(\d\d):(\d\d)\.(\d{3})/.exec(line);
        if (!m) continue;
        const [y, mo, d, h, mi, sec, ms] = m.slice(1).map(Number) as number[];
        const at = new Date(y ?? 0, (mo ?? 1) - 1, d, h, mi, sec, ms).getTime();
        out.push({ node: node.name, at, line: line.trim() });
      }
    }
    return out.sort((a, b) => a.at - b.at);
  }

  /** The last bytes of every node's log, for failure messages. */
  logTails(bytes = 2_000): string {
    return this.nodes
      .map(
        (n) =>
          `--- ${n.name} (${isRunning(n.proc) ? "running" : "down"}) ${n.logPath}\n${logTail(n.logPath, bytes)}`,
      )
      .join("\n");
  }

  /** SIGTERMs every node (SIGKILL after 5 s) and removes the temp dirs. Idempotent. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    await Promise.all(
      this.nodes.map(async (node) => {
        const proc = node.proc;
        if (isRunning(proc)) {
          const exited = new Promise<void>((resolve) => proc.once("exit", () => resolve()));
          proc.kill("SIGTERM");
          const timer = setTimeout(() => proc.kill("SIGKILL"), 5_000);
          await exited;
          clearTimeout(timer);
        }
        rmSync(node.dir, { recursive: true, force: true });
      }),
    );
    liveClusters.delete(this);
  }

  /** Synchronous last resort for the process "exit" hook: SIGKILL every node, remove the dirs. */
  stopSync(): void {
    this.stopped = true;
    for (const node of this.nodes) {
      if (isRunning(node.proc)) node.proc.kill("SIGKILL");
      rmSync(node.dir, { recursive: true, force: true });
    }
    liveClusters.delete(this);
  }
}
