/**
 * Waits `ms`, or less when `signal` aborts: a loop that backs off still stops at once on shutdown. Resolves either
 * way (never rejects), so the caller checks `signal.aborted` itself.
 */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    }
    signal?.addEventListener("abort", done, { once: true });
  });
}
