/**
 * Edge-friendly ingest: with NATS_URL=ws://… the service connects through nats.js's WebSocket transport. The
 * whole flow (intake, sequencer, TRADING) runs over a real nats-server's websocket listener.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { loadConfig } from "../../src/config.ts";
import { createLogger } from "../../src/logger.ts";
import { type RunningService, startService } from "../../src/service.ts";
import { getPostgres, type NatsServerHandle, startNats } from "../support/services.ts";
import { waitFor } from "../support/wait.ts";

let nats: NatsServerHandle;
let service: RunningService;

beforeAll(async () => {
  nats = await startNats({ websocket: true });
  if (!nats.wsUrl) throw new Error("the harness did not start a websocket listener");
  const config = loadConfig({
    NATS_URL: nats.wsUrl,
    DATABASE_URL: await (await getPostgres()).createDatabase(),
    AUTH_SECRET: "websocket-test-secret-0123456789-abcdef",
    PORT: "0",
    OPS_PORT: "0",
  });
  service = await startService(config, "all", createLogger({}, "silent"));
});

afterAll(async () => {
  await service?.stop();
  await nats?.stop();
});

test("orders posted to an API connected over WebSocket are sequenced and published on TRADING", async () => {
  expect(service.natsUrl.startsWith("ws://")).toBe(true);
  const token = await service.tokens?.mint(77n);
  const answers = await Promise.all(
    Array.from({ length: 25 }, (_, i) =>
      fetch(`${service.url}/orders`, {
        method: "POST",
        headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
        body: JSON.stringify({ direction: "SELL", price: `${10 + i}`, quantity: "1" }),
      }).then(async (res) => ({ status: res.status, body: (await res.json()) as { referenceId: string } })),
    ),
  );
  expect(answers.every((a) => a.status === 202)).toBe(true);

  // Read TRADING over plain TCP: the same server, so both transports see one stream.
  const nc = await connect({ servers: nats.url });
  try {
    const jsm = await jetstreamManager(nc);
    await waitFor(
      "TRADING has 25 events",
      async () => (await jsm.streams.info("TRADING")).state.last_seq === 25,
    );
  } finally {
    await nc.close();
  }
  const page = (await (
    await fetch(`${service.url}/me/events?after=0&limit=100`, {
      headers: { authorization: `Bearer ${token}` },
    })
  ).json()) as {
    events: { sequenceId: string; referenceId: string }[];
  };
  expect(page.events.map((e) => e.sequenceId)).toEqual(Array.from({ length: 25 }, (_, i) => String(i + 1)));
  expect(new Set(page.events.map((e) => e.referenceId))).toEqual(
    new Set(answers.map((a) => a.body.referenceId)),
  );
});
