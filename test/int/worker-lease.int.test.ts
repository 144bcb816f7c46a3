/**
 * API replicas without WORKER_ID lease distinct snowflake worker ids from NATS, so two replicas started at once
 * never mint the same id; a released lease frees its id.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { jetstream } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { WORKERS_BUCKET, WorkerIdTakenError, WorkerLease } from "../../src/adapters/nats/worker-lease.ts";
import { loadConfig } from "../../src/config.ts";
import { decodeSnowflake, MAX_WORKER_ID } from "../../src/domain/ids.ts";
import { createLogger } from "../../src/logger.ts";
import { type RunningService, startService } from "../../src/service.ts";
import { getPostgres, type NatsServerHandle, startNats } from "../support/services.ts";
import { quietLogger } from "../support/stack.ts";

let nats: NatsServerHandle;
let nc: NatsConnection;
const services: RunningService[] = [];

beforeAll(async () => {
  nats = await startNats();
  nc = await connect({ servers: nats.url });
});

afterAll(async () => {
  for (const s of services) await s.stop().catch(() => {});
  await nc.close();
  await nats.stop();
});

test("leases are exclusive while held and reusable once released", async () => {
  const js = jetstream(nc);
  const options = { ttlMs: 5_000, replicas: 1, holder: "test" };
  const leases = await Promise.all(
    Array.from({ length: 8 }, () => WorkerLease.claim(js, options, quietLogger)),
  );
  const ids = leases.map((l) => l.workerId);
  expect(new Set(ids).size).toBe(8);
  expect(leases.every((l) => l.isHeld())).toBe(true);
  for (const l of leases) await l.release();
  expect(leases.some((l) => l.isHeld())).toBe(false);
});

test("two API replicas started at once get different worker ids and mint disjoint ids", async () => {
  const databaseUrl = await (await getPostgres()).createDatabase();
  const config = loadConfig({
    NATS_URL: nats.url,
    DATABASE_URL: databaseUrl,
    AUTH_SECRET: "worker-lease-test-secret-0123456789abcdef",
    PORT: "0",
    OPS_PORT: "0",
  });
  const replicas = await Promise.all([
    startService(config, "api", createLogger({}, "silent")),
    startService(config, "api", createLogger({}, "silent")),
  ]);
  services.push(...replicas);
  const post = async (service: RunningService) => {
    const token = await service.tokens?.mint(5n);
    const res = await fetch(`${service.url}/orders`, {
      method: "POST",
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      body: JSON.stringify({ direction: "BUY", price: "1", quantity: "1" }),
    });
    expect(res.status).toBe(202);
    return (await res.json()) as { referenceId: string; orderId: string };
  };
  const answers = await Promise.all(replicas.flatMap((r) => Array.from({ length: 20 }, () => post(r))));
  const workers = new Set(answers.map((a) => decodeSnowflake(BigInt(a.referenceId)).workerId));
  expect(workers.size).toBe(2);
  const all = answers.flatMap((a) => [a.referenceId, a.orderId]);
  expect(new Set(all).size).toBe(all.length);
  // The details are on the ops listener; the public port says only ready or not.
  expect(await (await fetch(`${replicas[0]?.url}/readyz`)).json()).toEqual({ status: "ready" });
  const ready = (await (await fetch(`${replicas[0]?.opsUrl}/readyz`)).json()) as {
    checks: Record<string, { ok: boolean }>;
  };
  expect(ready.checks.workerId?.ok).toBe(true);
});

test("a claim skips every id a live process holds (the server's create conflict), and fails when none is left", async () => {
  // A broker of its own, so the bucket's TTL outlasts the ~2 000 round trips the claims below make.
  const own = await startNats();
  const client = await connect({ servers: own.url });
  try {
    const js = jetstream(client);
    const options = { ttlMs: 60_000, replicas: 1, holder: "test" };
    const kv = await new Kvm(js).create(WORKERS_BUCKET, { ttl: options.ttlMs, history: 1, replicas: 1 });
    const free = 517;
    const taken = Array.from({ length: MAX_WORKER_ID + 1 }, (_, id) => id).filter((id) => id !== free);
    for (let i = 0; i < taken.length; i += 128) {
      await Promise.all(taken.slice(i, i + 128).map((id) => kv.create(String(id), "another process")));
    }
    const lease = await WorkerLease.claim(js, options, quietLogger);
    expect(lease.workerId).toBe(free);
    await expect(WorkerLease.claim(js, options, quietLogger)).rejects.toBeInstanceOf(WorkerIdTakenError);
    await lease.release();
  } finally {
    await client.close();
    await own.stop();
  }
}, 60_000);
