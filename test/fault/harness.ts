/**
 * Fault-injection harness: the service as real child processes (the CLI), a recording HTTP client and load
 * generator, readers for the `events` table and the TRADING stream, a bounded drain wait, and checkGuarantees(),
 * which checks G1–G4 of the README over everything the client saw.
 *
 *   G1 no loss       every 2xx is in `events` and on TRADING
 *   G2 no duplicates one sequenceId per referenceId, one TRADING message per sequenceId, and every client request
 *                    (its unique tag) stored at most once, also requests that got no 2xx
 *   G3 no gaps       sequenceIds 1..N, previousId = sequenceId − 1, TRADING position = sequenceId, Nats-Msg-Id =
 *                    `<sequenceId>:<digest prefix>`, TRADING body = events.payload byte for byte, sequencedAt never
 *                    goes backwards
 *   G4 no phantom    every stored event is a request the client sent (tag, user, direction, price; and the ids the
 *                    API answered, when it answered 2xx)
 */
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  type ConsumerInfo,
  DeliverPolicy,
  type JsMsg,
  jetstream,
  jetstreamManager,
} from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import postgres from "postgres";
import { tradingMsgId } from "../../src/adapters/nats/trading-publisher.ts";
import { chainDigests, ZERO_DIGEST } from "../../src/app/log-digest.ts";
import { CLI, cliToken } from "../support/cli.ts";
import { freePort, getPostgres, type NatsServerHandle, startNats } from "../support/services.ts";
import { sleep, until } from "../support/wait.ts";

export const AUTH_SECRET = "fault-injection-secret-0123456789-abcdefghijklmnop";

export const randomBetween = (min: number, max: number) => min + Math.floor(Math.random() * (max - min + 1));

// ---------------------------------------------------------------------------------------------
// Child processes
// ---------------------------------------------------------------------------------------------

type Proc = ReturnType<typeof Bun.spawn>;

/** Every child this file starts; killed at exit whatever happens (afterAll also kills them). */
const allChildren = new Set<Proc>();
process.on("exit", () => {
  for (const proc of allChildren)
    if (proc.exitCode === null && proc.signalCode === null) proc.kill("SIGKILL");
});

export type Exit = { exitCode: number | null; signalCode: string | null; ms: number };

export type UnexpectedExit = { what: string };

export type Readyz = {
  status: number;
  body: { status: string; checks: Record<string, { ok: boolean; detail?: string }> };
};

/** One service (role api or sequencer) run through the CLI; start() again after a kill restarts it, same port. */
export class ServiceProcess {
  proc: Proc | undefined;
  starts = 0;
  /** Set by kill(), or by a test that expects the process to die (a failpoint); reset by start(). */
  exitExpected = false;
  /** Exits nobody asked for (a crash, or a signal from outside the test). */
  readonly unexpectedExits: UnexpectedExit[] = [];
  readonly url: string;
  /** The ops listener: /readyz with every check's detail, /metrics. */
  readonly opsUrl: string;
  private readonly logs: string[] = [];

  constructor(
    readonly name: string,
    readonly role: "api" | "sequencer",
    readonly port: number,
    private readonly env: Record<string, string>,
    private readonly logDir: string,
    readonly opsPort: number,
  ) {
    this.url = `http://127.0.0.1:${port}`;
    this.opsUrl = `http://127.0.0.1:${opsPort}`;
  }

  start(extraEnv: Record<string, string> = {}): this {
    if (this.running()) throw new Error(`${this.name} is already running`);
    this.starts += 1;
    const logPath = join(this.logDir, `${this.name}.${this.starts}.log`);
    this.logs.push(logPath);
    const fd = openSync(logPath, "a");
    try {
      this.proc = Bun.spawn([process.execPath, CLI, "serve", "--role", this.role], {
        env: { ...this.env, PORT: String(this.port), OPS_PORT: String(this.opsPort), ...extraEnv },
        stdio: ["ignore", fd, fd],
      });
    } finally {
      closeSync(fd);
    }
    allChildren.add(this.proc);
    this.exitExpected = false;
    const proc = this.proc;
    const start = this.starts;
    void proc.exited.then(() => {
      allChildren.delete(proc);
      if (this.exitExpected || this.proc !== proc) return;
      const what = `${this.name} (start #${start}) exited unexpectedly: code ${proc.exitCode}, signal ${proc.signalCode}, at ${new Date().toISOString()}`;
      this.unexpectedExits.push({ what });
      console.error(`[fault] ${what}\n${this.logTail()}`);
    });
    return this;
  }

  running(): boolean {
    return this.proc !== undefined && this.proc.exitCode === null && this.proc.signalCode === null;
  }

  /** Freezes (SIGSTOP) or resumes (SIGCONT) the process, as a paused VM or a stop-the-world pause would. */
  signal(signal: "SIGSTOP" | "SIGCONT"): void {
    if (!this.running()) throw new Error(`${this.name} is not running`);
    this.proc?.kill(signal);
  }

  /** Sends the signal and waits (bounded) for the exit. */
  async kill(signal: "SIGKILL" | "SIGTERM" = "SIGKILL", timeoutMs = 20_000): Promise<Exit> {
    const proc = this.proc;
    if (!proc) throw new Error(`${this.name} was never started`);
    const started = Date.now();
    this.exitExpected = true;
    if (this.running()) proc.kill(signal);
    const exit = await this.waitExit(timeoutMs);
    if (!exit) {
      proc.kill("SIGKILL");
      await proc.exited;
      throw new Error(`${this.name} did not exit within ${timeoutMs} ms of ${signal}\n${this.logTail()}`);
    }
    return { ...exit, ms: Date.now() - started };
  }

  /** Waits for the current process to exit; undefined on timeout. */
  async waitExit(timeoutMs: number): Promise<Exit | undefined> {
    const proc = this.proc;
    if (!proc) throw new Error(`${this.name} was never started`);
    const started = Date.now();
    const timedOut = sleep(timeoutMs).then(() => "timeout" as const);
    if ((await Promise.race([proc.exited, timedOut])) === "timeout") return undefined;
    const signalCode = proc.signalCode === null ? null : String(proc.signalCode);
    return { exitCode: proc.exitCode, signalCode, ms: Date.now() - started };
  }

  async readyz(timeoutMs = 2_000): Promise<Readyz | undefined> {
    try {
      const res = await fetch(`${this.opsUrl}/readyz`, { signal: AbortSignal.timeout(timeoutMs) });
      return { status: res.status, body: (await res.json()) as Readyz["body"] };
    } catch {
      return undefined;
    }
  }

  /** True when /readyz says this process holds the writer lock (sequencer role). */
  async isLeader(): Promise<boolean> {
    return (await this.readyz())?.body.checks.leader?.ok === true;
  }

  async waitReady(timeoutMs = 30_000): Promise<void> {
    await until(
      `${this.name} /readyz 200`,
      async () => ((await this.readyz())?.status === 200 ? true : undefined),
      timeoutMs,
      100,
      async () => `${this.name}: readyz=${JSON.stringify(await this.readyz())}\n${this.logTail()}`,
      () => (this.running() ? undefined : `${this.name} exited`),
    );
  }

  async waitLeader(timeoutMs = 30_000, intervalMs = 100): Promise<void> {
    await until(
      `${this.name} to hold the writer lock`,
      async () => ((await this.isLeader()) ? true : undefined),
      timeoutMs,
      intervalMs,
      async () => `${this.name}: readyz=${JSON.stringify(await this.readyz())}\n${this.logTail()}`,
      () => (this.running() ? undefined : `${this.name} exited`),
    );
  }

  /** Every log line of every start, concatenated. */
  allLogs(): string {
    return this.logs.map((path) => readFileSync(path, "utf8")).join("");
  }

  logTail(bytes = 3_000): string {
    const last = this.logs[this.logs.length - 1];
    let text = "(no log)";
    try {
      if (last) text = readFileSync(last, "utf8").slice(-bytes) || "(empty)";
    } catch {}
    return `--- ${this.name} (start #${this.starts}, running=${this.running()}, exit=${this.proc?.exitCode ?? this.proc?.signalCode ?? "-"}) ${last ?? ""}\n${text}`;
  }
}

// ---------------------------------------------------------------------------------------------
// A test cluster: one nats-server, one fresh database, the service processes, their logs.
// ---------------------------------------------------------------------------------------------

export class Cluster {
  readonly services: ServiceProcess[] = [];
  private stopped = false;
  readonly env: Record<string, string>;

  private constructor(
    readonly nats: NatsServerHandle,
    readonly databaseUrl: string,
    readonly logDir: string,
  ) {
    this.env = {
      PATH: process.env.PATH ?? "",
      NATS_URL: nats.url,
      DATABASE_URL: databaseUrl,
      AUTH_SECRET,
      DATA_DIR: logDir,
      LOG_LEVEL: process.env.FAULT_LOG_LEVEL ?? "warn",
      // Every role provisions the consumer at start-up, so every role must agree on ack_wait.
      SEQUENCER_ACK_WAIT: "5s",
      // These tests are about crash safety under sustained load from a few users; the per-user rate limit
      // (tested in test/int/http-hardening.int.test.ts) would turn part of that load into 429s.
      RATE_LIMIT: "off",
    };
  }

  static async create(name: string): Promise<Cluster> {
    const logDir = mkdtempSync(join(tmpdir(), `fault-${name}-`));
    const nats = await startNats();
    const databaseUrl = await (await getPostgres()).createDatabase();
    return new Cluster(nats, databaseUrl, logDir);
  }

  async api(name: string, workerId: number): Promise<ServiceProcess> {
    const service = new ServiceProcess(
      name,
      "api",
      await freePort(),
      {
        ...this.env,
        WORKER_ID: String(workerId),
      },
      this.logDir,
      await freePort(),
    );
    this.services.push(service);
    return service;
  }

  async sequencer(name: string): Promise<ServiceProcess> {
    const service = new ServiceProcess(
      name,
      "sequencer",
      await freePort(),
      this.env,
      this.logDir,
      await freePort(),
    );
    this.services.push(service);
    return service;
  }

  /** `sequencer token --user <id>` with the cluster's secret: only the JWT on stdout. */
  async token(userId: string): Promise<string> {
    return cliToken(this.env, userId);
  }

  /** A reader token (GET /events needs one). */
  async readerToken(): Promise<string> {
    return cliToken(this.env, "1", "reader");
  }

  async tokens(userIds: string[]): Promise<Map<string, string>> {
    return new Map(await Promise.all(userIds.map(async (id) => [id, await this.token(id)] as const)));
  }

  logTails(bytes = 3_000): string {
    return this.services.map((s) => s.logTail(bytes)).join("\n");
  }

  /** Exits of service processes that the test did not cause. */
  unexpectedExits(): string[] {
    return this.services.flatMap((s) => s.unexpectedExits).map((e) => e.what);
  }

  /** Services that are down now because they died on their own (not restarted since). */
  deadServices(): string[] {
    return this.services.filter((s) => !s.running() && !s.exitExpected && s.proc).map((s) => s.name);
  }

  /** State for a failure message: consumer, streams, database head, process logs. */
  async describe(): Promise<string> {
    const state = await syncState(this.nats.url, this.databaseUrl).catch(
      (e) => `sync state unavailable: ${e}`,
    );
    const exits = this.unexpectedExits();
    return `state: ${JSON.stringify(state)}\nunexpected exits: ${exits.length ? exits.join("; ") : "none"}\nlogs in ${this.logDir}\n${this.logTails()}`;
  }

  /** Runs body; on failure prints the cluster's state and log tails, then rethrows. */
  async diagnose<T>(body: () => Promise<T>): Promise<T> {
    try {
      return await body();
    } catch (error) {
      console.error(
        `[fault] FAILURE: ${error instanceof Error ? error.message : error}\n${await this.describe()}`,
      );
      throw error;
    }
  }

  /** Kills every service process, stops nats-server; deletes the logs unless keepLogs. Idempotent. */
  async stop(keepLogs: boolean): Promise<void> {
    for (const service of this.services) {
      if (service.running()) await service.kill("SIGKILL").catch(() => {});
    }
    await this.nats.stop();
    if (keepLogs) {
      if (!this.stopped) console.log(`[fault] logs kept in ${this.logDir}`);
    } else rmSync(this.logDir, { recursive: true, force: true });
    this.stopped = true;
  }
}

// ---------------------------------------------------------------------------------------------
// Client: every request tagged uniquely, every outcome recorded
// ---------------------------------------------------------------------------------------------

let nextTag = 1;

/** quantity = 1.NNNNNNN1: unique per request, already canonical (no trailing zero), 8 decimal places. */
function tagQuantity(n: number): string {
  if (n >= 10_000_000) throw new Error("tag space exhausted");
  return `1.${String(n).padStart(7, "0")}1`;
}

export type Outcome = "2xx" | "503" | "other-status" | "network-error" | "timeout";

/**
 * One HTTP attempt. A logical request has a unique tag (its quantity); attempts that retry it carry the same tag,
 * body and Idempotency-Key, so "one tag, at most one event" covers client retries too.
 */
export type RequestRecord = {
  tag: string; // = quantity
  userId: string;
  direction: "BUY" | "SELL";
  price: string;
  idempotencyKey?: string;
  attempt: number;
  target: string;
  status: number | null;
  outcome: Outcome;
  error?: string;
  referenceId?: string;
  orderId?: string;
  startedAt: number;
  endedAt: number;
};

type Order = Pick<RequestRecord, "tag" | "userId" | "direction" | "price" | "idempotencyKey">;

export class OrderClient {
  readonly records: RequestRecord[] = [];
  private readonly users: string[];

  constructor(
    private readonly tokens: Map<string, string>,
    private readonly timeoutMs = 15_000,
  ) {
    this.users = [...tokens.keys()];
  }

  /** A new logical request (a fresh tag); with an Idempotency-Key when `idempotent`. */
  newOrder(idempotent = false): Order {
    const n = nextTag++;
    return {
      tag: tagQuantity(n),
      userId: this.users[n % this.users.length] ?? "",
      direction: n % 2 ? "BUY" : "SELL",
      price: `${100 + (n % 50)}.25`,
      ...(idempotent ? { idempotencyKey: `fault-${n}` } : {}),
    };
  }

  /** One attempt of `order` (a new one by default) against `base`. */
  async send(base: string, order: Order = this.newOrder(), attempt = 1): Promise<RequestRecord> {
    const record: RequestRecord = {
      ...order,
      attempt,
      target: base,
      status: null,
      outcome: "network-error",
      startedAt: Date.now(),
      endedAt: 0,
    };
    this.records.push(record);
    const headers: Record<string, string> = {
      authorization: `Bearer ${this.tokens.get(order.userId)}`,
      "content-type": "application/json",
    };
    if (order.idempotencyKey) headers["idempotency-key"] = order.idempotencyKey;
    try {
      const res = await fetch(`${base}/orders`, {
        method: "POST",
        headers,
        body: JSON.stringify({ direction: order.direction, price: order.price, quantity: order.tag }),
        signal: AbortSignal.timeout(this.timeoutMs),
      });
      record.status = res.status;
      const text = await res.text();
      if (res.status >= 200 && res.status < 300) {
        const body = JSON.parse(text) as { referenceId: string; orderId: string };
        record.referenceId = body.referenceId;
        record.orderId = body.orderId;
        record.outcome = "2xx";
      } else {
        record.outcome = res.status === 503 ? "503" : "other-status";
        record.error = text.slice(0, 300);
      }
    } catch (error) {
      const name = error instanceof Error ? error.name : "";
      record.outcome = name === "TimeoutError" || name === "AbortError" ? "timeout" : "network-error";
      record.error = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
    }
    record.endedAt = Date.now();
    return record;
  }

  /**
   * An idempotent request, retried with the same key and body (against the next target each time) until it is
   * answered 2xx or maxAttempts is reached — what a careful client does after a 503 or a lost connection.
   */
  async sendWithRetries(targets: string[], first: number, maxAttempts = 4): Promise<RequestRecord> {
    const order = this.newOrder(true);
    let record = await this.send(targets[first % targets.length] ?? "", order, 1);
    for (let attempt = 2; attempt <= maxAttempts && record.outcome !== "2xx"; attempt++) {
      await sleep(randomBetween(50, 250));
      record = await this.send(targets[(first + attempt - 1) % targets.length] ?? "", order, attempt);
    }
    return record;
  }

  /** count requests, `parallel` at a time, round-robin over the targets. */
  async sendMany(targets: string[], count: number, parallel = 10): Promise<RequestRecord[]> {
    const out: RequestRecord[] = [];
    let i = 0;
    await Promise.all(
      Array.from({ length: Math.min(parallel, count) }, async () => {
        while (i < count) {
          const target = targets[i++ % targets.length] ?? "";
          out.push(await this.send(target));
        }
      }),
    );
    return out;
  }
}

/**
 * Answers outside the contract for a request that could not be confirmed: anything but 2xx, 503 (+ Retry-After)
 * or a lost/timed-out connection. Grouped by status and error text, with a count and an example each.
 */
export function disallowedAnswers(records: readonly RequestRecord[]): string[] {
  const groups = new Map<string, { count: number; example: RequestRecord }>();
  for (const r of records) {
    if (r.outcome !== "other-status") continue;
    const key = `${r.status} ${r.error ?? ""}`;
    const group = groups.get(key) ?? { count: 0, example: r };
    group.count += 1;
    groups.set(key, group);
  }
  return [...groups].map(
    ([key, { count, example: r }]) =>
      `${count} x ${key} (e.g. tag ${r.tag}, Idempotency-Key ${r.idempotencyKey ?? "none"}, attempt ${r.attempt}, ` +
      `via ${r.target}, at ${new Date(r.endedAt).toISOString()} after ${r.endedAt - r.startedAt} ms)`,
  );
}

/**
 * Bounded-concurrency load over HTTP until stop(). A share of the requests (`idempotentShare`) carry an
 * Idempotency-Key and are retried on a non-2xx; the rest are sent once. A worker whose request failed backs off
 * briefly (no busy loop while an API is down).
 */
export class LoadGenerator {
  private stopped = false;
  private workers: Promise<void>[] = [];

  constructor(
    readonly client: OrderClient,
    private readonly targets: () => string[],
    private readonly concurrency = 16,
    private readonly idempotentShare = 0,
  ) {}

  start(): this {
    this.workers = Array.from({ length: this.concurrency }, async (_, w) => {
      let i = w;
      while (!this.stopped) {
        const targets = this.targets();
        const record =
          Math.random() < this.idempotentShare
            ? await this.client.sendWithRetries(targets, i++)
            : await this.client.send(targets[i++ % targets.length] ?? "");
        if (record.outcome !== "2xx") await sleep(randomBetween(20, 60));
      }
    });
    return this;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await Promise.all(this.workers);
  }
}

// ---------------------------------------------------------------------------------------------
// Reading what was stored and published
// ---------------------------------------------------------------------------------------------

export type StoredRow = {
  sequenceId: string;
  previousId: string;
  referenceId: string;
  userId: string;
  type: string;
  payload: string;
};

export async function readEvents(databaseUrl: string): Promise<StoredRow[]> {
  const sql = postgres(databaseUrl, { max: 1, onnotice: () => {}, connect_timeout: 10 });
  try {
    return await sql<StoredRow[]>`
      select sequence_id::text as "sequenceId", previous_id::text as "previousId",
             reference_id::text as "referenceId", user_id::text as "userId", type, payload
      from events order by sequence_id`;
  } finally {
    await sql.end({ timeout: 5 });
  }
}

export type TradingMessage = { position: number; msgId: string | undefined; subject: string; data: string };

/**
 * Every message on TRADING, in stream order (an ordered consumer), bounded in time. An ordered consumer that stalls
 * (seen on a 3-node cluster recovering from node kills, under a loaded machine: nats.js 3.4's ordered consumer can
 * stop pulling after a reset) is replaced by a new one from the next position after 3 s without progress, until
 * the deadline (at most 20 readers): the test judges TRADING's content, not one reader's luck.
 */
export async function readTrading(natsUrl: string, timeoutMs = 60_000): Promise<TradingMessage[]> {
  const nc = await connect({ servers: natsUrl });
  try {
    const last = (await (await jetstreamManager(nc)).streams.info("TRADING")).state.last_seq;
    const out: TradingMessage[] = [];
    if (last === 0) return out;
    const deadline = Date.now() + timeoutMs;
    for (
      let reader = 0;
      reader < 20 && (out[out.length - 1]?.position ?? 0) < last && Date.now() < deadline;
      reader++
    ) {
      const from = (out[out.length - 1]?.position ?? 0) + 1;
      const consumer = await jetstream(nc).consumers.get("TRADING", {
        deliver_policy: DeliverPolicy.StartSequence,
        opt_start_seq: from,
      });
      const messages = await consumer.consume({ max_messages: 1_000 });
      // A reader that makes no progress for 3 s (or runs past the deadline) is closed and replaced: a healthy one
      // reads tens of thousands of messages a second.
      let lastProgress = Date.now();
      const watchdog = setInterval(() => {
        if (Date.now() - lastProgress > 3_000 || Date.now() > deadline) void messages.close();
      }, 500);
      try {
        for await (const msg of messages as AsyncIterable<JsMsg>) {
          lastProgress = Date.now();
          out.push({
            position: msg.seq,
            msgId: msg.headers?.get("Nats-Msg-Id"),
            subject: msg.subject,
            data: msg.string(),
          });
          if (msg.seq >= last) break;
        }
      } finally {
        clearInterval(watchdog);
        await messages.close();
      }
    }
    if ((out[out.length - 1]?.position ?? 0) < last) {
      throw new Error(`read ${out.length} TRADING messages in ${timeoutMs} ms; last_seq is ${last}`);
    }
    return out;
  } finally {
    await nc.close();
  }
}

export type SyncState = {
  dbHead: number;
  dbCount: number;
  tradingLast: number;
  tradingMessages: number;
  intakeLast: number;
  consumer: Pick<ConsumerInfo, "num_pending" | "num_ack_pending" | "num_redelivered" | "num_waiting"> & {
    delivered: number;
    ackFloor: number;
  };
};

async function withNats<T>(natsUrl: string, body: (nc: NatsConnection) => Promise<T>): Promise<T> {
  const nc = await connect({ servers: natsUrl, timeout: 5_000 });
  try {
    return await body(nc);
  } finally {
    await nc.close();
  }
}

/** Database head, TRADING, the intake stream and the `sequencer` consumer, read together. */
export async function syncState(natsUrl: string, databaseUrl: string): Promise<SyncState> {
  const sql = postgres(databaseUrl, { max: 1, onnotice: () => {}, connect_timeout: 10 });
  let db: { head: string | null; count: string }[];
  try {
    db = await sql`select max(sequence_id)::text as head, count(*)::text as count from events`;
  } finally {
    await sql.end({ timeout: 5 });
  }
  return withNats(natsUrl, async (nc) => {
    const jsm = await jetstreamManager(nc);
    const trading = await jsm.streams.info("TRADING");
    const intake = await jsm.streams.info("SEQUENCE");
    const c = await jsm.consumers.info("SEQUENCE", "sequencer");
    return {
      dbHead: Number(db[0]?.head ?? 0),
      dbCount: Number(db[0]?.count ?? 0),
      tradingLast: trading.state.last_seq,
      tradingMessages: trading.state.messages,
      intakeLast: intake.state.last_seq,
      consumer: {
        num_pending: c.num_pending,
        num_ack_pending: c.num_ack_pending,
        num_redelivered: c.num_redelivered,
        num_waiting: c.num_waiting,
        delivered: c.delivered.stream_seq,
        ackFloor: c.ack_floor.stream_seq,
      },
    };
  });
}

/** syncState, or undefined if it cannot be read within timeoutMs (a dependency is restarting). */
export async function trySyncState(cluster: Cluster, timeoutMs = 1_500): Promise<SyncState | undefined> {
  const timeout = sleep(timeoutMs).then(() => undefined);
  return Promise.race([syncState(cluster.nats.url, cluster.databaseUrl).catch(() => undefined), timeout]);
}

/** GET /events paged through an API (as a reader): the sequenceId and referenceId of every event, in order. */
export async function readEventsViaApi(
  base: string,
  readerToken: string,
  pageSize = 1_000,
): Promise<string[]> {
  const out: string[] = [];
  let after = "0";
  for (let page = 0; page < 100_000; page++) {
    const res = await fetch(`${base}/events?after=${after}&limit=${pageSize}`, {
      headers: { authorization: `Bearer ${readerToken}` },
      signal: AbortSignal.timeout(10_000),
    });
    if (!res.ok) throw new Error(`GET /events?after=${after}: ${res.status} ${await res.text()}`);
    const body = (await res.json()) as { events: Payload[]; next: string | null };
    for (const e of body.events) out.push(`${e.sequenceId}:${e.referenceId}`);
    if (body.events.length < pageSize || body.next === null) break;
    after = body.next;
  }
  return out;
}

/**
 * Waits (bounded) until the system is in sync: TRADING's last sequence = the database head, and the consumer has
 * nothing pending or unacked (so every intake message was decided). Twice in a row, 250 ms apart.
 */
export async function waitForDrain(
  cluster: Cluster,
  timeoutMs = 60_000,
): Promise<{ ms: number; state: SyncState }> {
  const started = Date.now();
  let previous: string | undefined;
  let last: SyncState | undefined;
  const state = await until(
    "drain (DB head = TRADING last, consumer has nothing pending or unacked)",
    async () => {
      const s = await syncState(cluster.nats.url, cluster.databaseUrl);
      last = s;
      const synced =
        s.dbHead === s.tradingLast && s.consumer.num_pending === 0 && s.consumer.num_ack_pending === 0;
      const key = JSON.stringify(s);
      const stable = synced && key === previous;
      previous = synced ? key : undefined;
      return stable ? s : undefined;
    },
    timeoutMs,
    250,
    async () => `last state: ${JSON.stringify(last)}\n${await cluster.describe()}`,
    () => {
      const dead = cluster.deadServices();
      return dead.length > 0
        ? `died and not restarted: ${dead.join(", ")}; ${cluster.unexpectedExits().join("; ")}`
        : undefined;
    },
  );
  return { ms: Date.now() - started, state };
}

// ---------------------------------------------------------------------------------------------
// The guarantees
// ---------------------------------------------------------------------------------------------

export type GuaranteeReport = {
  violations: string[];
  stats: {
    /** Logical requests (tags), HTTP attempts, and requests retried with their Idempotency-Key. */
    requests: number;
    attempts: number;
    retried: number;
    /** 2xx answers (attempts). */
    accepted: number;
    events: number;
    trading: number;
    /** Requests that got no 2xx but were stored anyway (allowed: at most once, e.g. killed after the PubAck). */
    storedWithout2xx: number;
    outcomes: Record<string, number>;
  };
};

type Payload = Record<string, unknown>;

/** Collects up to 5 examples per invariant, with the full count. */
class Violations {
  private readonly byRule = new Map<string, { count: number; examples: string[] }>();
  add(rule: string, example: string): void {
    const entry = this.byRule.get(rule) ?? { count: 0, examples: [] };
    entry.count += 1;
    if (entry.examples.length < 5) entry.examples.push(example);
    this.byRule.set(rule, entry);
  }
  list(): string[] {
    return [...this.byRule].map(
      ([rule, { count, examples }]) => `${rule}: ${count} (e.g. ${examples.join("; ")})`,
    );
  }
}

export function checkGuarantees(input: {
  records: readonly RequestRecord[];
  events: readonly StoredRow[];
  trading: readonly TradingMessage[];
}): GuaranteeReport {
  const { records, events, trading } = input;
  const v = new Violations();
  const byTag = new Map<string, RequestRecord[]>();
  for (const r of records) byTag.set(r.tag, [...(byTag.get(r.tag) ?? []), r]);
  const accepted = records.filter((r) => r.outcome === "2xx");
  const payloads: Payload[] = events.map((e) => {
    try {
      return JSON.parse(e.payload) as Payload;
    } catch {
      v.add("G3 payload is not JSON", `sequenceId ${e.sequenceId}`);
      return {};
    }
  });

  // G3: one contiguous chain 1..N, payload consistent with its columns, sequencedAt monotonic.
  let previousAt = "";
  events.forEach((e, i) => {
    const p = payloads[i] ?? {};
    if (e.sequenceId !== String(i + 1))
      v.add("G3 sequenceIds not 1..N", `row ${i + 1} has sequenceId ${e.sequenceId}`);
    if (e.previousId !== String(BigInt(e.sequenceId) - 1n))
      v.add("G3 previousId != sequenceId-1", `sequenceId ${e.sequenceId} previousId ${e.previousId}`);
    if (p.sequenceId !== e.sequenceId || p.previousId !== e.previousId || p.referenceId !== e.referenceId)
      v.add("G3 payload ids differ from columns", `sequenceId ${e.sequenceId}: ${e.payload}`);
    if (p.userId !== e.userId || p.type !== e.type)
      v.add("G3 payload user/type differ from columns", `sequenceId ${e.sequenceId}`);
    const at = String(p.sequencedAt ?? "");
    if (at < previousAt)
      v.add("G3 sequencedAt went backwards", `sequenceId ${e.sequenceId}: ${previousAt} -> ${at}`);
    if (at > previousAt) previousAt = at;
  });

  // G3: TRADING position = sequenceId, Nats-Msg-Id = `<sequenceId>:<the digest's first 32 hex characters>` with
  // the digest chained over the stored payloads (src/app/log-digest.ts), body = payload byte for byte, same length.
  const digests = chainDigests(
    ZERO_DIGEST,
    events.map((e) => e.payload),
  );
  if (trading.length !== events.length)
    v.add("G3 TRADING and events differ in length", `TRADING ${trading.length}, events ${events.length}`);
  trading.forEach((m, i) => {
    if (m.position !== i + 1)
      v.add("G3 TRADING positions not 1..N", `message ${i + 1} at position ${m.position}`);
    const e = events[i];
    if (!e) return;
    if (m.msgId !== tradingMsgId({ sequenceId: BigInt(e.sequenceId), digest: digests[i] ?? "" }))
      v.add("G3 Nats-Msg-Id != sequenceId:digest prefix", `position ${m.position} msgId ${m.msgId}`);
    if (String(m.position) !== e.sequenceId)
      v.add("G3 TRADING position != sequenceId", `position ${m.position} sequenceId ${e.sequenceId}`);
    if (m.data !== e.payload) v.add("G3 TRADING body != events.payload", `position ${m.position}`);
    if (m.subject !== `trading.${e.type.toLowerCase()}`)
      v.add("G3 TRADING subject", `${m.position} ${m.subject}`);
  });

  // G2: one sequenceId per referenceId, one event per client request (tag), one message per sequenceId.
  const refCount = new Map<string, number>();
  for (const e of events) refCount.set(e.referenceId, (refCount.get(e.referenceId) ?? 0) + 1);
  for (const [ref, n] of refCount) if (n > 1) v.add("G2 referenceId stored more than once", `${ref} x${n}`);
  const tradingIds = new Map<string, number>();
  for (const m of trading) tradingIds.set(m.msgId ?? "", (tradingIds.get(m.msgId ?? "") ?? 0) + 1);
  for (const [id, n] of tradingIds)
    if (n > 1) v.add("G2 sequenceId on TRADING more than once", `${id} x${n}`);
  const tagEvents = new Map<string, number[]>();
  payloads.forEach((p, i) => {
    const tag = String(p.quantity ?? "");
    tagEvents.set(tag, [...(tagEvents.get(tag) ?? []), i]);
  });
  for (const [tag, idx] of tagEvents) {
    if (idx.length > 1)
      v.add(
        "G2 client request stored more than once",
        `tag ${tag} as sequenceIds ${idx.map((i) => events[i]?.sequenceId).join(",")}`,
      );
  }

  // G4: every stored event is a request we sent, with its user, direction, price, and the ids we were given.
  let storedWithout2xx = 0;
  payloads.forEach((p, i) => {
    const e = events[i];
    const attempts = byTag.get(String(p.quantity ?? ""));
    const r = attempts?.[0];
    if (!attempts || !r) {
      v.add("G4 phantom event (no such request)", `sequenceId ${e?.sequenceId}: ${e?.payload}`);
      return;
    }
    if (
      p.userId !== r.userId ||
      p.direction !== r.direction ||
      p.price !== r.price ||
      p.type !== "CREATE_ORDER"
    )
      v.add(
        "G4 event differs from its request",
        `sequenceId ${e?.sequenceId}: ${e?.payload} vs ${JSON.stringify(r)}`,
      );
    const answered = attempts.filter((a) => a.outcome === "2xx");
    for (const a of answered) {
      if (p.referenceId !== a.referenceId || p.orderId !== a.orderId)
        v.add(
          "G4 event ids differ from a 2xx answer for its request",
          `tag ${a.tag} attempt ${a.attempt}: stored ${p.referenceId}/${p.orderId}, answered ${a.referenceId}/${a.orderId}`,
        );
    }
    if (answered.length === 0) storedWithout2xx += 1;
  });

  // G1: every 2xx is stored (by referenceId) and therefore, with G3, on TRADING at its sequenceId.
  const storedRefs = new Set(events.map((e) => e.referenceId));
  const tradingRefs = new Set(
    trading.map((m) => {
      try {
        return String((JSON.parse(m.data) as Payload).referenceId);
      } catch {
        return "";
      }
    }),
  );
  for (const r of accepted) {
    if (!storedRefs.has(r.referenceId ?? ""))
      v.add(
        "G1 accepted order missing from events",
        `tag ${r.tag} referenceId ${r.referenceId} via ${r.target}`,
      );
    if (!tradingRefs.has(r.referenceId ?? ""))
      v.add("G1 accepted order missing from TRADING", `tag ${r.tag} referenceId ${r.referenceId}`);
  }

  const outcomes: Record<string, number> = {};
  for (const r of records) {
    const key = r.outcome === "other-status" ? `status ${r.status}` : r.outcome;
    outcomes[key] = (outcomes[key] ?? 0) + 1;
  }
  return {
    violations: v.list(),
    stats: {
      requests: byTag.size,
      attempts: records.length,
      retried: [...byTag.values()].filter((a) => a.length > 1).length,
      accepted: accepted.length,
      events: events.length,
      trading: trading.length,
      storedWithout2xx,
      outcomes,
    },
  };
}

/**
 * Drains, reads `events` (from Postgres) and TRADING, checks G1–G4, and, given a running API, checks that
 * GET /events replays the same log. Returns the report; the caller asserts on it.
 */
export async function drainAndCheck(
  cluster: Cluster,
  records: readonly RequestRecord[],
  options: { drainTimeoutMs?: number; api?: ServiceProcess | undefined } = {},
): Promise<GuaranteeReport & { drainMs: number; state: SyncState }> {
  const { ms, state } = await waitForDrain(cluster, options.drainTimeoutMs ?? 60_000);
  const [events, trading] = await Promise.all([
    readEvents(cluster.databaseUrl),
    readTrading(cluster.nats.url),
  ]);
  const report = checkGuarantees({ records, events, trading });
  if (options.api) {
    const replayed = await readEventsViaApi(options.api.url, await cluster.readerToken());
    const stored = events.map((e) => `${e.sequenceId}:${e.referenceId}`);
    if (replayed.length !== stored.length || replayed.some((id, i) => id !== stored[i])) {
      const at = replayed.findIndex((id, i) => id !== stored[i]);
      report.violations.push(
        `GET /events differs from the events table: ${replayed.length} vs ${stored.length} events, first difference at ${at}`,
      );
    }
  }
  return { ...report, drainMs: ms, state };
}
