/**
 * FAILPOINT (tests only): what happens at the named point (src/app/failpoints.ts decorates the sequencer's ports to
 * call it) — die abruptly (SIGKILL, no cleanup) as a crash would, or, with FAILPOINT_STALL, block the event loop
 * that long there, once, as a hung process would.
 */
import type { FailpointHook } from "../app/failpoints.ts";
import type { Config } from "../config.ts";
import type { Logger } from "../logger.ts";

/** The hook FAILPOINT asks for; undefined when it is unset. Counts the points reached from its creation on. */
export function failpointHook(
  config: Pick<Config, "failpoint" | "failpointAfter" | "failpointStallMs">,
  log: Logger,
): FailpointHook | undefined {
  const { failpoint, failpointAfter, failpointStallMs } = config;
  if (!failpoint) return undefined;
  let reached = 0;
  return (point, head) => {
    if (point !== failpoint || ++reached < failpointAfter) return;
    if (failpointStallMs !== undefined) {
      if (reached !== failpointAfter) return;
      log.error("FAILPOINT reached: blocking the event loop", { failpoint, ms: failpointStallMs });
      const until = Date.now() + failpointStallMs;
      while (Date.now() < until) {
        // Busy on purpose: no timer, no I/O, no heartbeat runs meanwhile.
      }
      log.error("FAILPOINT: event loop free again", { failpoint, head: head.toString() });
      return;
    }
    log.error("FAILPOINT reached: killing this process", {
      failpoint,
      batch: reached,
      head: head.toString(),
    });
    process.kill(process.pid, "SIGKILL");
  };
}
