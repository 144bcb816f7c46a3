/** The service's CLI as a child process, for the tests that run it (fault harness, cluster, provisioning). */
import { join } from "node:path";
import { type ProcessResult, runProcess } from "./process.ts";

export const CLI = join(import.meta.dir, "../../src/cli.ts");

/** Runs the CLI to completion with exactly `env`: its stdout, stderr and exit code. */
export function runCli(env: Record<string, string>, ...args: string[]): Promise<ProcessResult> {
  return runProcess([process.execPath, CLI, ...args], { env });
}

/** `sequencer token --user <id> [--role reader|admin]` with `env` (its AUTH_SECRET): only the JWT on stdout. */
export async function cliToken(
  env: Record<string, string>,
  userId: string,
  role?: "reader" | "admin",
): Promise<string> {
  const { out, err, code } = await runCli(env, "token", "--user", userId, ...(role ? ["--role", role] : []));
  if (code !== 0) throw new Error(`token --user ${userId} failed (${code}): ${err}`);
  return out.trim();
}

/** A CLI child with its stdout collected as it arrives (stderr goes to the test's own). */
export type CliChild = { proc: ReturnType<typeof Bun.spawn>; stdout: () => string };

/**
 * Runs the CLI with `args`, env on top of PATH and quiet logs; OPS_PORT 0 puts the ops listener on any free port
 * (its default, 9464, may be taken on a test machine, or by another child of the same test).
 */
export function spawnCli(args: string[], env: Record<string, string>): CliChild {
  const proc = Bun.spawn([process.execPath, CLI, ...args], {
    env: { PATH: process.env.PATH ?? "", LOG_LEVEL: "warn", OPS_PORT: "0", ...env },
    stdout: "pipe",
    stderr: "inherit",
  });
  let out = "";
  (async () => {
    const reader = (proc.stdout as ReadableStream<Uint8Array>).getReader();
    const decoder = new TextDecoder();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      out += decoder.decode(value);
    }
  })();
  return { proc, stdout: () => out };
}

/** SIGTERM, then the exit code; SIGKILL and an error when the child has not exited within 20 s. */
export async function stopCli(child: CliChild): Promise<number> {
  child.proc.kill("SIGTERM");
  const timeout = Bun.sleep(20_000).then(() => "timeout" as const);
  const result = await Promise.race([child.proc.exited, timeout]);
  if (result === "timeout") {
    child.proc.kill("SIGKILL");
    throw new Error("service did not exit within 20 s of SIGTERM");
  }
  return result;
}
