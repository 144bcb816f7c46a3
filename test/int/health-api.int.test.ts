/**
 * Health and availability of the HTTP API against a real nats-server and a real PostgreSQL, driven in-process with
 * app.handle(Request): GET /healthz and GET /readyz on the public port, and what POST /orders answers while
 * NATS (or the SEQUENCE stream) is gone: 503 + Retry-After within the publish timeout, never a 202.
 */

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { ensureTopology, INTAKE_STREAM } from "../../src/adapters/nats/topology.ts";
import { within } from "../support/wait.ts";
import {
  BASE,
  type Harness,
  harnessRequests,
  postOrder,
  readError,
  readJson,
  startHarness,
  validOrder,
} from "./http-helpers.ts";

const SETUP_TIMEOUT = 60_000;
const TEST_TIMEOUT = 15_000;

let h: Harness;

beforeAll(async () => {
  h = await startHarness();
}, SETUP_TIMEOUT);

afterAll(async () => {
  await h?.close();
}, SETUP_TIMEOUT);

const { handle } = harnessRequests(() => h);

// ---------------------------------------------------------------------------------------------------------------
// Ops
// ---------------------------------------------------------------------------------------------------------------

describe("ops endpoints", () => {
  test(
    "GET /healthz → 200 {status: ok}",
    async () => {
      const res = await handle(new Request(`${BASE}/healthz`));
      expect(res.status).toBe(200);
      expect(await readJson(res)).toEqual({ status: "ok" });
    },
    TEST_TIMEOUT,
  );

  test(
    "GET /readyz reflects the readiness function",
    async () => {
      h.setReadiness({ nats: { ok: true }, database: { ok: true } });
      // The public port says only ready or not (details are on the ops listener: read-access.int.test.ts).
      let res = await handle(new Request(`${BASE}/readyz`));
      expect(res.status).toBe(200);
      expect(await readJson(res)).toEqual({ status: "ready" });

      h.setReadiness({ nats: { ok: false, detail: "disconnected" }, database: { ok: true } });
      res = await handle(new Request(`${BASE}/readyz`));
      expect(res.status).toBe(503);
      expect(await readJson(res)).toEqual({ status: "not ready" });

      // A readiness check backed by the real dependencies.
      h.setReadiness(async () => {
        const checks: Record<string, { ok: boolean; detail?: string }> = {
          nats: { ok: !h.nc.isClosed() },
        };
        try {
          await h.database.ping();
          checks.database = { ok: true };
        } catch (error) {
          checks.database = { ok: false, detail: String(error) };
        }
        return checks;
      });
      res = await handle(new Request(`${BASE}/readyz`));
      expect(res.status).toBe(200);
      expect(await readJson(res)).toEqual({ status: "ready" });
    },
    TEST_TIMEOUT,
  );

  test(
    "a readiness function that throws → 500 INTERNAL without details",
    async () => {
      h.setReadiness(async () => {
        throw new Error("secret detail");
      });
      const res = await handle(new Request(`${BASE}/readyz`));
      const error = await readError(res);
      expect({ status: res.status, code: error.code }).toEqual({ status: 500, code: "INTERNAL" });
      expect(error.message).not.toContain("secret");
      h.setReadiness({ nats: { ok: true } });
    },
    TEST_TIMEOUT,
  );
});

// ---------------------------------------------------------------------------------------------------------------
// NATS unavailable: its own nats-server, so stopping it affects no other test
// ---------------------------------------------------------------------------------------------------------------

describe("NATS unavailable", () => {
  const PUBLISH_TIMEOUT_MS = 1_000;
  let down: Harness;
  let downToken: string;

  beforeAll(async () => {
    down = await startHarness({ publishTimeoutMs: PUBLISH_TIMEOUT_MS });
    downToken = await down.tokens.mint(77n);
  }, SETUP_TIMEOUT);

  afterAll(async () => {
    await down?.close();
  }, SETUP_TIMEOUT);

  async function post(): Promise<{ res: Response; elapsedMs: number }> {
    const started = performance.now();
    const res = await within(5_000, "POST /orders", () =>
      down.app.handle(postOrder(validOrder, { token: downToken })),
    );
    return { res, elapsedMs: performance.now() - started };
  }

  async function expectUnavailable(maxMs: number): Promise<void> {
    const { res, elapsedMs } = await post();
    const error = await readError(res);
    expect({ status: res.status, code: error.code }).toEqual({ status: 503, code: "UNAVAILABLE" });
    expect(res.headers.get("retry-after")).toBe("1");
    expect(elapsedMs).toBeLessThan(maxMs);
  }

  test(
    "control: accepted while the server is up",
    async () => {
      const { res } = await post();
      expect(res.status).toBe(202);
      expect(await down.intakeCount()).toBe(1);
    },
    TEST_TIMEOUT,
  );

  test(
    "SEQUENCE stream missing → 503 quickly (no stream answers), 202 again once it is back",
    async () => {
      await down.jsm.streams.delete(INTAKE_STREAM);
      await expectUnavailable(PUBLISH_TIMEOUT_MS + 1_500);
      // Recreate through the same code path the service uses.
      await ensureTopology(down.jsm, { duplicateWindowMs: 120_000, ackWaitMs: 30_000, maxAckPending: 1_000 });
      const { res } = await post();
      expect(res.status).toBe(202);
      expect(await down.intakeCount()).toBe(1);
    },
    TEST_TIMEOUT,
  );

  test(
    "the broker drops a republish with the same Nats-Msg-Id (the dedup the intake relies on)",
    async () => {
      const info = await down.jsm.streams.info(INTAKE_STREAM);
      const last = await down.jsm.streams.getMessage(INTAKE_STREAM, { seq: info.state.last_seq });
      if (!last) throw new Error("no message");
      const ack = await down.js.publish(last.subject, last.data, {
        msgID: last.header.get("Nats-Msg-Id"),
        expect: { streamName: INTAKE_STREAM },
      });
      expect(ack.duplicate).toBe(true);
      expect(await down.intakeCount()).toBe(info.state.messages);
    },
    TEST_TIMEOUT,
  );

  test(
    "server stopped → 503 UNAVAILABLE with Retry-After within the publish timeout, never 202",
    async () => {
      await down.nats.stop();
      for (let i = 0; i < 3; i++) await expectUnavailable(PUBLISH_TIMEOUT_MS + 1_500);
      // Concurrent requests fail the same way, each within the bound.
      const answers = await Promise.all(Array.from({ length: 5 }, () => post()));
      for (const { res, elapsedMs } of answers) {
        expect(res.status).toBe(503);
        expect(res.headers.get("retry-after")).toBe("1");
        expect((await readError(res)).code).toBe("UNAVAILABLE");
        expect(elapsedMs).toBeLessThan(PUBLISH_TIMEOUT_MS + 1_500);
      }
      // The failure is logged as a warning with its cause, not as an unhandled error.
      expect(down.log.lines.some((l) => l.level === "warn" && l.msg === "dependency unavailable")).toBe(true);
      expect(down.log.lines.some((l) => l.level === "error")).toBe(false);
    },
    TEST_TIMEOUT,
  );

  test(
    "validation and auth still answer 4xx while NATS is down (they never touch it)",
    async () => {
      const bad = await down.app.handle(postOrder({ ...validOrder, price: "0" }, { token: downToken }));
      expect(bad.status).toBe(400);
      const unauth = await down.app.handle(postOrder(validOrder, {}));
      expect(unauth.status).toBe(401);
      const health = await down.app.handle(new Request(`${BASE}/healthz`));
      expect(health.status).toBe(200);
    },
    TEST_TIMEOUT,
  );
});
