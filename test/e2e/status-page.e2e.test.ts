/**
 * The ops listener's live status page in a real browser (headless Chromium through playwright-core), against the
 * service as child processes: one API, a leading sequencer and a standby, on a real nats-server and PostgreSQL.
 * Load moves the figures; a frozen leader (SIGSTOP) shows as STALLED with a growing intake lag; resumed, it
 * recovers. The page loads nothing it may not (CSP) and logs no error; the public ports do not serve it.
 *
 * Screenshots go to test-results/status-page/ (gitignored); their paths are printed.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { type Browser, chromium, type Page } from "playwright-core";
import postgres from "postgres";
import { CHROMIUM, ensureTestTool } from "../../src/runtime/provision-tools.ts";
import { Cluster, OrderClient, type ServiceProcess } from "../fault/harness.ts";
import { onPglite } from "../support/services.ts";
import { until } from "../support/wait.ts";

const SCREENSHOTS = join(import.meta.dir, "../../test-results/status-page");
/** Long enough that the standby does not take over while the test holds the leader frozen. */
const LEASE_TTL = "60s";
const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

let cluster: Cluster | undefined;
let browser: Browser | undefined;

/** Everything a page said that it should not have: console errors, uncaught errors, CSP violations. */
const problems: string[] = [];

async function openStatus(service: ServiceProcess): Promise<Page> {
  if (!browser) throw new Error("no browser");
  const page = await browser.newPage();
  page.on("console", (msg) => {
    if (msg.type() === "error" || msg.type() === "warning")
      problems.push(`${service.name} console ${msg.type()}: ${msg.text()}`);
  });
  page.on("pageerror", (error) => problems.push(`${service.name} page error: ${error.message}`));
  // Playwright's init script is not subject to the page's CSP: it records every violation the page reports.
  await page.addInitScript({
    content:
      'document.addEventListener("securitypolicyviolation", (e) => ' +
      'console.error("CSP violation: " + e.violatedDirective + " blocked " + e.blockedURI));',
  });
  const res = await page.goto(`${service.opsUrl}/status`, { timeout: 15_000 });
  expect(res?.status()).toBe(200);
  return page;
}

const text = async (page: Page, id: string) =>
  (await page.locator(`#${id}`).textContent({ timeout: 5_000 })) ?? "";

/** Polls the page (every 200 ms) until `probe` returns a value; fails after timeoutMs naming `what`. */
function onPage<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 30_000): Promise<T> {
  return until(what, probe, timeoutMs, 200);
}

/** About 50 orders a second until stopped: enough to see the lag grow, little enough for a shared machine. */
function pacedLoad(client: OrderClient, url: string): { stop(): Promise<void> } {
  let running = true;
  const done = (async () => {
    while (running) {
      await client.send(url);
      await Bun.sleep(20);
    }
  })();
  return {
    async stop() {
      running = false;
      await done;
    },
  };
}

async function screenshot(page: Page, name: string): Promise<string> {
  mkdirSync(SCREENSHOTS, { recursive: true });
  const path = join(SCREENSHOTS, `${name}.png`);
  await page.screenshot({ path, fullPage: true });
  console.log(`[status-page] screenshot: ${path}`);
  return path;
}

describe.skipIf(onPglite)(
  "status page (needs real PostgreSQL: two sequencer processes and a writer lease)",
  () => {
    let api: ServiceProcess;
    let leader: ServiceProcess;
    let standby: ServiceProcess;

    beforeAll(async () => {
      const tool = ensureTestTool(CHROMIUM);
      if ("unavailable" in tool) throw new Error(`the status page test needs Chromium: ${tool.unavailable}`);
      cluster = await Cluster.create("status-page");
      api = (await cluster.api("api", 1)).start();
      leader = (await cluster.sequencer("seq-a")).start({ WRITER_LEASE_TTL: LEASE_TTL });
      await Promise.all([api.waitReady(), leader.waitReady()]);
      standby = (await cluster.sequencer("seq-b")).start({ WRITER_LEASE_TTL: LEASE_TTL });
      await until("the standby's readiness", async () =>
        (await standby.readyz())?.body.checks.leader?.detail?.startsWith("standby;") ? true : undefined,
      );
      browser = await chromium.launch({ executablePath: tool.path, args: CHROMIUM_ARGS, timeout: 30_000 });
    }, 120_000);

    afterAll(async () => {
      await browser?.close().catch(() => {});
      await cluster?.stop(false);
    }, 60_000);

    test("only the ops listener serves it: the public API port and the sequencer's health port answer 404", async () => {
      for (const service of [api, leader]) {
        for (const path of ["/status", "/status.json"]) {
          const res = await fetch(`${service.url}${path}`);
          expect(`${service.name} ${path} ${res.status}`).toBe(`${service.name} ${path} 404`);
        }
      }
      const ops = await fetch(`${api.opsUrl}/status`);
      expect(ops.status).toBe(200);
      expect(ops.headers.get("content-security-policy")).toMatch(/^default-src 'none'; script-src 'nonce-/);
      expect(ops.headers.get("x-content-type-options")).toBe("nosniff");
    });

    test("figures move under load, a frozen leader shows STALLED, and the page follows the recovery", async () => {
      if (!cluster) throw new Error("no cluster");
      const c = cluster;
      await c.diagnose(async () => {
        const page = await openStatus(api);
        const leaderPage = await openStatus(leader);
        const standbyPage = await openStatus(standby);

        await onPage("the API's page to say OK", async () =>
          (await text(page, "state")) === "OK" ? true : undefined,
        );
        expect(await text(page, "role")).toBe("API");
        // Each page polls on its own: wait for its first answer before reading it.
        await onPage("the leader's page", async () =>
          (await text(leaderPage, "role")) === "LEADER" ? true : undefined,
        );
        expect(await text(leaderPage, "lease")).toMatch(/^holds the writer lease \(term \d+\)$/);
        await onPage("the standby's page", async () =>
          (await text(standbyPage, "role")) === "STANDBY" ? true : undefined,
        );
        expect(await text(standbyPage, "lease")).toMatch(/^standby; the writer is .+:\d+ \(term \d+\)$/);
        const writer = await text(page, "writer");
        expect(writer).toMatch(/:\d+$/);
        expect(await text(standbyPage, "lease")).toContain(writer);
        // Every page lists the one standby (from the sequencers' lease sessions), never the writer itself.
        for (const p of [page, leaderPage, standbyPage]) {
          const standbys = await onPage("the standbys listed", async () => {
            const shown = await text(p, "standbys");
            return /^[^,]+:\d+$/.test(shown) ? shown : undefined;
          });
          expect(standbys).not.toBe(writer);
        }

        // Load: a few hundred orders, while the page is watched for in and out rates above zero.
        const client = new OrderClient(await c.tokens(["101", "202", "303"]));
        const seen = { in: 0, accepted: 0, out: 0 };
        let loading = true;
        const watching = (async () => {
          while (loading || seen.in === 0 || seen.out === 0) {
            seen.in = Math.max(seen.in, Number(await text(page, "rate-in")) || 0);
            seen.accepted = Math.max(seen.accepted, Number(await text(page, "rate-accepted")) || 0);
            seen.out = Math.max(seen.out, Number(await text(page, "rate-out")) || 0);
            if (!loading && (seen.in === 0 || seen.out === 0)) await Bun.sleep(200);
            await Bun.sleep(200);
          }
        })();
        const first = await client.sendMany([api.url], 300, 8);
        loading = false;
        await Promise.race([watching, Bun.sleep(10_000)]);
        const accepted = first.filter((r) => r.outcome === "2xx").length;
        expect(accepted).toBe(300);
        expect(seen.in).toBeGreaterThan(0);
        expect(seen.accepted).toBeGreaterThan(0);
        expect(seen.out).toBeGreaterThan(0);
        await onPage("database and TRADING heads at 300, nothing waiting", async () => {
          const [db, trading, lag, behind] = await Promise.all(
            ["db-head", "trading-head", "lag", "trading-behind"].map((id) => text(page, id)),
          );
          return db === "300" && trading === "300" && lag === "0" && behind === "in sync" ? true : undefined;
        });
        expect(await page.locator("#spark-rates polyline").count()).toBeGreaterThan(0);

        // Freeze the leader while orders keep coming: STALLED, and the lag grows.
        const load = pacedLoad(client, api.url);
        leader.signal("SIGSTOP");
        let stalled: string;
        try {
          await onPage("STALLED", async () => ((await text(page, "state")) === "STALLED" ? true : undefined));
          const lagAtStall = Number(await text(page, "lag"));
          // Frozen between a commit and its publish, the older of the two stalls is TRADING behind the database.
          expect(await text(page, "reason")).toMatch(
            /intake messages waiting|TRADING has been behind the database/,
          );
          const grown = await onPage("the lag to grow", async () => {
            const lag = Number(await text(page, "lag"));
            return lag > lagAtStall ? lag : undefined;
          });
          expect(grown).toBeGreaterThan(lagAtStall);
          // Each process samples on its own clock: the standby's page says so within a reading or two.
          await onPage("the standby's page to say STALLED", async () =>
            (await text(standbyPage, "state")) === "STALLED" ? true : undefined,
          );
          expect(await text(standbyPage, "role")).toBe("STANDBY");
          await onPage("the frozen leader's own page to say it does not answer", async () =>
            (await text(leaderPage, "state")) === "UNREACHABLE" ? true : undefined,
          );
          stalled = await screenshot(page, "stalled");
        } finally {
          leader.signal("SIGCONT");
          await load.stop();
        }

        const total = client.records.filter((r) => r.outcome === "2xx").length;
        await onPage(
          `recovery: OK, both heads at ${total}, nothing waiting`,
          async () => {
            const [state, db, trading, lag] = await Promise.all(
              ["state", "db-head", "trading-head", "lag"].map((id) => text(page, id)),
            );
            return state === "OK" && db === String(total) && trading === String(total) && lag === "0"
              ? true
              : undefined;
          },
          60_000,
        );
        await onPage("the leader's page back", async () =>
          (await text(leaderPage, "role")) === "LEADER" ? true : undefined,
        );
        // Messages handed to the frozen process may wait out ack_wait (5 s here) and come back redelivered — or be
        // acked first when it wakes (which happens first is the broker's timing): the page shows what the
        // process counted, whichever it was.
        const counted = async () => {
          const metrics = await (await fetch(`${leader.opsUrl}/metrics`)).text();
          return Number(/^sequencer_redelivered_total (\d+)$/m.exec(metrics)?.[1]);
        };
        const redelivered = await onPage("the page's redeliveries = the process's counter", async () => {
          const [shown, total] = [Number(await text(leaderPage, "redelivered")), await counted()];
          return Number.isInteger(total) && shown === total ? shown : undefined;
        });
        const recovered = await screenshot(page, "recovered");
        console.log(
          `[status-page] ${total} orders; ${redelivered} redelivered; stalled: ${stalled}; recovered: ${recovered}`,
        );

        // Every value goes in as text: markup in a figure (here the lease row's holder) stays text.
        const hostile = `<img id="injected" src="x"> & <b>"bold"</b>`;
        const sql = postgres(c.databaseUrl, { max: 1 });
        try {
          await sql`update writer_lease set holder = ${hostile}`;
        } finally {
          await sql.end();
        }
        await onPage("the holder as text", async () =>
          (await text(page, "writer")) === hostile ? true : undefined,
        );
        expect(await page.locator("#injected").count()).toBe(0);

        expect(problems).toEqual([]);
      });
    }, 240_000);
  },
);
