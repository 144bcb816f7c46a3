/**
 * `npm start` on a machine whose PATH has no nats-server, run for real: the CLI is started with a PATH that holds
 * only what each case needs (a temp dir of symlinks), so the provisioning module sees a "fresh machine".
 * - no package manager on PATH: `serve` stops at once with one line naming the three ways to get nats-server, exit
 *   code 69, and nothing started (no store written, the HTTP port never opened);
 * - apt-get on PATH (this machine as root, as in CI): `serve` installs nats-server through apt-get — a quick no-op
 *   when the package is already there, found outside PATH afterwards — prints one line saying so and how long it
 *   took, and the service comes up and takes an order. Without root or password-less sudo it must instead refuse
 *   in one line.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readdirSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { canConnect } from "../../src/runtime/loopback.ts";
import { findOnPath, hostFacts } from "../../src/runtime/provision-tools.ts";
import { CLI } from "../support/cli.ts";
import { freePort } from "../support/services.ts";

const dirs: string[] = [];
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

function tempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  dirs.push(dir);
  return dir;
}

/** A PATH of one directory holding symlinks to exactly `tools` (those that exist on this machine). */
function cleanPath(tools: string[]): string {
  const dir = tempDir("clean-path-");
  for (const tool of tools) {
    const real = findOnPath(tool);
    if (real !== null) symlinkSync(real, join(dir, tool));
  }
  return dir;
}

function serve(path: string, port: number, dataDir: string) {
  const proc = Bun.spawn([process.execPath, CLI, "serve"], {
    env: {
      PATH: path,
      HOME: tempDir("prov-home-"),
      LOG_LEVEL: "warn",
      PORT: String(port),
      DATA_DIR: dataDir,
    },
    stdout: "pipe",
    stderr: "pipe",
  });
  const collect = (stream: ReadableStream<Uint8Array>) => {
    const text = { value: "" };
    void (async () => {
      const decoder = new TextDecoder();
      for await (const chunk of stream) text.value += decoder.decode(chunk);
    })();
    return text;
  };
  return { proc, stdout: collect(proc.stdout), stderr: collect(proc.stderr) };
}

async function stop(proc: Bun.Subprocess): Promise<number | null> {
  if (proc.exitCode !== null) return proc.exitCode;
  proc.kill("SIGTERM");
  const exited = await Promise.race([proc.exited, Bun.sleep(20_000).then(() => null)]);
  if (exited === null) proc.kill("SIGKILL");
  return exited;
}

describe("npm start without nats-server on PATH", () => {
  test("no package manager: one line naming the three ways, exit 69, nothing started", async () => {
    const port = await freePort();
    const dataDir = tempDir("prov-none-");
    const child = serve(cleanPath([]), port, dataDir);
    const code = await Promise.race([child.proc.exited, Bun.sleep(30_000).then(() => "timeout" as const)]);
    if (code === "timeout") child.proc.kill("SIGKILL");
    expect(code).toBe(69);
    await Bun.sleep(50); // let the pipes drain
    const lines = child.stderr.value.trim().split("\n");
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain("nats-server is not installed and there is no apt-get or Homebrew");
    expect(lines[0]).toContain("package manager");
    expect(lines[0]).toContain("docker compose up nats");
    expect(lines[0]).toContain("NATS_URL");
    expect(child.stdout.value).toBe("");
    // Nothing half-started: no broker store, no database, no auth secret, no listener.
    expect(readdirSync(dataDir)).toEqual([]);
    expect(await canConnect(port)).toBe(false);
  });

  const apt = findOnPath("apt-get") !== null && process.platform === "linux";
  test.skipIf(!apt)(
    "apt-get on PATH: installs (or refuses without root) in one line, then the service takes an order (needs apt-get)",
    async () => {
      const facts = hostFacts();
      const mayInstall = facts.isRoot || facts.sudoWithoutPassword;
      const port = await freePort();
      const dataDir = tempDir("prov-apt-");
      // apt-get (and sudo, for a non-root run) only: no nats-server anywhere on this PATH.
      const path = cleanPath(["apt-get", "sudo"]);
      expect(findOnPath("nats-server", path)).toBeNull();
      const child = serve(path, port, dataDir);
      try {
        if (!mayInstall) {
          expect(await child.proc.exited).toBe(69);
          expect(child.stderr.value.trim().split("\n")).toHaveLength(1);
          expect(child.stderr.value).toContain("nats-server is not installed and apt-get needs root");
          expect(child.stderr.value).toContain("docker compose up nats");
          return;
        }
        const deadline = Date.now() + 300_000;
        while (!child.stdout.value.includes("curl -sS -X POST")) {
          if (child.proc.exitCode !== null)
            throw new Error(`serve exited ${child.proc.exitCode}: ${child.stderr.value}`);
          if (Date.now() > deadline) throw new Error(`no banner; stderr: ${child.stderr.value}`);
          await Bun.sleep(100);
        }
        const provisioning = child.stderr.value
          .split("\n")
          .filter((l) => l.includes("nats-server not found"));
        expect(provisioning).toHaveLength(1);
        expect(provisioning[0]).toMatch(
          /^nats-server not found: installing it with apt-get install nats-server … done in \d+\.\d s$/,
        );
        expect(existsSync(join(dataDir, "nats"))).toBe(true);
        const token = /Bearer ([\w.-]+)/.exec(child.stdout.value)?.[1] ?? "";
        const res = await fetch(`http://127.0.0.1:${port}/orders`, {
          method: "POST",
          headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
          body: JSON.stringify({ direction: "BUY", price: "100.5", quantity: "2" }),
        });
        expect(res.status).toBe(202);
        expect(await stop(child.proc)).toBe(0);
      } finally {
        if (child.proc.exitCode === null) child.proc.kill("SIGKILL");
      }
    },
    320_000,
  );
});
