/**
 * Real backing services on loopback, for the tests and the benchmark (`npm run bench`): a throwaway
 * nats-server (JetStream on) and a throwaway PostgreSQL cluster, each on a free loopback port with its
 * state in a fresh temp dir, torn down when this process exits (even when it is killed).
 *
 * Why real services instead of mocks/PGlite: the sequencer's guarantees (exactly-once, gap-free
 * sequences) depend on JetStream dedup/ack semantics and on Postgres transaction/locking
 * behaviour, which only the real servers reproduce faithfully. test/support/services.ts re-exports
 * this module so tests and the benchmark share one implementation.
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { appendFileSync, chownSync, closeSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PGlite } from "@electric-sql/pglite";
import postgres from "postgres";
import { sleep } from "../../src/app/sleep.ts";
import { canConnect, freePort } from "../../src/runtime/loopback.ts";
import { ensureNatsServer, ensurePostgresBinDir } from "../../src/runtime/provision-tools.ts";
import { type PgliteWireServer, servePgliteOverWire } from "./pglite-wire-server.ts";

export { freePort } from "../../src/runtime/loopback.ts";

const READY_TIMEOUT_MS = 10_000;
const STOP_GRACE_MS = 5_000;

// ---------------------------------------------------------------------------------------------
// Generic helpers
// ---------------------------------------------------------------------------------------------

/** Last few KB of a log file, so a failed start explains itself in the test output. */
function logTail(path: string, bytes = 4_000): string {
  try {
    const text = readFileSync(path, "utf8");
    return text.slice(-bytes);
  } catch {
    return "(no log)";
  }
}

function isRunning(child: ChildProcess): boolean {
  return child.exitCode === null && child.signalCode === null;
}

function waitForExit(child: ChildProcess): Promise<void> {
  if (!isRunning(child)) return Promise.resolve();
  return new Promise((resolve) => child.once("exit", () => resolve()));
}

// ---------------------------------------------------------------------------------------------
// Cleanup: nothing we start may outlive the test process.
// ---------------------------------------------------------------------------------------------

/** nats-server children still alive, killed synchronously at exit. */
const liveChildren = new Set<ChildProcess>();
/** Temp dirs to delete at exit (nats stores; the pg dir is handled by the pg cleanup). */
const liveDirs = new Set<string>();
/** Synchronous Postgres shutdown, set while a cluster is running. */
let pgExitCleanup: (() => void) | null = null;

let hooksInstalled = false;
function installExitHooks(): void {
  if (hooksInstalled) return;
  hooksInstalled = true;
  process.on("exit", () => {
    for (const child of liveChildren) {
      if (isRunning(child)) child.kill("SIGKILL");
    }
    liveChildren.clear();
    pgExitCleanup?.();
    pgExitCleanup = null;
    for (const dir of liveDirs) rmSync(dir, { recursive: true, force: true });
    liveDirs.clear();
  });
}

/**
 * The "exit" hook above is not enough on its own: `bun test` (1.4.5) exits without emitting
 * "exit"/"beforeExit", and no hook runs on SIGKILL or when CI's `timeout` fires. Children are not
 * killed with their parent, and pg_ctl daemonises postgres anyway. So each service also gets a tiny
 * detached shell that polls this process and runs `cleanup` once it is gone. The shell exits on
 * its own when `stillNeeded` turns false (the service was stopped normally).
 *
 * Liveness is read from /proc/<pid>/stat rather than `kill -0`, because a zombie passes `kill -0`
 * and some sandboxes have an init that never reaps.
 */
function spawnWatchdog(stillNeeded: string, cleanup: string, env: Record<string, string>): void {
  const script = [
    `alive() { s=$(sed -n 's/.*) \\(.\\).*/\\1/p' "/proc/$PARENT_PID/stat" 2>/dev/null); [ -n "$s" ] && [ "$s" != Z ]; }`,
    `while alive && ${stillNeeded}; do sleep 0.5; done`,
    `if ! alive; then ${cleanup}; fi`,
  ].join("\n");
  const proc = spawn("sh", ["-c", script], {
    detached: true, // own session: survives signals aimed at our process group
    stdio: "ignore",
    env: { ...process.env, PARENT_PID: String(process.pid), ...env },
  });
  proc.unref();
}

/**
 * Makes sure a child process does not outlive this one: if this process dies (even by SIGKILL) while
 * the child still runs, a detached watchdog SIGKILLs it. For children that cannot watch their parent
 * themselves (the service CLI, baseline servers).
 */
export function killWithParent(childPid: number): void {
  installExitHooks();
  spawnWatchdog('kill -0 "$CHILD_PID" 2>/dev/null', 'kill -9 "$CHILD_PID" 2>/dev/null', {
    CHILD_PID: String(childPid),
  });
}

// ---------------------------------------------------------------------------------------------
// NATS
// ---------------------------------------------------------------------------------------------

export interface NatsServerHandle {
  /** nats://127.0.0.1:PORT */
  url: string;
  port: number;
  /** Set only when started with `{ websocket: true }`: ws://127.0.0.1:WSPORT */
  wsUrl?: string;
  wsPort?: number;
  /** JetStream store dir (inside the handle's temp dir). */
  storeDir: string;
  /** The server's log (authorization and permission refusals are logged there). */
  logPath: string;
  /** SIGTERM (SIGKILL after 5 s) and delete the temp dir. Idempotent. */
  stop(): Promise<void>;
  /** Stop and start again on the same port and store, e.g. to test reconnect/durability. */
  restart(): Promise<void>;
  /** Freezes (SIGSTOP) or resumes (SIGCONT) the running server, as a paused VM would. */
  signal(signal: "SIGSTOP" | "SIGCONT"): void;
}

export type NatsServerOptions = {
  websocket?: boolean;
  /** The WebSocket listener refuses an Origin other than its own (as the embedded broker's does). */
  sameOrigin?: boolean;
  /** More server configuration, e.g. the shipped deploy/nats-auth.conf. */
  config?: string;
  /** Extra environment for the server (the passwords an authorization block names). */
  env?: Record<string, string>;
};

export async function startNats(opts: NatsServerOptions = {}): Promise<NatsServerHandle> {
  // Installs it through the package manager when missing (one line on stderr), else throws one line.
  const bin = ensureNatsServer();
  installExitHooks();

  const dir = await mkdtemp(join(tmpdir(), "nats-test-"));
  liveDirs.add(dir);
  const storeDir = join(dir, "jetstream");
  const logPath = join(dir, "nats-server.log");
  const port = await freePort();
  const args = ["-js", "-a", "127.0.0.1", "-p", String(port), "-sd", storeDir];

  let wsPort: number | undefined;
  const conf: string[] = [];
  if (opts.websocket) {
    // WebSocket listeners can only be configured from a config file; CLI flags still apply on top.
    wsPort = await freePort();
    const origin = opts.sameOrigin ? "\n  same_origin: true" : "";
    conf.push(`websocket {\n  listen: "127.0.0.1:${wsPort}"\n  no_tls: true${origin}\n}\n`);
  }
  if (opts.config) conf.push(opts.config);
  if (conf.length > 0) {
    const confFile = join(dir, "nats.conf");
    writeFileSync(confFile, conf.join("\n"));
    args.push("-c", confFile);
  }

  let child: ChildProcess | null = null;
  let stopped = false;

  const launch = async () => {
    // Append so a restart keeps the earlier run's log for debugging.
    const fd = openSync(logPath, "a");
    const proc = spawn(bin, args, { stdio: ["ignore", fd, fd], env: { ...process.env, ...opts.env } });
    closeSync(fd);
    liveChildren.add(proc);
    proc.once("exit", () => liveChildren.delete(proc));
    child = proc;
    spawnWatchdog('kill -0 "$NATS_PID" 2>/dev/null', 'kill -9 "$NATS_PID" 2>/dev/null; rm -rf "$NATS_DIR"', {
      NATS_PID: String(proc.pid),
      NATS_DIR: dir,
    });

    const deadline = Date.now() + READY_TIMEOUT_MS;
    for (;;) {
      if (!isRunning(proc)) {
        throw new Error(`nats-server exited during startup (code ${proc.exitCode}):\n${logTail(logPath)}`);
      }
      if ((await canConnect(port)) && (wsPort === undefined || (await canConnect(wsPort)))) return;
      if (Date.now() > deadline) {
        await halt();
        throw new Error(`nats-server not accepting connections on ${port} after 10s:\n${logTail(logPath)}`);
      }
      await sleep(25);
    }
  };

  const halt = async () => {
    const proc = child;
    child = null;
    if (proc === null || !isRunning(proc)) return;
    const exited = waitForExit(proc);
    proc.kill("SIGTERM");
    // A frozen (SIGSTOPped) server takes its SIGTERM once resumed.
    proc.kill("SIGCONT");
    const timer = setTimeout(() => proc.kill("SIGKILL"), STOP_GRACE_MS);
    await exited;
    clearTimeout(timer);
  };

  try {
    await launch();
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    liveDirs.delete(dir);
    throw err;
  }

  return {
    url: `nats://127.0.0.1:${port}`,
    port,
    ...(wsPort === undefined ? {} : { wsPort, wsUrl: `ws://127.0.0.1:${wsPort}` }),
    storeDir,
    logPath,
    async stop() {
      if (stopped) return;
      stopped = true;
      await halt();
      rmSync(dir, { recursive: true, force: true });
      liveDirs.delete(dir);
    },
    async restart() {
      if (stopped) throw new Error("nats-server handle already stopped");
      await halt();
      await launch();
    },
    signal(signal) {
      if (!child || !isRunning(child)) throw new Error("nats-server is not running");
      child.kill(signal);
    },
  };
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL
// ---------------------------------------------------------------------------------------------

export interface PostgresHandle {
  /** A real PostgreSQL cluster, or PGlite served over the wire where PostgreSQL cannot be installed. */
  kind: "postgresql" | "pglite";
  host: "127.0.0.1";
  port: number;
  /** postgres://postgres@127.0.0.1:PORT/postgres (trust auth, superuser) */
  adminUrl: string;
  /** CREATE DATABASE with a unique name; returns its URL. One per test file/suite keeps tests isolated. */
  createDatabase(): Promise<string>;
  /** Stop the cluster and delete its data. The next getPostgres() starts a fresh cluster. */
  stop(): Promise<void>;
  /** Fast restart on the same port and data dir (e.g. to test reconnects). */
  restart(): Promise<void>;
}

interface RunResult {
  status: number | null;
  output: string;
}

/** PostgreSQL refuses to run as root, so as root we drop to the `postgres` OS user. */
const asRoot = process.getuid?.() === 0;
function pgCommand(bin: string, args: string[]): [string, string[]] {
  return asRoot ? ["runuser", ["-u", "postgres", "--", bin, ...args]] : [bin, args];
}

function runPg(cwd: string, bin: string, args: string[], timeoutMs = 60_000): Promise<RunResult> {
  const [cmd, argv] = pgCommand(bin, args);
  return new Promise((resolve, reject) => {
    // cwd = temp dir: the postgres user may not be able to read the repo checkout dir.
    const proc = spawn(cmd, argv, { cwd, stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    proc.stdout?.on("data", (b: Buffer) => {
      output += b.toString();
    });
    proc.stderr?.on("data", (b: Buffer) => {
      output += b.toString();
    });
    const timer = setTimeout(() => proc.kill("SIGKILL"), timeoutMs);
    proc.once("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
    proc.once("close", (status) => {
      clearTimeout(timer);
      resolve({ status, output });
    });
  });
}

async function runPgOk(cwd: string, bin: string, args: string[], logPath?: string): Promise<void> {
  const r = await runPg(cwd, bin, args);
  if (r.status !== 0) {
    const tail = logPath === undefined ? "" : `\n--- server log ---\n${logTail(logPath)}`;
    throw new Error(`${bin} ${args.join(" ")} failed (${r.status}):\n${r.output}${tail}`);
  }
}

function postgresUserIds(): { uid: number; gid: number } {
  const uid = spawnSync("id", ["-u", "postgres"], { encoding: "utf8" });
  const gid = spawnSync("id", ["-g", "postgres"], { encoding: "utf8" });
  if (uid.status !== 0 || gid.status !== 0) {
    throw new Error("running as root but there is no `postgres` OS user to run PostgreSQL as");
  }
  return { uid: Number(uid.stdout.trim()), gid: Number(gid.stdout.trim()) };
}

/** What a cluster for tests turns off (durable: false); the bench's --pg-fast, and only it, asks for the same. */
export const NON_DURABLE_SETTINGS: Readonly<Record<string, string>> = {
  fsync: "off",
  synchronous_commit: "off",
  full_page_writes: "off",
};

/** Options of a throwaway cluster: `settings` are extra postgresql.conf lines (the bench's --pg-setting). */
type ClusterOptions = { durable?: boolean; settings?: Readonly<Record<string, string>> };

/** A postgresql.conf line; the name is checked and the value quoted, so neither can add a line of its own. */
export function confLine(name: string, value: string): string {
  if (!/^[a-z_][a-z0-9_.]*$/.test(name))
    throw new Error(`not a PostgreSQL setting name: ${JSON.stringify(name)}`);
  if (/[\r\n\0]/.test(value)) throw new Error(`the value of ${name} spans lines`);
  return `${name} = '${value.replaceAll("\\", "\\\\").replaceAll("'", "''")}'`;
}

async function startPostgres(options: ClusterOptions = {}): Promise<PostgresHandle> {
  const availability = postgresAvailability();
  if ("unavailable" in availability) throw new Error(availability.unavailable);
  const binDir = availability.dir;
  const pgCtl = join(binDir, "pg_ctl");
  installExitHooks();

  const dir = await mkdtemp(join(tmpdir(), "pg-test-"));
  const dataDir = join(dir, "data");
  const logPath = join(dir, "postgres.log");
  const port = await freePort();
  let running = false;

  // Registered before anything can fail so a half-started cluster is still torn down at exit.
  pgExitCleanup = () => {
    if (running) {
      const [cmd, argv] = pgCommand(pgCtl, ["-D", dataDir, "-m", "immediate", "-w", "-t", "10", "stop"]);
      spawnSync(cmd, argv, { cwd: dir, stdio: "ignore", timeout: 15_000 });
      running = false;
    }
    rmSync(dir, { recursive: true, force: true });
  };

  try {
    if (asRoot) {
      const { uid, gid } = postgresUserIds();
      chownSync(dir, uid, gid);
    }
    await runPgOk(dir, join(binDir, "initdb"), [
      "-D",
      dataDir,
      "-U",
      "postgres",
      "--auth=trust",
      "-E",
      "UTF8",
      "--no-sync",
    ]);
    // Durability off for tests: these clusters are disposable and speed matters more than crash safety.
    // The benchmark asks for PostgreSQL's durable defaults, so that no design is measured on a database
    // that would lose commits.
    const durability = options.durable
      ? []
      : Object.entries(NON_DURABLE_SETTINGS).map(([name, value]) => confLine(name, value));
    appendFileSync(
      join(dataDir, "postgresql.conf"),
      [
        "",
        "# throwaway-cluster settings (tools/services/local-services.ts)",
        "listen_addresses = '127.0.0.1'",
        `port = ${port}`,
        `unix_socket_directories = '${dir}'`,
        ...durability,
        "max_connections = 200",
        ...Object.entries(options.settings ?? {}).map(([name, value]) => confLine(name, value)),
        "",
      ].join("\n"),
    );
    running = true; // set before start so a timed-out start is still stopped at exit
    spawnWatchdog(
      '[ -d "$PG_DIR" ]',
      `${asRoot ? "runuser -u postgres -- " : ""}"$PG_CTL" -D "$PG_DATA" -m immediate -w -t 10 stop >/dev/null 2>&1; rm -rf "$PG_DIR"`,
      { PG_CTL: pgCtl, PG_DATA: dataDir, PG_DIR: dir },
    );
    await runPgOk(dir, pgCtl, ["-D", dataDir, "-l", logPath, "-w", "-t", "30", "start"], logPath);
  } catch (err) {
    pgExitCleanup();
    pgExitCleanup = null;
    throw err;
  }

  const adminUrl = `postgres://postgres@127.0.0.1:${port}/postgres`;
  let dbCounter = 0;
  let stopped = false;

  return {
    kind: "postgresql",
    host: "127.0.0.1",
    port,
    adminUrl,
    async createDatabase() {
      dbCounter += 1;
      const name = `test_${process.pid}_${dbCounter}_${Math.random().toString(36).slice(2, 8)}`;
      const sql = postgres(adminUrl, { max: 1, onnotice: () => {} });
      try {
        // Identifiers cannot be bound as parameters; the name is generated above, so unsafe is safe.
        await sql.unsafe(`CREATE DATABASE "${name}"`);
      } finally {
        await sql.end();
      }
      return `postgres://postgres@127.0.0.1:${port}/${name}`;
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      memo = null;
      if (running) {
        await runPgOk(dir, pgCtl, ["-D", dataDir, "-m", "fast", "-w", "-t", "30", "stop"], logPath);
        running = false;
      }
      rmSync(dir, { recursive: true, force: true });
      pgExitCleanup = null;
    },
    async restart() {
      await runPgOk(
        dir,
        pgCtl,
        ["-D", dataDir, "-l", logPath, "-m", "fast", "-w", "-t", "30", "restart"],
        logPath,
      );
    },
  };
}

let availabilityMemo: ReturnType<typeof ensurePostgresBinDir> | null = null;

/**
 * PostgreSQL's server binaries, installed through the package manager when missing (see provision-tools.ts); or why
 * there are none. TEST_POSTGRES=pglite pretends there are none, to exercise the PGlite fallback on any machine.
 */
export function postgresAvailability(): ReturnType<typeof ensurePostgresBinDir> {
  if (process.env.TEST_POSTGRES === "pglite") return { unavailable: "TEST_POSTGRES=pglite is set" };
  availabilityMemo ??= ensurePostgresBinDir();
  return availabilityMemo;
}

/** What getPostgres() will give: a real cluster when PostgreSQL can be had, else PGlite over the wire. */
export function postgresKind(): PostgresHandle["kind"] {
  return "dir" in postgresAvailability() ? "postgresql" : "pglite";
}

/**
 * The fallback where PostgreSQL cannot be installed: every "database" is an in-memory PGlite served on its own
 * loopback port (pglite-wire-server.ts), so URL-based code, child processes included, runs unchanged. restart()
 * drops every connection, as a server restart would; sessions are shared (see the wire server's header).
 */
async function startPgliteCluster(): Promise<PostgresHandle> {
  const servers: { db: PGlite; server: PgliteWireServer }[] = [];
  const serve = async () => {
    const db = new PGlite();
    await db.waitReady;
    const server = await servePgliteOverWire(db);
    servers.push({ db, server });
    return server;
  };
  const admin = await serve();
  let stopped = false;
  return {
    kind: "pglite",
    host: "127.0.0.1",
    port: admin.port,
    adminUrl: admin.url,
    async createDatabase() {
      return (await serve()).url;
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      memo = null;
      for (const { db, server } of servers.splice(0)) {
        await server.close();
        await db.close();
      }
    },
    async restart() {
      for (const { server } of servers) await server.dropConnections();
    },
  };
}

/** One cluster per test process: bun runs every test file in one process, and initdb is the
 * slow part, so files share the cluster and isolate themselves with createDatabase(). */
let memo: Promise<PostgresHandle> | null = null;

export function getPostgres(): Promise<PostgresHandle> {
  if (memo === null) {
    const started = postgresKind() === "postgresql" ? startPostgres() : startPgliteCluster();
    memo = started;
    // Don't cache a failure: a later call should retry rather than rethrow a stale error.
    started.catch(() => {
      if (memo === started) memo = null;
    });
  }
  return memo;
}

/**
 * A cluster of its own (not the shared one of getPostgres), for the benchmark: `durable` keeps PostgreSQL's
 * defaults (fsync, synchronous_commit, full_page_writes on). One cluster per process at a time.
 */
export function startLocalPostgres(options: ClusterOptions = {}): Promise<PostgresHandle> {
  if (memo !== null)
    throw new Error("startLocalPostgres: getPostgres() already runs a cluster in this process");
  return startPostgres(options);
}
