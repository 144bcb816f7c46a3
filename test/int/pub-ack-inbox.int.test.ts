/**
 * The shared PubAck inbox against a real nats-server: it resolves only on a PubAck that names the expected stream,
 * and every other answer — a JetStream error, no responders, the wrong stream, not JSON, no answer in time, a
 * connection that closes — rejects, exactly once, and leaves nothing pending. Plain core subscribers stand in for
 * a broker that answers wrongly or not at all.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { JetStreamApiError, jetstreamManager } from "@nats-io/jetstream";
import { headers } from "@nats-io/nats-core";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import {
  InvalidPubAckError,
  NoStreamRespondedError,
  PubAckInbox,
  PubAckTimeoutError,
} from "../../src/adapters/nats/pub-ack-inbox.ts";
import { INTAKE_STREAM } from "../../src/adapters/nats/topology.ts";
import { type NatsServerHandle, startNatsWithTopology } from "../support/services.ts";

let services: Awaited<ReturnType<typeof startNatsWithTopology>>;
let nats: NatsServerHandle;
let nc: NatsConnection;

beforeAll(async () => {
  services = await startNatsWithTopology();
  ({ nats, nc } = services);
});

afterAll(async () => {
  await services?.stop();
});

function intakeHeaders(msgId: string, stream = INTAKE_STREAM) {
  const h = headers();
  h.set("Nats-Msg-Id", msgId);
  h.set("Nats-Expected-Stream", stream);
  return h;
}

/** A core subscriber on `subject` that answers every request with `answer` (or never, for null). */
function responder(subject: string, answer: string | null, delayMs = 0) {
  const sub = nc.subscribe(subject, {
    callback: (_error, msg) => {
      if (answer === null) return;
      setTimeout(() => msg.respond(answer), delayMs);
    },
  });
  return { seen: sub, stop: () => sub.unsubscribe() };
}

async function lastSeq(): Promise<number> {
  return (await (await jetstreamManager(nc)).streams.info(INTAKE_STREAM)).state.last_seq;
}

describe("PubAckInbox", () => {
  test("resolves once JetStream stored the message; a repeated msg id is acknowledged and not stored twice", async () => {
    const inbox = new PubAckInbox(nc, INTAKE_STREAM, 5_000);
    const before = await lastSeq();
    await Promise.all(
      Array.from({ length: 200 }, (_, i) =>
        inbox.publish("sequence.create_order", `{"n":${i}}`, intakeHeaders(`inbox-a-${i}`)),
      ),
    );
    expect(await lastSeq()).toBe(before + 200);
    await inbox.publish("sequence.create_order", `{"n":7}`, intakeHeaders("inbox-a-7"));
    expect(await lastSeq()).toBe(before + 200);
    expect(inbox.pending).toBe(0);
  });

  test("a JetStream error in the answer rejects with nats.js's JetStreamApiError and its code", async () => {
    const inbox = new PubAckInbox(nc, INTAKE_STREAM, 5_000);
    const before = await lastSeq();
    const refused = inbox.publish("sequence.create_order", "{}", intakeHeaders("inbox-b-1", "NOT_SEQUENCE"));
    await expect(refused).rejects.toBeInstanceOf(JetStreamApiError);
    const error = (await refused.catch((e: unknown) => e)) as JetStreamApiError;
    expect(error.code).toBe(10060); // expected stream does not match
    expect(await lastSeq()).toBe(before);
    expect(inbox.pending).toBe(0);
  });

  test("no stream on the subject: rejects with NoStreamRespondedError", async () => {
    const inbox = new PubAckInbox(nc, INTAKE_STREAM, 5_000);
    await expect(
      inbox.publish("nobody.listens.here", "{}", intakeHeaders("inbox-c-1")),
    ).rejects.toBeInstanceOf(NoStreamRespondedError);
    expect(inbox.pending).toBe(0);
  });

  test("an answer naming another stream, or not JSON, rejects with InvalidPubAckError", async () => {
    const inbox = new PubAckInbox(nc, INTAKE_STREAM, 5_000);
    const other = responder("fake.other", '{"stream":"OTHER","seq":1}');
    const garbage = responder("fake.garbage", "not json");
    const empty = responder("fake.empty", "{}");
    try {
      await expect(inbox.publish("fake.other", "{}", intakeHeaders("d1"))).rejects.toBeInstanceOf(
        InvalidPubAckError,
      );
      await expect(inbox.publish("fake.garbage", "{}", intakeHeaders("d2"))).rejects.toBeInstanceOf(
        InvalidPubAckError,
      );
      await expect(inbox.publish("fake.empty", "{}", intakeHeaders("d3"))).rejects.toBeInstanceOf(
        InvalidPubAckError,
      );
      expect(inbox.pending).toBe(0);
    } finally {
      other.stop();
      garbage.stop();
      empty.stop();
    }
  });

  test("no answer within the timeout: rejects with PubAckTimeoutError, not much later; a late answer is ignored", async () => {
    const inbox = new PubAckInbox(nc, INTAKE_STREAM, 200);
    const silent = responder("fake.silent", null);
    const late = responder("fake.late", `{"stream":"${INTAKE_STREAM}","seq":1}`, 400);
    try {
      const started = performance.now();
      await expect(inbox.publish("fake.silent", "{}", intakeHeaders("e1"))).rejects.toBeInstanceOf(
        PubAckTimeoutError,
      );
      const waited = performance.now() - started;
      expect(waited).toBeGreaterThanOrEqual(195);
      expect(waited).toBeLessThan(200 + 50 + 200); // a quarter of the timeout late at most, plus scheduling
      await expect(inbox.publish("fake.late", "{}", intakeHeaders("e2"))).rejects.toBeInstanceOf(
        PubAckTimeoutError,
      );
      await Bun.sleep(300); // the late answer arrives now and finds nobody waiting
      expect(inbox.pending).toBe(0);
      // The inbox still works after both.
      await inbox.publish("sequence.create_order", "{}", intakeHeaders("inbox-e-3"));
    } finally {
      silent.stop();
      late.stop();
    }
  });

  test("a connection that closes rejects every publish still waiting, at once", async () => {
    const own = await connect({ servers: nats.url });
    const inbox = new PubAckInbox(own, INTAKE_STREAM, 30_000);
    const silent = responder("fake.closing", null);
    await nc.flush(); // the responder is subscribed before the other connection publishes
    try {
      const waiting = Array.from({ length: 5 }, (_, i) =>
        inbox.publish("fake.closing", "{}", intakeHeaders(`f${i}`)).then(
          () => "resolved",
          (error: unknown) => (error instanceof Error ? error.name : "?"),
        ),
      );
      await Bun.sleep(100);
      expect(inbox.pending).toBe(5);
      const started = performance.now();
      await own.close();
      const outcomes = await Promise.all(waiting);
      expect(performance.now() - started).toBeLessThan(2_000);
      expect(outcomes.every((o) => o !== "resolved")).toBe(true);
      expect(inbox.pending).toBe(0);
      // A publish on the closed connection is refused, not left waiting.
      await expect(inbox.publish("sequence.create_order", "{}", intakeHeaders("f9"))).rejects.toThrow();
      expect(inbox.pending).toBe(0);
    } finally {
      silent.stop();
    }
  });

  test("answers come back under the connection's own inbox prefix (the only subjects a role may subscribe)", async () => {
    const own = await connect({ servers: nats.url, inboxPrefix: "_INBOX_api" });
    const replies: string[] = [];
    const sub = nc.subscribe("fake.prefix", {
      callback: (_error, msg) => {
        replies.push(msg.reply ?? "");
        msg.respond(`{"stream":"${INTAKE_STREAM}","seq":1}`);
      },
    });
    try {
      await nc.flush();
      await new PubAckInbox(own, INTAKE_STREAM, 5_000).publish("fake.prefix", "{}", intakeHeaders("g1"));
      expect(replies).toHaveLength(1);
      expect(replies[0]?.startsWith("_INBOX_api.")).toBe(true);
    } finally {
      sub.unsubscribe();
      await own.close();
    }
  });
});
