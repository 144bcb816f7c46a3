// Proves the real-service helpers work: if these fail, every integration test would fail
// confusingly, so this gives a direct signal about the environment (binaries, root, ports).
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import postgres from "postgres";
import { freePort, getPostgres, type NatsServerHandle, startNats } from "../support/services.ts";

const TIMEOUT = 30_000;

test("freePort returns a usable port", async () => {
  const port = await freePort();
  expect(port).toBeGreaterThan(0);
  expect(port).toBeLessThan(65536);
});

describe("startNats", () => {
  let nats: NatsServerHandle;

  beforeAll(async () => {
    nats = await startNats();
  }, TIMEOUT);

  afterAll(async () => {
    await nats?.stop();
  }, TIMEOUT);

  test(
    "request/reply round trip and JetStream enabled",
    async () => {
      expect(nats.url).toBe(`nats://127.0.0.1:${nats.port}`);
      const nc = await connect({ servers: nats.url, timeout: 5_000 });
      try {
        nc.subscribe("echo", {
          callback: (_err, m) => {
            m.respond(m.data);
          },
        });
        const reply = await nc.request("echo", "ping", { timeout: 5_000 });
        expect(reply.string()).toBe("ping");

        const jsm = await jetstreamManager(nc);
        await jsm.streams.add({ name: "SMOKE", subjects: ["smoke.>"] });
        const ack = await jetstream(nc).publish("smoke.1", "hello");
        expect(ack.seq).toBe(1);
      } finally {
        await nc.close();
      }
    },
    TIMEOUT,
  );

  test(
    "restart keeps port and JetStream store",
    async () => {
      await nats.restart();
      const nc = await connect({ servers: nats.url, timeout: 5_000 });
      try {
        await nc.flush();
        const jsm = await jetstreamManager(nc);
        const info = await jsm.streams.info("SMOKE");
        expect(info.state.messages).toBe(1);
      } finally {
        await nc.close();
      }
    },
    TIMEOUT,
  );

  test(
    "websocket listener",
    async () => {
      const ws = await startNats({ websocket: true });
      try {
        expect(ws.wsUrl).toBe(`ws://127.0.0.1:${ws.wsPort}`);
        const url = ws.wsUrl ?? "";
        // The server greets every client with an INFO line, so the first frame proves it is NATS.
        const first = await new Promise<string>((resolve, reject) => {
          const sock = new WebSocket(url);
          sock.binaryType = "arraybuffer";
          const timer = setTimeout(() => reject(new Error("no INFO from websocket")), 5_000);
          sock.onmessage = (ev) => {
            clearTimeout(timer);
            const data: unknown = ev.data;
            resolve(typeof data === "string" ? data : new TextDecoder().decode(data as ArrayBuffer));
            sock.close();
          };
          sock.onerror = () => reject(new Error("websocket error"));
        });
        expect(first.startsWith("INFO ")).toBe(true);
      } finally {
        await ws.stop();
      }
    },
    TIMEOUT,
  );
});

describe("getPostgres", () => {
  test(
    "is memoized and createDatabase gives distinct, usable databases",
    async () => {
      const pg = await getPostgres();
      expect(await getPostgres()).toBe(pg);
      expect(pg.adminUrl).toBe(`postgres://postgres@127.0.0.1:${pg.port}/postgres`);

      const a = await pg.createDatabase();
      const b = await pg.createDatabase();
      expect(a).not.toBe(b);

      const sql = postgres(a, { max: 1 });
      try {
        const rows = await sql<{ x: number }[]>`select 1 as x`;
        expect(rows[0]?.x).toBe(1);
      } finally {
        await sql.end();
      }
    },
    TIMEOUT,
  );

  test(
    "restart keeps data",
    async () => {
      const pg = await getPostgres();
      const url = await pg.createDatabase();
      const before = postgres(url, { max: 1, onnotice: () => {} });
      await before`create table t (v int)`;
      await before`insert into t values (42)`;
      await before.end();

      await pg.restart();

      const after = postgres(url, { max: 1 });
      try {
        const rows = await after<{ v: number }[]>`select v from t`;
        expect(rows.map((r) => r.v)).toEqual([42]);
      } finally {
        await after.end();
      }
    },
    TIMEOUT,
  );
});
