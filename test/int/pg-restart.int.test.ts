/**
 * No process dies because PostgreSQL restarted or its session was terminated. postgres.js 3.4.9 has connection-loss
 * paths that end the process or leave it waiting (patches/postgres@3.4.9.patch says which and why); the patch is
 * applied at install time (npm's postinstall: patches/apply.mjs). A child process does what the service does
 * (pg-restart.child.ts) while this test terminates its sessions and restarts PostgreSQL, and each path is also
 * taken once on purpose. Without the patch the child exits, or stops making progress.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import postgres from "postgres";
import { openDatabase } from "../../src/adapters/db/client.ts";
import { getPostgres, onPglite } from "../support/services.ts";

const CHILD = join(import.meta.dir, "pg-restart.child.ts");

type Progress = {
  appended: number;
  lookups: number;
  migrations: number;
  failures: number;
  lastError: string;
};

/** The child, its output as it arrives, and its last progress line. */
function spawnChild(mode: string, databaseUrl: string) {
  const proc = Bun.spawn([process.execPath, CHILD, mode], {
    env: { PATH: process.env.PATH ?? "", DATABASE_URL: databaseUrl },
    stdout: "pipe",
    stderr: "pipe",
  });
  let output = "";
  let progress: Progress | undefined;
  const collect = async (stream: ReadableStream<Uint8Array>, parse: boolean) => {
    const decoder = new TextDecoder();
    let line = "";
    for await (const chunk of stream) {
      const text = decoder.decode(chunk, { stream: true });
      output += text;
      if (!parse) continue;
      line += text;
      const lines = line.split("\n");
      line = lines.pop() ?? "";
      for (const l of lines) if (l.startsWith("{")) progress = JSON.parse(l) as Progress;
    }
  };
  const done = Promise.all([
    collect(proc.stdout as ReadableStream<Uint8Array>, true),
    collect(proc.stderr as ReadableStream<Uint8Array>, false),
  ]);
  return {
    proc,
    done,
    progress: () => progress,
    /** The output without the progress lines (what a crash prints), last `chars`. */
    tail: (chars = 4_000) =>
      output
        .split("\n")
        .filter((l) => !l.startsWith("{"))
        .join("\n")
        .slice(-chars),
    running: () => proc.exitCode === null && proc.signalCode === null,
  };
}

test("the postgres.js patch is applied (npm's postinstall runs patches/apply.mjs)", () => {
  const check = Bun.spawnSync(
    [process.execPath, join(import.meta.dir, "../../patches/apply.mjs"), "--check"],
    {
      stdout: "pipe",
      stderr: "pipe",
    },
  );
  expect({ exitCode: check.exitCode, stderr: check.stderr.toString() }).toEqual({ exitCode: 0, stderr: "" });
});

describe.skipIf(onPglite)("PostgreSQL restarts and terminated sessions (needs real PostgreSQL)", () => {
  let databaseUrl: string;
  let admin: postgres.Sql;

  beforeAll(async () => {
    databaseUrl = await (await getPostgres()).createDatabase();
    const database = await openDatabase({ url: databaseUrl, pgliteDir: "" });
    await database.migrate();
    await database.close();
    admin = postgres(databaseUrl, { max: 1, onnotice: () => {} });
  });

  afterAll(async () => {
    await admin?.end({ timeout: 5 });
  });

  /** Terminates every other session on the test database; returns how many. */
  async function terminateSessions(): Promise<number> {
    const rows = await admin<{ terminated: boolean }[]>`
      select pg_terminate_backend(pid) as terminated from pg_stat_activity
      where datname = current_database() and pid <> pg_backend_pid()`;
    return rows.filter((r) => r.terminated).length;
  }

  test("under the service's load, a process survives terminated sessions and PostgreSQL restarts, and resumes", async () => {
    const child = spawnChild("load", databaseUrl);
    const describeChild = () =>
      `child running=${child.running()} exit=${child.proc.exitCode ?? child.proc.signalCode} progress=${JSON.stringify(child.progress())}\n${child.tail()}`;
    /** Waits until every kind of work has moved past `since`; fails at once if the child has exited. */
    const resumed = async (since: Progress | undefined, timeoutMs: number): Promise<number> => {
      const started = Date.now();
      for (;;) {
        if (!child.running()) throw new Error(`the child exited\n${describeChild()}`);
        const now = child.progress();
        if (
          now &&
          now.appended > (since?.appended ?? 0) &&
          now.lookups > (since?.lookups ?? 0) &&
          now.migrations > (since?.migrations ?? 0)
        )
          return Date.now() - started;
        if (Date.now() - started > timeoutMs)
          throw new Error(`no progress within ${timeoutMs} ms\n${describeChild()}`);
        await Bun.sleep(50);
      }
    };

    try {
      await resumed(undefined, 30_000);
      const rounds: { fault: string; sessions?: number; resumedMs: number }[] = [];
      for (let round = 0; round < 9; round++) {
        await Bun.sleep(300 + Math.random() * 500);
        const before = child.progress();
        if (round % 3 === 2) {
          await (await getPostgres()).restart();
          rounds.push({ fault: "restart", resumedMs: await resumed(before, 20_000) });
        } else {
          // A burst: the second and third catch sessions the pool is opening again (start-up, type fetch).
          let sessions = 0;
          for (const gap of [0, 15, 60]) {
            await Bun.sleep(gap);
            sessions += await terminateSessions();
          }
          rounds.push({ fault: "terminate", sessions, resumedMs: await resumed(before, 20_000) });
        }
      }
      console.log(`[pg-restart] ${JSON.stringify({ rounds, progress: child.progress() })}`);
      expect(child.running()).toBe(true);
      expect(rounds.filter((r) => r.fault === "terminate").every((r) => (r.sessions ?? 0) > 0)).toBe(true);
    } finally {
      child.proc.kill("SIGKILL");
      await child.proc.exited;
    }
  }, 180_000);

  test.each([
    "reserved-terminated",
    "transaction-terminated",
    "reset-while-fetching-types",
    "write-pending-at-close",
    "query-between-error-and-close",
    "end-while-connection-lost",
  ])(
    "postgres.js connection-loss path %s: the process survives it and the client works again",
    async (mode) => {
      const child = spawnChild(mode, databaseUrl);
      const exitCode = await Promise.race([
        child.proc.exited,
        Bun.sleep(30_000).then(() => "timeout" as const),
      ]);
      if (exitCode === "timeout") child.proc.kill("SIGKILL");
      await child.done;
      if (exitCode !== 0) console.error(`[pg-restart] ${mode}: exit ${exitCode}\n${child.tail()}`);
      expect({ exitCode, ok: /^ok$/m.test(child.tail()) }).toEqual({ exitCode: 0, ok: true });
    },
    40_000,
  );
});
