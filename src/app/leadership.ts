/**
 * The sequencer role's outer loop: stand by until this process holds the writer lease, sequence until the lease
 * is lost or shutdown is asked, then either stand by again or stop. A standby takes no messages from the intake
 * stream, so nothing waits in a process that may not write.
 */
import type { Logger } from "../logger.ts";
import { sleep } from "./backoff.ts";
import type { WriterLease } from "./ports.ts";
import type { Sequencer } from "./sequencer.ts";

export type LeaderTerm = { sequencer: Sequencer; close(): Promise<void> };

export type LeadershipState = { leader: boolean; term: LeaderTerm | undefined };

export async function runWhileLeader(
  lease: WriterLease,
  startTerm: () => Promise<LeaderTerm>,
  shutdown: AbortSignal,
  log: Logger,
  state: LeadershipState,
): Promise<void> {
  while (!shutdown.aborted) {
    if (!(await lease.acquire(shutdown))) break;
    log.info("holding the writer lock: sequencing");
    const term = AbortSignal.any([shutdown, lease.lost]);
    try {
      state.term = await startTerm();
      state.leader = true;
      await state.term.sequencer.run(term);
    } catch (error) {
      log.error("sequencer term failed", { error });
    } finally {
      state.leader = false;
      await state.term?.close().catch((error) => log.warn("closing the intake consumer failed", { error }));
      state.term = undefined;
    }
    if (!shutdown.aborted) {
      // Lost the lease (or the term failed): give the old session's state a moment to clear, then stand by.
      await lease.release().catch(() => {});
      await sleep(500, shutdown);
    }
  }
}
