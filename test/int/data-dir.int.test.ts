/**
 * src/runtime/data-dir.ts on real files in a temporary directory: world-writable files and nested directories
 * become 0600/0700 (an owner-executable file 0700), symlinks are neither followed nor changed, a missing DATA_DIR
 * is created 0700, and privateUmask() makes what is created afterwards private; plus PGlite, whose new database
 * comes out partly 0666/0644 whatever the umask, made private by a second pass after it was opened.
 */
import { afterAll, afterEach, describe, expect, test } from "bun:test";
import {
  chmodSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readlinkSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { PGlite } from "@electric-sql/pglite";
import { privateUmask, secureDataDir } from "../../src/runtime/data-dir.ts";

const root = mkdtempSync(join(tmpdir(), "seq-data-dir-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

let counter = 0;
const fresh = () => join(root, `case-${++counter}`);

const modeOf = (path: string) => lstatSync(path).mode & 0o7777;

/** Every entry under `dir` whose mode has a group/other bit, as `find dir -perm /g+rwx,o+rwx` would list. */
function exposed(dir: string): string[] {
  const out: string[] = [];
  const walk = (path: string) => {
    const stats = lstatSync(path);
    if (stats.isSymbolicLink()) return;
    if ((stats.mode & 0o077) !== 0) out.push(`${(stats.mode & 0o7777).toString(8)} ${relative(dir, path)}`);
    if (stats.isDirectory()) for (const name of readdirSync(path)) walk(join(path, name));
  };
  walk(dir);
  return out;
}

/** Creates with explicit chmods, so the test's umask does not matter. */
function file(path: string, mode: number, text = "x") {
  writeFileSync(path, text);
  chmodSync(path, mode);
}
function dir(path: string, mode: number) {
  mkdirSync(path, { recursive: true });
  chmodSync(path, mode);
}

let restoreUmask: number | undefined;
afterEach(() => {
  if (restoreUmask !== undefined) process.umask(restoreUmask);
  restoreUmask = undefined;
});

describe("secureDataDir", () => {
  test("world-writable files and nested directories become 0600 / 0700; an owner-executable file keeps its x", () => {
    const data = fresh();
    dir(data, 0o777);
    dir(join(data, "pg", "base", "5"), 0o777);
    chmodSync(join(data, "pg"), 0o777);
    chmodSync(join(data, "pg", "base"), 0o755);
    dir(join(data, "nats", "jetstream"), 0o750);
    file(join(data, "auth-secret"), 0o666);
    file(join(data, "pg", "PG_VERSION"), 0o666);
    file(join(data, "pg", "base", "5", "1247"), 0o777);
    file(join(data, "pg", "base", "5", "pg_internal.init"), 0o644);
    file(join(data, "nats", "jetstream", "msgs.blk"), 0o640);
    file(join(data, "nats", "run.sh"), 0o755);
    file(join(data, "already-private"), 0o600);
    file(join(data, "readonly"), 0o444);
    // setuid/setgid/sticky go too.
    file(join(data, "setuid"), 0o4755);
    dir(join(data, "sticky"), 0o1777);

    const result = secureDataDir(data);

    expect(exposed(data)).toEqual([]);
    const modes = Object.fromEntries(
      [
        "",
        "pg",
        "pg/base",
        "pg/base/5",
        "nats",
        "nats/jetstream",
        "sticky",
        "auth-secret",
        "pg/PG_VERSION",
        "pg/base/5/1247",
        "pg/base/5/pg_internal.init",
        "nats/jetstream/msgs.blk",
        "nats/run.sh",
        "already-private",
        "readonly",
        "setuid",
      ].map((p) => [p, modeOf(join(data, p)).toString(8)]),
    );
    expect(modes).toEqual({
      "": "700",
      pg: "700",
      "pg/base": "700",
      "pg/base/5": "700",
      nats: "700",
      "nats/jetstream": "700",
      sticky: "700",
      "auth-secret": "600",
      "pg/PG_VERSION": "600",
      "pg/base/5/1247": "700",
      "pg/base/5/pg_internal.init": "600",
      "nats/jetstream/msgs.blk": "600",
      "nats/run.sh": "700",
      "already-private": "600",
      readonly: "600",
      setuid: "700",
    });
    // DATA_DIR, 6 directories and 9 files under it; all but already-private changed.
    expect(result).toEqual({ checked: 16, changed: 15 });
    // A second pass has nothing to do.
    expect(secureDataDir(data)).toEqual({ checked: 16, changed: 0 });
  });

  test("symlinks are not followed: neither the target file nor a linked directory's contents change", () => {
    const data = fresh();
    const outside = fresh();
    dir(data, 0o755);
    dir(join(outside, "shared"), 0o777);
    file(join(outside, "target"), 0o666);
    file(join(outside, "shared", "inner"), 0o666);
    symlinkSync(join(outside, "target"), join(data, "link-to-file"));
    symlinkSync(join(outside, "shared"), join(data, "link-to-dir"));
    symlinkSync(join(outside, "missing"), join(data, "dangling"));
    file(join(data, "own"), 0o666);

    const result = secureDataDir(data);

    expect(modeOf(join(data, "own"))).toBe(0o600);
    expect(modeOf(data)).toBe(0o700);
    expect(modeOf(join(outside, "target"))).toBe(0o666);
    expect(modeOf(join(outside, "shared"))).toBe(0o777);
    expect(modeOf(join(outside, "shared", "inner"))).toBe(0o666);
    // The links are still links, to the same places.
    expect(lstatSync(join(data, "link-to-dir")).isSymbolicLink()).toBe(true);
    expect(readlinkSync(join(data, "dangling"))).toBe(join(outside, "missing"));
    expect(result).toEqual({ checked: 5, changed: 2 });
  });

  test("a symlinked DATA_DIR itself is followed (a configured path may point at the real volume)", () => {
    const real = fresh();
    dir(real, 0o777);
    file(join(real, "f"), 0o666);
    const link = `${fresh()}-link`;
    symlinkSync(real, link);
    secureDataDir(link);
    expect(modeOf(real)).toBe(0o700);
    expect(modeOf(join(real, "f"))).toBe(0o600);
  });

  test("a missing DATA_DIR (and its missing parents) is created 0700, whatever the umask", () => {
    restoreUmask = process.umask(0o000);
    const data = join(fresh(), "nested", "data");
    expect(secureDataDir(data)).toEqual({ checked: 1, changed: 0 });
    expect(statSync(data).isDirectory()).toBe(true);
    expect(modeOf(data)).toBe(0o700);
  });

  test("DATA_DIR that is a file → an error naming it", () => {
    const path = fresh();
    file(path, 0o600);
    expect(() => secureDataDir(path)).toThrow(/is not a directory/);
  });
});

describe("privateUmask", () => {
  test("returns the previous umask; files and directories created afterwards have no group/other bits", () => {
    const before = process.umask(0o022);
    restoreUmask = before;
    expect(privateUmask()).toBe(0o022);
    expect(process.umask()).toBe(0o077);
    const data = fresh();
    mkdirSync(join(data, "sub"), { recursive: true });
    writeFileSync(join(data, "sub", "f"), "x"); // default mode 0666
    writeFileSync(join(data, "g"), "x", { mode: 0o777 });
    expect(modeOf(join(data, "sub"))).toBe(0o700);
    expect(modeOf(join(data, "sub", "f"))).toBe(0o600);
    expect(modeOf(join(data, "g"))).toBe(0o700);
  });

  test("a child process inherits it (the embedded nats-server creates its store under it)", async () => {
    restoreUmask = privateUmask();
    const data = fresh();
    mkdirSync(data, { mode: 0o700 });
    const proc = Bun.spawn(["sh", "-c", 'umask; mkdir "$1/d" && touch "$1/f"', "sh", data], {
      stdout: "pipe",
    });
    const out = await new Response(proc.stdout).text();
    expect(await proc.exited).toBe(0);
    expect(out.trim()).toBe("0077");
    expect(modeOf(join(data, "d"))).toBe(0o700);
    expect(modeOf(join(data, "f"))).toBe(0o600);
  });
});

describe("PGlite's files", () => {
  test("a new PGlite database has 0666/0644 files whatever the umask; secureDataDir after the open makes all private", async () => {
    restoreUmask = privateUmask();
    const data = fresh();
    secureDataDir(data);
    const pg = new PGlite(join(data, "pg"));
    await pg.query("create table t (x int primary key)");
    await pg.query("insert into t select generate_series(1, 1000)");
    await pg.close();
    // The umask is not enough: PGlite writes the initial database with explicit modes. (If this starts to
    // fail because PGlite fixed it, good: drop this expectation.)
    expect(exposed(data).length).toBeGreaterThan(0);
    const result = secureDataDir(data);
    expect(result.changed).toBeGreaterThan(0);
    expect(exposed(data)).toEqual([]);

    // Opened again: PGlite rewrites its relcache init files 0644; another pass after the open fixes them.
    const again = new PGlite(join(data, "pg"));
    await again.query("select count(*) from t");
    await again.close();
    const reopened = exposed(data);
    expect(reopened.every((line) => line.endsWith("pg_internal.init"))).toBe(true);
    secureDataDir(data);
    expect(exposed(data)).toEqual([]);
  }, 60_000);
});
