/** The service's CLI as a child process, for the tests that run it (fault harness, cluster, provisioning). */
import { join } from "node:path";

export const CLI = join(import.meta.dir, "../../src/cli.ts");

/** `sequencer token --user <id>` with `env` (its AUTH_SECRET): only the JWT on stdout. */
export async function cliToken(env: Record<string, string>, userId: string): Promise<string> {
  const proc = Bun.spawn([process.execPath, CLI, "token", "--user", userId], {
    env,
    stdout: "pipe",
    stderr: "pipe",
  });
  const [out, err, code] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited,
  ]);
  if (code !== 0) throw new Error(`token --user ${userId} failed (${code}): ${err}`);
  return out.trim();
}
