/**
 * The FAILPOINT decorators (src/app/failpoints.ts): each named point is reached where a batch's life says, with
 * the head a fault test checks the crash window against, and the decorated ports still do what the real ones do.
 */
import { describe, expect, test } from "bun:test";
import { type Failpoint, withFailpoints } from "../../src/app/failpoints.ts";
import type {
  EventStore,
  IntakeMessage,
  IntakeSource,
  SequencedRecord,
  StoredEvent,
  TradingLog,
} from "../../src/app/ports.ts";
import { EMPTY_HEAD } from "../../src/domain/sequencing.ts";

type Reached = [Failpoint, bigint, string];

function fakes(trace: string[]) {
  const source: IntakeSource = {
    next: async (max) =>
      Array.from(
        { length: Math.min(max, 5) },
        (_, i): IntakeMessage => ({
          seq: i + 1,
          subject: "sequence.deposit",
          data: new Uint8Array(),
          ack: () => trace.push(`ack ${i + 1}`),
          working: () => trace.push(`working ${i + 1}`),
        }),
      ),
    close: async () => {},
  };
  const store: EventStore = {
    head: async () => ({ ...EMPTY_HEAD, sequenceId: 7n }),
    findStored: async () => ({ references: new Set(), idempotencyKeys: new Set() }),
    append: async (batch) => {
      trace.push(`append ${batch.length}`);
    },
    readAfter: async () => [],
    find: async () => null,
  };
  const trading: TradingLog = {
    lastSequence: async () => 6n,
    append: async (records) => {
      trace.push(`publish ${records.length}`);
    },
    verify: async () => {},
  };
  return { source, store, trading };
}

const stored = (sequenceId: bigint) => ({ event: { sequenceId } }) as StoredEvent;
const record = (sequenceId: bigint) => ({ sequenceId }) as SequencedRecord;

describe("failpoint decorators", () => {
  test("after-commit and after-publish follow the call, with the last committed and published sequenceId", async () => {
    const trace: string[] = [];
    const reached: Reached[] = [];
    const ports = withFailpoints(fakes(trace), (point, head) => reached.push([point, head, trace.join(",")]));
    await ports.store.head();
    await ports.store.append([], [], "");
    await ports.store.append([stored(8n), stored(9n)], [], "");
    await ports.trading.lastSequence();
    await ports.trading.append([]);
    await ports.trading.append([record(7n), record(8n), record(9n)]);
    expect(reached).toEqual([
      ["after-commit", 7n, "append 0"],
      ["after-commit", 9n, "append 0,append 2"],
      ["after-publish", 6n, "append 0,append 2,publish 0"],
      ["after-publish", 9n, "append 0,append 2,publish 0,publish 3"],
    ]);
  });

  test("mid-ack: after half of each batch's messages were acked, once per batch; a batch of one before its ack", async () => {
    const trace: string[] = [];
    const reached: Reached[] = [];
    const ports = withFailpoints(fakes(trace), (point, head) => reached.push([point, head, trace.join(",")]));
    await ports.trading.append([record(4n)]);
    reached.length = 0;
    const five = await ports.source.next(10, 0);
    for (const msg of five) msg.ack();
    five[0]?.ack(); // acked again (a redone batch): no second stop
    const one = await ports.source.next(1, 0);
    trace.length = 0;
    one[0]?.ack();
    one[0]?.working();
    expect(reached).toEqual([
      ["mid-ack", 4n, "publish 1,ack 1,ack 2"],
      ["mid-ack", 4n, ""],
    ]);
    expect(trace).toEqual(["ack 1", "working 1"]);
    expect(five.map((m) => m.seq)).toEqual([1, 2, 3, 4, 5]);
  });
});
