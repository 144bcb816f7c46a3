/**
 * A full intake store is an answer, not a crash: with SEQUENCE capped (INTAKE_MAX_BYTES) and no sequencer
 * running, the API answers 503 with the reason and a Retry-After once the cap is reached, readiness says why,
 * and when a sequencer drains the intake the API accepts again — every accepted order sequenced exactly once,
 * no refused one in the log.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import postgres from "postgres";
import { loadConfig } from "../../src/config.ts";
import { createLogger } from "../../src/logger.ts";
import { type RunningService, startService } from "../../src/service.ts";
import { getPostgres, type NatsServerHandle, onPglite, startNats } from "../support/services.ts";
import { waitFor } from "../support/wait.ts";

let nats: NatsServerHandle;
let api: RunningService;
let sequencer: RunningService | undefined;
let admin: postgres.Sql;
let env: Record<string, string>;
let token = "";
const accepted: string[] = [];

type Answer = {
  status: number;
  retryAfter: string | null;
  body: { error?: { code: string; message: string } };
};

async function placeOrder(): Promise<Answer> {
  const res = await fetch(`${api.url}/orders`, {
    method: "POST",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: JSON.stringify({ direction: "SELL", price: "99.5", quantity: "2" }),
  });
  const body = (await res.json()) as Answer["body"] & { referenceId?: string };
  if (res.status === 202 && body.referenceId) accepted.push(body.referenceId);
  return { status: res.status, retryAfter: res.headers.get("retry-after"), body };
}

async function opsChecks(service: RunningService): Promise<Record<string, { ok: boolean; detail?: string }>> {
  return ((await (await fetch(`${service.opsUrl}/readyz`)).json()) as { checks: Record<string, never> })
    .checks;
}

describe.skipIf(onPglite)("a full intake store (needs real PostgreSQL)", () => {
  beforeAll(async () => {
    nats = await startNats();
    const databaseUrl = await (await getPostgres()).createDatabase();
    env = {
      NATS_URL: nats.url,
      DATABASE_URL: databaseUrl,
      AUTH_SECRET: "intake-full-test-secret-0123456789-abcdef",
      PORT: "0",
      OPS_PORT: "0",
      WORKER_ID: "8",
      RATE_LIMIT: "off",
      INTAKE_MAX_BYTES: String(1_048_576),
    };
    api = await startService(loadConfig(env), "api", createLogger({}, "silent"));
    token = (await api.tokens?.mint(303n)) ?? "";
    admin = postgres(databaseUrl, { max: 1, onnotice: () => {} });
  }, 60_000);

  afterAll(async () => {
    await admin?.end({ timeout: 5 });
    await sequencer?.stop();
    await api?.stop();
    await nats?.stop();
  });

  test("503 with the reason once SEQUENCE is full; readiness says why; accepted again once drained; nothing lost", async () => {
    // No sequencer: the intake fills up (about 3 000 orders in 1 MiB).
    let refusal: Answer | undefined;
    for (let round = 0; round < 200 && !refusal; round++) {
      const answers = await Promise.all(Array.from({ length: 32 }, () => placeOrder()));
      refusal = answers.find((a) => a.status !== 202);
      for (const a of answers) expect([202, 503]).toContain(a.status);
    }
    expect(refusal?.status).toBe(503);
    expect(refusal?.retryAfter).toBe("5");
    expect(refusal?.body.error?.code).toBe("UNAVAILABLE");
    expect(refusal?.body.error?.message).toContain("full");
    expect(accepted.length).toBeGreaterThan(1_000);
    // Still refused, not crashed; readiness names the reason.
    expect((await placeOrder()).status).toBe(503);
    const checks = await opsChecks(api);
    expect(checks.intake?.ok).toBe(false);
    expect(checks.intake?.detail).toContain("INTAKE_MAX_BYTES");
    expect((await fetch(`${api.url}/readyz`)).status).toBe(503);

    // A sequencer drains the intake (interest retention frees what it acked): orders are accepted again.
    sequencer = await startService(loadConfig(env), "sequencer", createLogger({}, "silent"));
    await waitFor("an order accepted again", async () => (await placeOrder()).status === 202, 30_000);
    await waitFor(
      "every accepted order sequenced",
      async () => {
        const [row] = await admin<{ n: number }[]>`select count(*)::int as n from events`;
        return row?.n === accepted.length;
      },
      30_000,
    );
    const rows = await admin<{ sequence_id: string; reference_id: string }[]>`
      select sequence_id::text, reference_id::text from events order by events.sequence_id`;
    expect(rows.map((r) => r.sequence_id)).toEqual(rows.map((_, i) => String(i + 1)));
    expect(rows.map((r) => r.reference_id).sort()).toEqual([...accepted].sort());
    await waitFor("readiness to clear", async () => (await opsChecks(api)).intake?.ok === true, 15_000);
  }, 120_000);
});
