import { afterEach, describe, expect, test } from "bun:test";
import { type StatusProbes, StatusSampler, statusPageModule } from "../../src/adapters/http/status-page.ts";
import type { StatusSnapshot } from "../../src/app/status.ts";
import { createLogger } from "../../src/logger.ts";

const log = createLogger({ test: true }, "silent");
const samplers: StatusSampler[] = [];
afterEach(() => {
  for (const sampler of samplers.splice(0)) sampler.stop();
});

function probes(overrides: Partial<StatusProbes> = {}): StatusProbes {
  return {
    intake: async () => ({ pending: 3, ackPending: 2, redeliveredUnacked: 1, stored: 40 }),
    databaseHead: async () => 35n,
    tradingHead: async () => 35n,
    writer: async () => ({ holder: "host-a:7", term: 4n, live: true, sequencers: ["host-a:7", "host-b:9"] }),
    readiness: async () => ({ nats: { ok: true }, database: { ok: true } }),
    ...overrides,
  };
}

function sampler(
  p: StatusProbes,
  options: ConstructorParameters<typeof StatusSampler>[2] = {},
): StatusSampler {
  const s = new StatusSampler(p, log, options);
  samplers.push(s);
  return s;
}

const get = (s: StatusSampler, path: string) =>
  statusPageModule(s).handle(new Request(`http://127.0.0.1${path}`));

describe("GET /status", () => {
  test("a strict policy: nothing but its own nonce'd script and style, requests to itself only; nosniff", async () => {
    const res = await get(sampler(probes()), "/status");
    const policy = res.headers.get("content-security-policy") ?? "";
    const nonce = /script-src 'nonce-([A-Za-z0-9+/=]+)'/.exec(policy)?.[1];
    const html = await res.text();

    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("text/html; charset=utf-8");
    expect(res.headers.get("x-content-type-options")).toBe("nosniff");
    expect(res.headers.get("cache-control")).toBe("no-store");
    expect(policy).toContain("default-src 'none'");
    expect(policy).toContain("connect-src 'self'");
    expect(policy).toContain(`style-src 'nonce-${nonce}'`);
    expect(policy).not.toContain("unsafe");
    expect(nonce?.length).toBeGreaterThanOrEqual(22);
    expect(html).toContain(`<script nonce="${nonce}">`);
    expect(html).toContain(`<style nonce="${nonce}">`);
    // Nothing from elsewhere, and no way for data to become markup.
    expect(html).not.toMatch(/https?:\/\/(?!www\.w3\.org\/2000\/svg)/);
    expect(html).not.toMatch(/innerHTML|outerHTML|insertAdjacentHTML|document\.write|eval\(/);
  });

  test("a new nonce for every response", async () => {
    const s = sampler(probes());
    const policies = await Promise.all([get(s, "/status"), get(s, "/status")]).then((r) =>
      r.map((x) => x.headers.get("content-security-policy")),
    );
    expect(policies[0]).not.toBe(policies[1]);
  });
});

describe("GET /status.json", () => {
  test("the figures from the probes, 64-bit heads as strings, and the same hardening headers", async () => {
    const res = await get(sampler(probes({ accepted: async () => 12 })), "/status.json");
    const body = (await res.json()) as StatusSnapshot;

    expect(res.headers.get("x-content-type-options")).toBe("nosniff");
    expect(res.headers.get("content-type")).toBe("application/json");
    expect(body.intake).toEqual({ pending: 3, ackPending: 2, redeliveredUnacked: 1, stored: 40, lag: 5 });
    expect(body.heads).toEqual({ database: "35", trading: "35", tradingBehind: "0" });
    expect(body.writer).toEqual({ holder: "host-a:7", term: "4", live: true, standbys: ["host-b:9"] });
    expect(body.process).toEqual({ role: "api", lease: null });
    expect(body.checks).toEqual({ nats: { ok: true }, database: { ok: true } });
  });

  test("a failing probe and a hanging one read as unknown, and the answer still comes", async () => {
    const s = sampler(
      probes({
        databaseHead: async () => {
          throw new Error("connection refused");
        },
        tradingHead: () => new Promise<bigint>(() => {}),
        readiness: () => new Promise(() => {}),
      }),
      { probeTimeoutMs: 50 },
    );
    const started = Date.now();
    const body = (await (await get(s, "/status.json")).json()) as StatusSnapshot;

    expect(Date.now() - started).toBeLessThan(2_000);
    expect(body.heads).toEqual({ database: null, trading: null, tradingBehind: null });
    expect(body.state).toBe("unknown");
    expect(body.checks).toEqual({ status: { ok: false, detail: "readiness did not answer in time" } });
  });

  test("a sequencer process shows its lease; sampling runs while looked at and stops when nobody looks", async () => {
    let reads = 0;
    const s = sampler(
      probes({
        databaseHead: async () => BigInt(++reads),
        sequencer: async () => ({
          leader: false,
          lease: "standby; the writer is host-b:9 (term 4)",
          error: null,
          redelivered: 0,
        }),
      }),
      { intervalMs: 20, idleStopMs: 100 },
    );
    const body = (await (await get(s, "/status.json")).json()) as StatusSnapshot;
    expect(body.process).toEqual({ role: "standby", lease: "standby; the writer is host-b:9 (term 4)" });
    await Bun.sleep(90);
    expect(reads).toBeGreaterThan(2);
    await Bun.sleep(150); // past idleStopMs: the timer is gone
    const after = reads;
    await Bun.sleep(100);
    expect(reads).toBe(after);
  });
});
