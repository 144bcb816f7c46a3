/**
 * Catch-up: makes TRADING hold exactly the log up to its head, before the sequencer takes work and after any
 * failure. TRADING is the log's outbox, so a crash after a commit and before (or during) its publish leaves
 * TRADING behind the log; catch-up republishes what it lacks, in order, in pages.
 *
 * TRADING ahead of the log means events were published that the log does not hold (a restored database, a
 * hand-published message), and TRADING's last message differing from the log's event at that position means
 * someone else's message took one of ours: sequencing on top of either would fork history, so both throw
 * TradingMismatchError (the sequencer then stops for good). The tail check is enough: each event's digest, which
 * its msg id carries, commits to every event before it.
 */
import type { Logger } from "../logger.ts";
import { TradingMismatchError } from "./errors.ts";
import type { EventStore, SequencerObserver, TradingLog } from "./ports.ts";

export type CatchUpDeps = {
  store: EventStore;
  trading: TradingLog;
  observer: SequencerObserver;
  log: Logger;
  /** Events read from the log and published per page. */
  pageSize: number;
};

/** Checks TRADING's tail against the log, whose last event is `head`, and publishes what TRADING lacks. */
export async function catchUpTrading(head: bigint, deps: CatchUpDeps): Promise<void> {
  const { store, trading, observer, log, pageSize } = deps;
  let published = await trading.lastSequence();
  if (published > head) {
    throw new TradingMismatchError(published, `TRADING is at ${published} but the database head is ${head}`);
  }
  if (published > 0n) {
    const stored = await store.find({ sequenceId: published });
    if (!stored) throw new Error(`event ${published} is missing from the database; cannot check TRADING`);
    await trading.verify(stored);
  }
  if (published < head)
    log.warn("republishing events missing from TRADING", { from: published + 1n, to: head });
  while (published < head) {
    const page = await store.readAfter(published, pageSize);
    const first = page[0];
    if (!first || first.sequenceId !== published + 1n) {
      throw new Error(`event ${published + 1n} is missing from the database; cannot republish`);
    }
    await trading.append(page);
    observer.catchUp(page.length);
    published = page[page.length - 1]?.sequenceId ?? published;
  }
}
