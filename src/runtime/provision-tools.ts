/**
 * Zero set-up on a fresh machine: finds `nats-server` and the PostgreSQL server binaries, and installs them with the
 * system's package manager when they are missing (apt-get as root or with password-less sudo, Homebrew on macOS).
 * Shared by `npm start` (embedded nats-server), the test preload and the benchmark, so all three decide the same way.
 *
 * Never downloads a binary itself: only the package manager installs, and only where the user may run it. Where it
 * cannot, callers get one line that says why and what to do instead.
 *
 * `planInstall` is the whole decision, pure and unit-tested; the rest only gathers facts and runs the plan.
 */
import { spawnSync } from "node:child_process";
import { existsSync, readdirSync } from "node:fs";
import { delimiter, join } from "node:path";

/** A system package: what to look for and what each package manager calls it. */
export type SystemPackage = {
  /** The executable that shows it is installed (looked up on PATH). */
  readonly binary: string;
  readonly apt: string;
  readonly brew: string;
};

export const NATS_SERVER: SystemPackage = { binary: "nats-server", apt: "nats-server", brew: "nats-server" };
/** `postgres` is not on PATH on Debian (it lives in /usr/lib/postgresql/<v>/bin), see `findPostgresBinDir`. */
export const POSTGRESQL: SystemPackage = { binary: "postgres", apt: "postgresql", brew: "postgresql@16" };
/** Test-only tools: the status page's browser test and the Prometheus rule/metrics checks. */
export const CHROMIUM: SystemPackage = { binary: "chromium", apt: "chromium", brew: "chromium" };
export const PROMTOOL: SystemPackage = { binary: "promtool", apt: "prometheus", brew: "prometheus" };

/** What provisioning can see about the machine. */
export type HostFacts = {
  platform: NodeJS.Platform;
  isRoot: boolean;
  hasAptGet: boolean;
  hasBrew: boolean;
  hasSudo: boolean;
  /** `sudo -n true` succeeds: sudo is there and needs no password. */
  sudoWithoutPassword: boolean;
};

export type InstallPlan =
  | {
      kind: "install";
      manager: "apt-get" | "brew";
      /** What the progress line says it runs, e.g. "sudo apt-get install nats-server". */
      summary: string;
      /** Runs first; when it fails and `refresh` is set, `refresh` runs and then `command` once more. */
      command: readonly string[];
      /** apt-get on a fresh machine has no package lists yet: `apt-get update` then retry. */
      refresh?: readonly string[];
    }
  | { kind: "impossible"; reason: string };

/** The decision: which package manager installs `pkg` here, and how; or why nothing can. Pure. */
export function planInstall(pkg: SystemPackage, host: HostFacts): InstallPlan {
  const brew = (): InstallPlan =>
    host.isRoot
      ? { kind: "impossible", reason: "Homebrew refuses to run as root" }
      : {
          kind: "install",
          manager: "brew",
          summary: `brew install ${pkg.brew}`,
          command: ["brew", "install", pkg.brew],
        };

  if (host.platform === "darwin") {
    return host.hasBrew ? brew() : { kind: "impossible", reason: "Homebrew (brew) is not installed" };
  }
  if (host.hasAptGet) {
    const sudo = host.isRoot ? [] : host.sudoWithoutPassword ? ["sudo", "-n"] : null;
    if (sudo === null) {
      // Linuxbrew installs without root; prefer it over asking for a password we cannot type.
      if (host.hasBrew) return brew();
      const why = host.hasSudo ? "sudo asks for a password" : "there is no sudo";
      return { kind: "impossible", reason: `apt-get needs root and ${why}` };
    }
    // Wait for a concurrent apt/dpkg run instead of failing on its lock.
    const apt = [
      ...sudo,
      "env",
      "DEBIAN_FRONTEND=noninteractive",
      "apt-get",
      "-o",
      "DPkg::Lock::Timeout=120",
    ];
    return {
      kind: "install",
      manager: "apt-get",
      summary: `${sudo.length > 0 ? "sudo " : ""}apt-get install ${pkg.apt}`,
      command: [...apt, "install", "-y", "-qq", "--no-install-recommends", pkg.apt],
      refresh: [...apt, "update", "-qq"],
    };
  }
  if (host.hasBrew) return brew();
  return { kind: "impossible", reason: "there is no apt-get or Homebrew to install it with" };
}

/**
 * Where package managers put executables (Debian's nats-server lands in /usr/sbin): searched after an install even
 * when PATH lacks them, and added to the package manager's own PATH so it finds its helpers (dpkg, ldconfig).
 */
const SYSTEM_BIN_DIRS = [
  "/usr/local/sbin",
  "/usr/local/bin",
  "/usr/sbin",
  "/usr/bin",
  "/sbin",
  "/bin",
  "/opt/homebrew/bin",
  "/home/linuxbrew/.linuxbrew/bin",
].join(delimiter);

/** Absolute path of `name` on `searchPath`, or null. */
export function findOnPath(name: string, searchPath: string = process.env.PATH ?? ""): string | null {
  for (const dir of searchPath.split(delimiter)) {
    if (dir === "") continue;
    const candidate = join(dir, name);
    if (existsSync(candidate)) return candidate;
  }
  return null;
}

export function hostFacts(): HostFacts {
  const hasSudo = findOnPath("sudo") !== null;
  return {
    platform: process.platform,
    isRoot: process.getuid?.() === 0,
    hasAptGet: findOnPath("apt-get") !== null,
    hasBrew: findOnPath("brew") !== null,
    hasSudo,
    sudoWithoutPassword:
      hasSudo && spawnSync("sudo", ["-n", "true"], { stdio: "ignore", timeout: 10_000 }).status === 0,
  };
}

/** nats-server (or PostgreSQL) is missing and cannot be installed here. The message is meant to be printed as is. */
export class ProvisionError extends Error {
  override readonly name = "ProvisionError";
}

/** One progress line per install, on stderr (stdout may be a pipe someone parses). */
export type ProvisionLog = { start(text: string): void; end(text: string): void };
export const STDERR_LOG: ProvisionLog = {
  start: (text) => process.stderr.write(text),
  end: (text) => process.stderr.write(`${text}\n`),
};

/** Runs the plan; returns null on success, else the tail of the failing command's output. */
function runPlan(plan: Extract<InstallPlan, { kind: "install" }>): string | null {
  const run = (argv: readonly string[]) => {
    const [cmd, ...args] = argv as [string, ...string[]];
    const r = spawnSync(cmd, args, {
      encoding: "utf8",
      env: { ...process.env, PATH: `${process.env.PATH ?? ""}${delimiter}${SYSTEM_BIN_DIRS}` },
      timeout: 900_000,
    });
    if (r.status === 0) return null;
    const output = `${r.stdout ?? ""}${r.stderr ?? ""}${r.error ? String(r.error) : ""}`.trim();
    return output.split("\n").slice(-3).join(" | ") || `exit status ${r.status}`;
  };
  const first = run(plan.command);
  if (first === null || plan.refresh === undefined) return first;
  return run(plan.refresh) ?? run(plan.command);
}

/**
 * Returns `find()` when it finds `pkg`; else installs it through the package manager, printing one line with what
 * it does and how long it took, and returns what `findAfterInstall()` (default `find()`) finds then. Throws
 * ProvisionError (one line, `advice` appended) when it cannot install or the install fails.
 */
export function installIfMissing<T>(
  pkg: SystemPackage,
  lookup: { find(): T | null; findAfterInstall?(): T | null },
  advice: string,
  options: { host?: HostFacts; log?: ProvisionLog } = {},
): T {
  const found = lookup.find();
  if (found !== null) return found;
  const plan = planInstall(pkg, options.host ?? hostFacts());
  if (plan.kind === "impossible") {
    throw new ProvisionError(`${pkg.binary} is not installed and ${plan.reason}: ${advice}`);
  }
  const log = options.log ?? STDERR_LOG;
  const started = performance.now();
  log.start(`${pkg.binary} not found: installing it with ${plan.summary} … `);
  const failure = runPlan(plan);
  const seconds = ((performance.now() - started) / 1000).toFixed(1);
  if (failure !== null) {
    log.end(`failed after ${seconds} s`);
    throw new ProvisionError(`installing ${pkg.binary} with ${plan.manager} failed (${failure}): ${advice}`);
  }
  const installed = (lookup.findAfterInstall ?? lookup.find)();
  if (installed === null) {
    log.end(`failed after ${seconds} s`);
    throw new ProvisionError(`${plan.manager} ran but ${pkg.binary} is still not to be found: ${advice}`);
  }
  log.end(`done in ${seconds} s`);
  return installed;
}

const NATS_ADVICE =
  "install nats-server with your package manager (apt-get install nats-server, brew install nats-server), " +
  "or run `docker compose up nats` and set NATS_URL=nats://127.0.0.1:4222, or set NATS_URL to a running server";

/**
 * The absolute path of `nats-server`, installing it first when it is not on PATH. Throws ProvisionError with one
 * line naming the three ways to get it when that is not possible.
 */
export function ensureNatsServer(options: { host?: HostFacts; log?: ProvisionLog } = {}): string {
  // Only PATH counts as present; a binary elsewhere is found after the (then quick) package-manager run.
  return installIfMissing(
    NATS_SERVER,
    {
      find: () => findOnPath(NATS_SERVER.binary),
      findAfterInstall: () =>
        findOnPath(NATS_SERVER.binary) ?? findOnPath(NATS_SERVER.binary, SYSTEM_BIN_DIRS),
    },
    NATS_ADVICE,
    options,
  );
}

/**
 * The directory holding PostgreSQL's server binaries (initdb, pg_ctl, postgres): PG_BIN, else the newest
 * /usr/lib/postgresql/<v>/bin (Debian, Ubuntu), else a Homebrew postgresql@<v>. Null when there is none.
 */
export function findPostgresBinDir(): string | null {
  const fromEnv = process.env.PG_BIN;
  if (fromEnv) return fromEnv;
  const candidates: { dir: string; version: number }[] = [];
  const collect = (
    root: string,
    versionOf: (entry: string) => string | null,
    bin: (entry: string) => string,
  ) => {
    if (!existsSync(root)) return;
    for (const entry of readdirSync(root)) {
      const version = versionOf(entry);
      if (version !== null && existsSync(join(bin(entry), "initdb"))) {
        candidates.push({ dir: bin(entry), version: Number.parseFloat(version) });
      }
    }
  };
  collect(
    "/usr/lib/postgresql",
    (e) => e,
    (e) => join("/usr/lib/postgresql", e, "bin"),
  );
  for (const brew of ["/opt/homebrew/opt", "/usr/local/opt", "/home/linuxbrew/.linuxbrew/opt"]) {
    collect(
      brew,
      (e) => /^postgresql@(\d+)$/.exec(e)?.[1] ?? null,
      (e) => join(brew, e, "bin"),
    );
  }
  candidates.sort((a, b) => b.version - a.version);
  return candidates[0]?.dir ?? null;
}

const POSTGRES_ADVICE = "install postgresql with your package manager, or set PG_BIN to its bin directory";

/**
 * PostgreSQL's server bin directory, installing the package first when there is none. Returns the directory, or
 * `{ unavailable }` with a one-line reason when it cannot be had (the caller decides what to do instead).
 */
export function ensurePostgresBinDir(
  options: { host?: HostFacts; log?: ProvisionLog } = {},
): { dir: string } | { unavailable: string } {
  try {
    const dir = installIfMissing(POSTGRESQL, { find: findPostgresBinDir }, POSTGRES_ADVICE, options);
    return { dir };
  } catch (error) {
    if (error instanceof ProvisionError) return { unavailable: error.message };
    throw error;
  }
}

/**
 * The absolute path of a test tool (`CHROMIUM`, `PROMTOOL`), installing its package when it is not on PATH. Returns
 * `{ unavailable }` with a one-line reason when it cannot be had; the test that needs it says so by name.
 */
export function ensureTestTool(
  pkg: SystemPackage,
  options: { host?: HostFacts; log?: ProvisionLog } = {},
): { path: string } | { unavailable: string } {
  try {
    const path = installIfMissing(
      pkg,
      {
        find: () => findOnPath(pkg.binary),
        findAfterInstall: () => findOnPath(pkg.binary) ?? findOnPath(pkg.binary, SYSTEM_BIN_DIRS),
      },
      `install ${pkg.apt} with your package manager`,
      options,
    );
    return { path };
  } catch (error) {
    if (error instanceof ProvisionError) return { unavailable: error.message };
    throw error;
  }
}
