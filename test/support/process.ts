/** A child process run to completion, for the tests that run a command (the CLI, promtool, redocly, Deno). */

export type ProcessResult = { out: string; err: string; code: number };

export type RunOptions = {
  cwd?: string;
  /** Exactly the child's environment (default: this process's). */
  env?: Record<string, string | undefined>;
  stdin?: string;
  /** Killed with SIGKILL after this long (default 60 s), so a hung tool fails its test instead of the whole run. */
  timeoutMs?: number;
};

/** Runs `argv` and returns its whole stdout, stderr and exit code. */
export async function runProcess(argv: string[], options: RunOptions = {}): Promise<ProcessResult> {
  const proc = Bun.spawn(argv, {
    cwd: options.cwd,
    env: options.env ?? process.env,
    stdin: options.stdin === undefined ? "ignore" : new TextEncoder().encode(options.stdin),
    stdout: "pipe",
    stderr: "pipe",
  });
  const timer = setTimeout(() => proc.kill("SIGKILL"), options.timeoutMs ?? 60_000);
  try {
    const [out, err, code] = await Promise.all([
      new Response(proc.stdout).text(),
      new Response(proc.stderr).text(),
      proc.exited,
    ]);
    return { out, err, code };
  } finally {
    clearTimeout(timer);
  }
}
