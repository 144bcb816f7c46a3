/**
 * DATA_DIR is private, through the real CLI on the embedded defaults (no NATS_URL, no DATABASE_URL: PGlite under
 * DATA_DIR/pg, nats-server's store under DATA_DIR/nats, the generated auth secret and NATS credentials): after
 * `serve` became ready and one order was sequenced, `find DATA_DIR -perm /o+rwx,g+rwx` finds nothing; nor after
 * a clean shutdown; and a DATA_DIR an older version left world-writable is private again after the next start.
 *
 * The test process keeps the usual umask (022) and the child inherits it: the service itself must tighten it
 * (privateUmask) and repair what exists (secureDataDir), also after PGlite created its database, whose files
 * come out 0666/0644 whatever the umask (see test/int/data-dir.int.test.ts).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { lstatSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type CliChild, spawnCli, stopCli } from "../support/cli.ts";
import { freePort } from "../support/services.ts";
import { until } from "../support/wait.ts";

type Child = CliChild;
const spawnServe = (env: Record<string, string>) => spawnCli(["serve"], env);
const stop = stopCli;

/**
 * `find dir -perm /o+rwx,g+rwx`, symlinks left out (a link's own mode is always 0777 on Linux and means nothing),
 * as "mode path" lines.
 */
function exposed(dir: string): string[] {
  const found = Bun.spawnSync([
    "find",
    dir,
    "!",
    "-type",
    "l",
    "-perm",
    "/o+rwx,g+rwx",
    "-printf",
    "%m %P\\n",
  ]);
  if (found.exitCode !== 0) throw new Error(`find failed: ${found.stderr.toString()}`);
  return found.stdout.toString().split("\n").filter(Boolean);
}

/** `find dir -print` count, to show the check looked at a real data directory. */
function entries(dir: string): number {
  return Bun.spawnSync(["find", dir]).stdout.toString().split("\n").filter(Boolean).length;
}

/** Starts serve on DATA_DIR, waits for the banner and readiness; returns the child, its base URL and the banner's token. */
async function serve(dataDir: string): Promise<{ child: Child; base: string; token: string }> {
  const port = await freePort();
  const child = spawnServe({ PORT: String(port), DATA_DIR: dataDir });
  const base = `http://127.0.0.1:${port}`;
  try {
    const banner = await until("the start-up banner", async () =>
      child.stdout().includes("curl -sS -X POST") ? child.stdout() : undefined,
    );
    const token = /Bearer ([\w.-]+)/.exec(banner)?.[1];
    if (!token) throw new Error(`no token in the banner: ${banner}`);
    await until("readiness", async () => ((await fetch(`${base}/readyz`)).ok ? true : undefined));
    return { child, base, token };
  } catch (error) {
    await stop(child).catch(() => {});
    throw error;
  }
}

/** The banner user's own events (GET /me/events). */
async function events(base: string, token: string): Promise<Record<string, string>[]> {
  const res = await fetch(`${base}/me/events?after=0&limit=100`, {
    headers: { authorization: `Bearer ${token}` },
  });
  const page = (await res.json()) as {
    events: Record<string, string>[];
  };
  return page.events;
}

describe("DATA_DIR on the embedded defaults is private", () => {
  const parent = mkdtempSync(join(tmpdir(), "seq-data-dir-e2e-"));
  const dataDir = join(parent, "data"); // missing: serve creates it
  let running: { child: Child; base: string; token: string } | undefined;
  let referenceId = "";
  let umask = 0;

  beforeAll(() => {
    // The usual umask for the test and the child it spawns; the service must not rely on the caller's.
    umask = process.umask(0o022);
  });

  afterAll(async () => {
    process.umask(umask);
    // SIGTERM, not SIGKILL: a killed service cannot stop its nats-server child, which would outlive the test.
    if (running && running.child.proc.exitCode === null) await stop(running.child).catch(() => {});
    rmSync(parent, { recursive: true, force: true });
  }, 30_000);

  test("serve is ready and one order is sequenced → nothing under DATA_DIR has a group/other bit", async () => {
    running = await serve(dataDir);
    const res = await fetch(`${running.base}/orders`, {
      method: "POST",
      headers: { authorization: `Bearer ${running.token}`, "content-type": "application/json" },
      body: JSON.stringify({ direction: "BUY", price: "100.5", quantity: "2" }),
    });
    expect(res.status).toBe(202);
    referenceId = ((await res.json()) as { referenceId: string }).referenceId;
    const { base, token } = running;
    await until("the order in events", async () =>
      (await events(base, token)).some((e) => e.referenceId === referenceId) ? true : undefined,
    );

    expect(lstatSync(dataDir).mode & 0o7777).toBe(0o700);
    for (const sub of ["pg", "nats"]) expect(lstatSync(join(dataDir, sub)).isDirectory()).toBe(true);
    expect(entries(dataDir)).toBeGreaterThan(100); // PGlite's database alone is ~1000 files
    expect(exposed(dataDir)).toEqual([]);
  }, 120_000);

  test("after a clean shutdown (SIGTERM) still nothing", async () => {
    if (!running) throw new Error("the service did not start");
    expect(await stop(running.child)).toBe(0);
    running = undefined;
    expect(exposed(dataDir)).toEqual([]);
  }, 60_000);

  test("a DATA_DIR left world-writable (by an older version) is private again after the next start", async () => {
    const opened = Bun.spawnSync(["chmod", "-R", "go+rwx", dataDir]);
    expect(opened.exitCode).toBe(0);
    expect(exposed(dataDir).length).toBeGreaterThan(100);

    running = await serve(dataDir);
    expect(exposed(dataDir)).toEqual([]);
    // The same database: the order from the first run is still there.
    expect((await events(running.base, running.token)).map((e) => e.referenceId)).toContain(referenceId);
    expect(await stop(running.child)).toBe(0);
    running = undefined;
    expect(exposed(dataDir)).toEqual([]);
  }, 120_000);
});
