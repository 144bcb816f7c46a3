/**
 * Baseline for the drain: the naive sequencer loop, one stage at a time, nothing overlapped:
 *
 *   fetch up to 1000 from the `sequencer` consumer → decode → filter what is stored (one query) → number them
 *   (the pure domain rule) → one transaction with a multi-row insert → publish each to TRADING with its own
 *   PubAck (msgID = sequenceId, expected last sequence = sequenceId − 1; all of a batch in flight at once, every
 *   ack checked) → ack each intake message → next fetch.
 *
 * Same guarantees as the real sequencer in normal operation (it has no crash recovery: it is a yardstick). It
 * reuses the domain codec and DrizzleEventStore, not the Sequencer class. Runs until SIGTERM.
 * Env: NATS_URL (NATS_USER + NATS_PASSWORD on an authenticated broker), DATABASE_URL (a fresh database; migrated here). SEQUENCE/TRADING must exist (ensureTopology).
 */
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type JsMsg, jetstream } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { openDatabase } from "../../../src/adapters/db/client.ts";
import { DrizzleEventStore } from "../../../src/adapters/db/event-store.ts";
import { DigestChain } from "../../../src/app/log-digest.ts";
import type { RejectedMessage, StoredEvent } from "../../../src/app/ports.ts";
import { decodeIntakeEvent, encodeSequencedEvent, type IntakeEvent } from "../../../src/domain/events.ts";
import { sequenceBatch } from "../../../src/domain/sequencing.ts";
import { exitWithParent, fail, natsUserFromEnv, requireEnv } from "./common.ts";

const BATCH = 1000;

async function main(): Promise<void> {
  exitWithParent();
  const nc = await connect({ servers: requireEnv("NATS_URL"), ...natsUserFromEnv() });
  const js = jetstream(nc);
  const database = await openDatabase({
    url: requireEnv("DATABASE_URL"),
    pgliteDir: join(mkdtempSync(join(tmpdir(), "naive-")), "unused"),
  });
  await database.migrate();
  const store = new DrizzleEventStore(database.db);
  const consumer = await js.consumers.get("SEQUENCE", "sequencer");
  let head = await store.head();
  let stopping = false;
  process.on("SIGTERM", () => {
    stopping = true;
  });
  const decoder = new TextDecoder();
  // Wall time per stage, printed on exit (NAIVE_STATS) so the bench can show where the loop spends it.
  const stats = { batches: 0, events: 0, fetchMs: 0, filterMs: 0, transactionMs: 0, publishMs: 0, ackMs: 0 };
  let mark = performance.now();
  const lap = (stage: "fetchMs" | "filterMs" | "transactionMs" | "publishMs" | "ackMs") => {
    const now = performance.now();
    stats[stage] += now - mark;
    mark = now;
  };

  while (!stopping) {
    mark = performance.now();
    const batch: JsMsg[] = [];
    for await (const msg of await consumer.fetch({ max_messages: BATCH, expires: 1_000 })) batch.push(msg);
    if (batch.length === 0) continue;
    lap("fetchMs");

    const valid: IntakeEvent[] = [];
    const rejected: RejectedMessage[] = [];
    for (const msg of batch) {
      const decoded = decodeIntakeEvent(msg.data);
      if (decoded.ok) valid.push(decoded.event);
      else
        rejected.push({
          streamSeq: BigInt(msg.seq),
          subject: msg.subject,
          reason: decoded.reason,
          data: decoder.decode(msg.data).replaceAll("\u0000", "\\u0000"),
        });
    }
    const keys = valid.flatMap((e) => (e.idempotencyKey === undefined ? [] : [e.idempotencyKey]));
    const stored = await store.findStored(
      valid.map((e) => e.referenceId),
      keys,
    );
    const result = sequenceBatch(
      head,
      valid,
      (id) => stored.references.has(id),
      new Date().toISOString(),
      (key) => stored.idempotencyKeys.has(key),
    );
    // The log's digest chain is part of the schema (digest not null, checked by the append), so the baseline
    // computes it too.
    const chain = new DigestChain(head.digest);
    const toStore: StoredEvent[] = result.sequenced.map((event) => {
      const payload = encodeSequencedEvent(event);
      return { event, payload, digest: chain.next(payload) };
    });
    lap("filterMs");
    await store.append(toStore, rejected, head.digest);
    head = { ...result.head, digest: chain.head };
    lap("transactionMs");

    const acks = await Promise.all(
      toStore.map(({ event, payload }) =>
        js.publish(`trading.${event.type.toLowerCase()}`, payload, {
          msgID: event.sequenceId.toString(),
          expect: { streamName: "TRADING", lastSequence: Number(event.sequenceId - 1n) },
          timeout: 5_000,
        }),
      ),
    );
    acks.forEach((ack, i) => {
      const expected = toStore[i]?.event.sequenceId;
      if (BigInt(ack.seq) !== expected) throw new Error(`TRADING stored ${expected} at ${ack.seq}`);
    });
    lap("publishMs");
    for (const msg of batch) msg.ack();
    lap("ackMs");
    stats.batches++;
    stats.events += toStore.length;
  }
  process.stdout.write(`NAIVE_STATS ${JSON.stringify(stats)}\n`);
  await nc.drain();
  await database.close();
  process.exit(0);
}

main().catch((error) => fail("naive sequencer", error));
