/**
 * The intake publisher against a real nats-server: publishes started in one event-loop turn are gathered and sent
 * together (one socket write instead of one each), and each still resolves only on its own PubAck, at its own
 * stream position, exactly once. A connection that drops while a publish waits for the end of the turn refuses it
 * (503 upstream) and nothing is written.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { JetStreamIntakePublisher, NotConnectedError } from "../../src/adapters/nats/intake-publisher.ts";
import { INTAKE_STREAM } from "../../src/adapters/nats/topology.ts";
import { decodeIntakeEvent } from "../../src/domain/events.ts";
import { startNatsWithTopology } from "../support/services.ts";
import { makeOrder } from "../support/stack.ts";

let services: Awaited<ReturnType<typeof startNatsWithTopology>>;
let nc: NatsConnection;

beforeAll(async () => {
  services = await startNatsWithTopology();
  nc = services.nc;
});

afterAll(async () => {
  await services?.stop();
});

async function storedReferenceIds(): Promise<string[]> {
  const jsm = await jetstreamManager(nc);
  const last = (await jsm.streams.info(INTAKE_STREAM)).state.last_seq;
  const ids: string[] = [];
  for (let seq = 1; seq <= last; seq++) {
    const msg = await jsm.streams.getMessage(INTAKE_STREAM, { seq });
    const decoded = decodeIntakeEvent(msg?.data ?? new Uint8Array());
    if (!decoded.ok) throw new Error(`stored message ${seq} does not decode: ${decoded.reason}`);
    ids.push(decoded.event.referenceId.toString());
  }
  return ids;
}

describe("JetStreamIntakePublisher", () => {
  test("500 publishes started in one turn all resolve after their PubAck, each stored once, in call order", async () => {
    const publisher = new JetStreamIntakePublisher(nc, 5_000);
    const orders = Array.from({ length: 500 }, () => makeOrder());
    // All started synchronously, i.e. in one turn: they travel together.
    await Promise.all(orders.map((order) => publisher.publish(order)));
    expect(await storedReferenceIds()).toEqual(orders.map((o) => o.referenceId.toString()));
    // A retry of one of them inside the duplicate window is dropped by the broker: still 500.
    await publisher.publish(orders[7] ?? makeOrder());
    expect((await storedReferenceIds()).length).toBe(500);
  });

  test("a connection lost while the publish waits for the end of the turn: refused, nothing stored", async () => {
    let connected = true;
    const publisher = new JetStreamIntakePublisher(nc, 5_000, () => connected);
    const before = (await storedReferenceIds()).length;
    const pending = publisher.publish(makeOrder());
    connected = false; // before the end of this turn
    await expect(pending).rejects.toBeInstanceOf(NotConnectedError);
    expect((await storedReferenceIds()).length).toBe(before);
  });
});
