/**
 * The sequencer's intake consumer (src/adapters/nats/intake-consumer.ts) on a real nats-server: batches carry each
 * message's stream sequence (read from its ack subject's bytes), a message handed back unacked at close comes to
 * the next consumer again as a redelivery (counted) with the same sequence, and an acked one does not.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { jetstream } from "@nats-io/jetstream";
import { JetStreamIntakeSource } from "../../src/adapters/nats/intake-consumer.ts";
import { startNatsWithTopology } from "../support/services.ts";

let env: Awaited<ReturnType<typeof startNatsWithTopology>>;
beforeAll(async () => {
  // A short ack_wait bounds how late the handed-back message can come. close() naks it with a delay meant to let the
  // closed consumer's last pull expire first; once (CI, 2026-12-01, a loaded machine) it still had not come back
  // after 10 s — handed to that pull, or the delay not honoured — and with the default 30 s it then waits out ack_wait.
  env = await startNatsWithTopology({ ackWaitMs: 3_000 });
});
afterAll(async () => {
  await env.stop();
});

test("stream sequences from the ack subject; an unacked message comes back once as a redelivery", async () => {
  const js = jetstream(env.nc);
  for (let i = 1; i <= 3; i++) {
    const ack = await js.publish("sequence.create_order", `{"n":${i}}`, { msgID: `ref-${i}` });
    expect(ack.seq).toBe(i);
  }
  let redelivered = 0;
  // Short pulls: close() naks with a delay of the pull's lifetime + 1 s, so the message comes back in ~2 s.
  const first = await JetStreamIntakeSource.open(js, 10, {
    pullExpiresMs: 1_000,
    onRedelivered: () => redelivered++,
  });
  const batch = await first.next(10, 5_000);
  expect(batch.map((m) => m.seq)).toEqual([1, 2, 3]);
  expect(batch.map((m) => new TextDecoder().decode(m.data))).toEqual(['{"n":1}', '{"n":2}', '{"n":3}']);
  expect(redelivered).toBe(0);
  batch[0]?.ack();
  batch[2]?.ack();
  await first.close();

  const second = await JetStreamIntakeSource.open(js, 10, {
    pullExpiresMs: 1_000,
    onRedelivered: () => redelivered++,
  });
  try {
    const again = await second.next(10, 10_000);
    expect(again.map((m) => m.seq)).toEqual([2]);
    expect(redelivered).toBe(1);
    again[0]?.ack();
    expect(await second.next(10, 500)).toEqual([]);
  } finally {
    await second.close();
  }
}, 30_000);
