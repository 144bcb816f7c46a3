/**
 * Fault injection for tests (FAILPOINT in src/config.ts): decorators of the sequencer's three ports that call a
 * hook at named points of a batch's life, wired at composition (src/service.ts) only when FAILPOINT is set. The
 * hook (die by SIGKILL, or block the event loop) is the composition's; the sequencer knows nothing of it.
 *
 * - "after-commit": an append to the log resolved (every append counts, also one with nothing new to store);
 * - "after-publish": a publish to TRADING resolved (every batch's, also an empty one, and each catch-up page);
 * - "mid-ack": half of a batch's messages were acked (before the ack of message ⌊n/2⌋, counted per batch as
 *   taken from the source; a batch of one stops before its only ack).
 *
 * `head` is the last sequenceId at that point: the last committed for "after-commit", the last published for
 * the other two (what a test checks the crash window against).
 */
import type { EventStore, IntakeMessage, IntakeSource, TradingLog } from "./ports.ts";

export type Failpoint = "after-commit" | "after-publish" | "mid-ack";
export type FailpointHook = (point: Failpoint, head: bigint) => void;

export type FailpointPorts = { source: IntakeSource; store: EventStore; trading: TradingLog };

export function withFailpoints(ports: FailpointPorts, hook: FailpointHook): FailpointPorts {
  let committed = 0n;
  let published = 0n;
  const { source, store, trading } = ports;
  const failingStore: EventStore = {
    head: async () => {
      const head = await store.head();
      committed = head.sequenceId;
      return head;
    },
    findStored: (referenceIds, idempotencyKeys) => store.findStored(referenceIds, idempotencyKeys),
    append: async (batch, rejected, chainedFrom) => {
      await store.append(batch, rejected, chainedFrom);
      committed = batch[batch.length - 1]?.event.sequenceId ?? committed;
      hook("after-commit", committed);
    },
    readAfter: (after, limit) => store.readAfter(after, limit),
    find: (by) => store.find(by),
  };
  const failingTrading: TradingLog = {
    lastSequence: async () => {
      published = await trading.lastSequence();
      return published;
    },
    append: async (records) => {
      await trading.append(records);
      published = records[records.length - 1]?.sequenceId ?? published;
      hook("after-publish", published);
    },
    verify: (record) => trading.verify(record),
  };
  const failingSource: IntakeSource = {
    next: async (max, waitMs) => {
      const batch = await source.next(max, waitMs);
      const half = Math.floor(batch.length / 2);
      let acked = 0;
      return batch.map(
        (msg): IntakeMessage => ({
          seq: msg.seq,
          subject: msg.subject,
          data: msg.data,
          ack() {
            if (acked++ === half) hook("mid-ack", published);
            msg.ack();
          },
          working: () => msg.working(),
        }),
      );
    },
    close: () => source.close(),
  };
  return { source: failingSource, store: failingStore, trading: failingTrading };
}
