/**
 * Waiting in tests and scripts, one copy for every tier: `until` polls for a value, `waitFor` for a yes,
 * `within` bounds how long one step may take, and `sleep` is the service's own (src/app/sleep.ts).
 */
import { sleep } from "../../src/app/sleep.ts";

export { sleep };

/**
 * Polls `probe` every `intervalMs` until it gives a value other than undefined, and returns that value. A throw
 * counts as "not yet". After `timeoutMs` it fails naming `what`, the probe's last error and `describe()`'s dump
 * of the state; `hopeless`, asked before each probe, gives a reason to fail at once (e.g. the process exited).
 */
export async function until<T>(
  what: string,
  probe: () => Promise<T | undefined>,
  timeoutMs = 60_000,
  intervalMs = 100,
  describe?: () => Promise<string>,
  hopeless?: () => string | undefined,
): Promise<T> {
  const state = async () =>
    describe ? `\n${await describe().catch((error) => `(state unavailable: ${error})`)}` : "";
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    const reason = hopeless?.();
    if (reason !== undefined) throw new Error(`gave up waiting for ${what}: ${reason}${await state()}`);
    const value = await probe().catch((error) => {
      lastError = error;
      return undefined;
    });
    if (value !== undefined) return value;
    if (Date.now() > deadline) {
      const last = lastError === undefined ? "" : ` (last error: ${lastError})`;
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last}${await state()}`);
    }
    await sleep(intervalMs);
  }
}

/** Polls a yes-or-no `check` until it says yes (see `until`; a throw counts as "no"). */
export async function waitFor(
  what: string,
  check: () => Promise<boolean>,
  timeoutMs = 20_000,
  intervalMs = 50,
): Promise<void> {
  await until(what, async () => ((await check()) ? true : undefined), timeoutMs, intervalMs);
}

/** Fails unless `work` settles within `ms`: a call left waiting forever, or a reconnect that stalls. */
export async function within<T>(ms: number, what: string, work: Promise<T> | (() => Promise<T>)): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not settle within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([typeof work === "function" ? work() : work, late]);
  } finally {
    clearTimeout(timer);
  }
}
