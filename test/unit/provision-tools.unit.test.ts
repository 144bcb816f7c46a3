/**
 * The provisioning decision (which package manager installs nats-server or PostgreSQL here, and how), without
 * running anything. The integration test (test/int/provision-tools.int.test.ts) runs it for real in a clean PATH.
 */
import { describe, expect, test } from "bun:test";
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";
import {
  CHROMIUM,
  ensureTestTool,
  findOnPath,
  type HostFacts,
  installIfMissing,
  NATS_SERVER,
  POSTGRESQL,
  PROMTOOL,
  ProvisionError,
  type ProvisionLog,
  planInstall,
} from "../../src/runtime/provision-tools.ts";

const linux: HostFacts = {
  platform: "linux",
  isRoot: false,
  hasAptGet: false,
  hasBrew: false,
  hasSudo: false,
  sudoWithoutPassword: false,
};

describe("planInstall", () => {
  test("Debian as root: apt-get directly, with apt-get update as the retry for a fresh machine", () => {
    const plan = planInstall(NATS_SERVER, { ...linux, isRoot: true, hasAptGet: true });
    expect(plan.kind).toBe("install");
    if (plan.kind !== "install") return;
    expect(plan.manager).toBe("apt-get");
    expect(plan.summary).toBe("apt-get install nats-server");
    expect(plan.command[0]).toBe("env");
    expect(plan.command.slice(-5)).toEqual([
      "install",
      "-y",
      "-qq",
      "--no-install-recommends",
      "nats-server",
    ]);
    expect(plan.refresh?.slice(-2)).toEqual(["update", "-qq"]);
  });

  test("Debian as a user with password-less sudo: sudo -n apt-get", () => {
    const plan = planInstall(POSTGRESQL, {
      ...linux,
      hasAptGet: true,
      hasSudo: true,
      sudoWithoutPassword: true,
    });
    expect(plan.kind === "install" && plan.command.slice(0, 2)).toEqual(["sudo", "-n"]);
    expect(plan.kind === "install" && plan.summary).toBe("sudo apt-get install postgresql");
    expect(plan.kind === "install" && plan.command.at(-1)).toBe("postgresql");
    expect(plan.kind === "install" && plan.refresh?.slice(0, 2)).toEqual(["sudo", "-n"]);
  });

  test("Debian as a user whose sudo wants a password: impossible, unless Linuxbrew is there", () => {
    const plan = planInstall(NATS_SERVER, { ...linux, hasAptGet: true, hasSudo: true });
    expect(plan).toEqual({ kind: "impossible", reason: "apt-get needs root and sudo asks for a password" });
    expect(planInstall(NATS_SERVER, { ...linux, hasAptGet: true })).toEqual({
      kind: "impossible",
      reason: "apt-get needs root and there is no sudo",
    });
    const brew = planInstall(NATS_SERVER, { ...linux, hasAptGet: true, hasBrew: true });
    expect(brew).toEqual({
      kind: "install",
      manager: "brew",
      summary: "brew install nats-server",
      command: ["brew", "install", "nats-server"],
    });
  });

  test("macOS: Homebrew, with the formula name of the package", () => {
    const mac: HostFacts = { ...linux, platform: "darwin", hasBrew: true };
    expect(planInstall(NATS_SERVER, mac)).toEqual({
      kind: "install",
      manager: "brew",
      summary: "brew install nats-server",
      command: ["brew", "install", "nats-server"],
    });
    expect(planInstall(POSTGRESQL, mac)).toEqual({
      kind: "install",
      manager: "brew",
      summary: "brew install postgresql@16",
      command: ["brew", "install", "postgresql@16"],
    });
  });

  test("macOS without Homebrew, or as root: impossible, saying why", () => {
    expect(planInstall(NATS_SERVER, { ...linux, platform: "darwin" })).toEqual({
      kind: "impossible",
      reason: "Homebrew (brew) is not installed",
    });
    expect(planInstall(NATS_SERVER, { ...linux, platform: "darwin", hasBrew: true, isRoot: true })).toEqual({
      kind: "impossible",
      reason: "Homebrew refuses to run as root",
    });
  });

  test("no package manager at all: impossible", () => {
    expect(planInstall(NATS_SERVER, { ...linux, isRoot: true })).toEqual({
      kind: "impossible",
      reason: "there is no apt-get or Homebrew to install it with",
    });
  });

  test("apt-get wins over Linuxbrew when both exist and apt-get may run", () => {
    const plan = planInstall(NATS_SERVER, { ...linux, isRoot: true, hasAptGet: true, hasBrew: true });
    expect(plan.kind === "install" && plan.manager).toBe("apt-get");
  });
});

describe("findOnPath", () => {
  test("finds an executable in the first PATH entry that has it, and nothing where none has it", () => {
    const a = mkdtempSync(join(tmpdir(), "prov-a-"));
    const b = mkdtempSync(join(tmpdir(), "prov-b-"));
    try {
      for (const dir of [a, b]) {
        writeFileSync(join(dir, "tool"), "#!/bin/sh\n");
        chmodSync(join(dir, "tool"), 0o755);
      }
      expect(findOnPath("tool", [a, b].join(delimiter))).toBe(join(a, "tool"));
      expect(findOnPath("tool", ["", b].join(delimiter))).toBe(join(b, "tool"));
      expect(findOnPath("absent-tool", [a, b].join(delimiter))).toBeNull();
    } finally {
      rmSync(a, { recursive: true, force: true });
      rmSync(b, { recursive: true, force: true });
    }
  });
});

describe("installIfMissing", () => {
  const lines: string[] = [];
  const log: ProvisionLog = { start: (t) => lines.push(t), end: (t) => lines.push(t) };

  test("already present: returns what find() finds, runs and prints nothing", () => {
    lines.length = 0;
    const found = installIfMissing(NATS_SERVER, { find: () => "/usr/bin/nats-server" }, "advice", {
      host: { ...linux, isRoot: true, hasAptGet: true },
      log,
    });
    expect(found).toBe("/usr/bin/nats-server");
    expect(lines).toEqual([]);
  });

  test("missing and impossible: one line with the reason and the advice, nothing printed before", () => {
    lines.length = 0;
    let error: unknown;
    try {
      installIfMissing(NATS_SERVER, { find: () => null }, "set NATS_URL", {
        host: linux,
        log,
      });
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ProvisionError);
    const message = (error as Error).message;
    expect(message).toBe(
      "nats-server is not installed and there is no apt-get or Homebrew to install it with: set NATS_URL",
    );
    expect(message).not.toContain("\n");
    expect(lines).toEqual([]);
  });
});

describe("ensureTestTool", () => {
  test("the browser and promtool come from Debian's chromium and prometheus packages", () => {
    const root: HostFacts = { ...linux, isRoot: true, hasAptGet: true };
    const chromium = planInstall(CHROMIUM, root);
    const promtool = planInstall(PROMTOOL, root);
    expect(chromium.kind === "install" && chromium.summary).toBe("apt-get install chromium");
    expect(promtool.kind === "install" && promtool.summary).toBe("apt-get install prometheus");
  });

  test("a tool that cannot be installed is an answer with the reason, not a throw", () => {
    const missing = { ...PROMTOOL, binary: "promtool-that-does-not-exist" };
    const result = ensureTestTool(missing, { host: linux, log: { start() {}, end() {} } });
    expect(result).toEqual({
      unavailable:
        "promtool-that-does-not-exist is not installed and there is no apt-get or Homebrew to install it with: " +
        "install prometheus with your package manager",
    });
  });
});
