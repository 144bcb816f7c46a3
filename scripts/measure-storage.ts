/**
 * Bytes per event in each store, measured through the real stack (docs/storage.md):
 *
 *   bun scripts/measure-storage.ts [--events 100000] [--keyed 0] [--concurrency 64] [--json <path>]
 *
 * Starts a nats-server and a PostgreSQL cluster of its own on free loopback ports (the ones the tests and the
 * benchmark use, tools/services/local-services.ts), runs `sequencer serve` (API and sequencer in one process, the
 * defaults but RATE_LIMIT=off) against them, POSTs --events orders over HTTP from 2 000 users (--keyed percent of
 * them with an Idempotency-Key), waits until every one is on TRADING and acked on SEQUENCE, and then reads:
 * - SEQUENCE and TRADING: JetStream's own byte count (stream info `state.bytes`) and the stream directory's size on
 *   disk (files' apparent sizes, blocks and indexes);
 * - `events`: the heap (pg_relation_size), TOAST, and every index (pg_relation_size of each), and the total
 *   (pg_total_relation_size);
 * - the idempotency_key index both ways on the same rows, freshly built beside the real one and dropped again: a
 *   full unique index (as after a REINDEX: a build does not deduplicate a unique index's NULLs the way inserts
 *   into a full page do, so it is bigger than the one grown by the inserts) and a partial one (WHERE NOT NULL);
 * - what an archived range would take: the rows as NDJSON, and gzipped.
 * Everything it started is stopped and deleted at the end. Needs PostgreSQL's server binaries (as the tests do).
 */
import { spawn } from "node:child_process";
import { mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import postgres from "postgres";
import { INTAKE_STREAM, SEQUENCER_CONSUMER, TRADING_STREAM } from "../src/adapters/nats/topology.ts";
import { TokenService } from "../src/app/auth.ts";
import { waitFor } from "../test/support/wait.ts";
import { freePort, startLocalPostgres, startNats } from "../tools/services/local-services.ts";

const { values } = parseArgs({
  args: process.argv.slice(2),
  options: {
    events: { type: "string", default: "100000" },
    keyed: { type: "string", default: "0" },
    concurrency: { type: "string", default: "64" },
    json: { type: "string" },
  },
});
const EVENTS = Number(values.events);
const KEYED_PERCENT = Number(values.keyed);
const CONCURRENCY = Number(values.concurrency);
if (!Number.isSafeInteger(EVENTS) || EVENTS < 1) throw new Error("--events must be a positive integer");
if (!(KEYED_PERCENT >= 0 && KEYED_PERCENT <= 100)) throw new Error("--keyed must be a percentage (0-100)");
if (!Number.isSafeInteger(CONCURRENCY) || CONCURRENCY < 1) throw new Error("--concurrency must be positive");
const USERS = 2_000;
const CLI = join(import.meta.dir, "../src/cli.ts");

/** Apparent size of every file under `dir`, in bytes. */
function treeBytes(dir: string): number {
  let total = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    total += entry.isDirectory() ? treeBytes(path) : statSync(path).size;
  }
  return total;
}

const nats = await startNats();
const pg = await startLocalPostgres();
const dataDir = mkdtempSync(join(tmpdir(), "measure-storage-"));
const secret = "m".repeat(48);
let service: ReturnType<typeof spawn> | undefined;
try {
  const databaseUrl = await pg.createDatabase();
  const port = await freePort();
  service = spawn(process.execPath, [CLI, "serve"], {
    env: {
      PATH: process.env.PATH ?? "",
      NATS_URL: nats.url,
      DATABASE_URL: databaseUrl,
      DATA_DIR: dataDir,
      AUTH_SECRET: secret,
      PORT: String(port),
      OPS_PORT: "0",
      WORKER_ID: "1",
      RATE_LIMIT: "off",
      LOG_LEVEL: "warn",
    },
    // Its start-up banner and logs (stdout) are not this report's.
    stdio: ["ignore", "ignore", "inherit"],
  });
  const base = `http://127.0.0.1:${port}`;
  await waitFor("the service", async () => (await fetch(`${base}/readyz`)).ok, 60_000, 200);

  const tokens = new TokenService(secret);
  const auth = await Promise.all(
    Array.from({ length: USERS }, async (_, i) => `Bearer ${await tokens.mint(BigInt(1 + i))}`),
  );
  const started = performance.now();
  let next = 0;
  let keyed = 0;
  const worker = async () => {
    for (let i = next++; i < EVENTS; i = next++) {
      const headers: Record<string, string> = {
        authorization: auth[i % USERS] as string,
        "content-type": "application/json",
      };
      // Spread evenly: the i-th order carries a key when the keyed count falls behind the wanted share.
      if ((keyed + 1) * 100 <= (i + 1) * KEYED_PERCENT) {
        keyed++;
        headers["idempotency-key"] = `order-${i}`;
      }
      const body = JSON.stringify({
        direction: i % 2 ? "BUY" : "SELL",
        price: `${100 + (i % 50)}.${i % 100}`,
        quantity: `${1 + (i % 7)}.5`,
      });
      for (let attempt = 0; ; attempt++) {
        const response = await fetch(`${base}/orders`, { method: "POST", headers, body });
        await response.arrayBuffer();
        if (response.status === 202 || response.status === 200) break;
        if (attempt >= 5) throw new Error(`POST /orders answered ${response.status}`);
        await Bun.sleep(100 * (attempt + 1));
      }
    }
  };
  const progress = setInterval(() => process.stderr.write(`measure-storage: ${next} posted\n`), 5_000);
  try {
    await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  } finally {
    clearInterval(progress);
  }
  const nc = await connect({ servers: nats.url });
  const jsm = await jetstreamManager(nc);
  await waitFor(
    "TRADING and the consumer's ack floor to reach every event",
    async () =>
      (await jsm.streams.info(TRADING_STREAM)).state.last_seq >= EVENTS &&
      (await jsm.consumers.info(INTAKE_STREAM, SEQUENCER_CONSUMER)).ack_floor.stream_seq >= EVENTS,
    120_000,
    200,
  );
  const seconds = (performance.now() - started) / 1000;
  service.kill("SIGTERM");
  await new Promise((resolve) => service?.once("exit", resolve));
  service = undefined;

  const streams: Record<string, { messages: number; stateBytes: number; diskBytes: number }> = {};
  for (const name of [INTAKE_STREAM, TRADING_STREAM]) {
    const { state } = await jsm.streams.info(name);
    streams[name] = {
      messages: state.messages,
      stateBytes: state.bytes,
      diskBytes: treeBytes(join(nats.storeDir, "jetstream", "$G", "streams", name)),
    };
  }
  await nc.close();

  const sql = postgres(databaseUrl, { max: 1, onnotice: () => {} });
  const [table] = await sql<
    { rows: number; heap: number; total: number; indexes: number; payload: number }[]
  >`
    select (select count(*) from events)::float8 as rows,
           pg_relation_size('events')::float8 as heap,
           pg_total_relation_size('events')::float8 as total,
           pg_indexes_size('events')::float8 as indexes,
           (select avg(octet_length(payload)) from events)::float8 as payload`;
  const indexes = await sql<{ name: string; bytes: number; definition: string }[]>`
    select c.relname as name, pg_relation_size(c.oid)::float8 as bytes, pg_get_indexdef(c.oid) as definition
    from pg_index i join pg_class c on c.oid = i.indexrelid
    where i.indrelid = 'events'::regclass order by c.relname`;
  // The idempotency_key index both ways over the same rows.
  await sql`create unique index measure_full on events (idempotency_key)`;
  await sql`create unique index measure_partial on events (idempotency_key) where idempotency_key is not null`;
  const [variants] = await sql<{ full: number; partial: number; keyed: number }[]>`
    select pg_relation_size('measure_full')::float8 as full, pg_relation_size('measure_partial')::float8 as partial,
           (select count(*) from events where idempotency_key is not null)::float8 as keyed`;
  await sql`drop index measure_full`;
  await sql`drop index measure_partial`;
  // What an archived range costs: the rows as NDJSON (sequenceId, digest, payload), gzip -6.
  const archived = await sql<{ line: string }[]>`
    select json_build_object('sequenceId', sequence_id::text, 'digest', encode(digest, 'hex'),
                             'payload', payload)::text as line
    from events order by sequence_id`;
  const ndjson = `${archived.map((row) => row.line).join("\n")}\n`;
  const archive = { ndjson: Buffer.byteLength(ndjson), gzip: Bun.gzipSync(ndjson, { level: 6 }).length };
  const [version] = await sql<{ v: string }[]>`select current_setting('server_version') as v`;
  await sql.end({ timeout: 5 });
  if (!table || !variants) throw new Error("no sizes read");

  const per = (bytes: number) => (bytes / EVENTS).toFixed(1);
  const lines = [
    `${EVENTS} orders (${variants.keyed} with an Idempotency-Key) in ${seconds.toFixed(0)} s; PostgreSQL ${version?.v}, ${Bun.spawnSync(["nats-server", "--version"]).stdout.toString().trim()}`,
    "",
    "| store | bytes | bytes/event |",
    "| --- | ---: | ---: |",
  ];
  for (const [name, s] of Object.entries(streams)) {
    lines.push(
      `| ${name} (JetStream state.bytes, ${s.messages} messages) | ${s.stateBytes} | ${per(s.stateBytes)} |`,
    );
    lines.push(`| ${name} on disk (stream directory) | ${s.diskBytes} | ${per(s.diskBytes)} |`);
  }
  lines.push(
    `| events heap (avg payload ${table.payload.toFixed(0)} B) | ${table.heap} | ${per(table.heap)} |`,
  );
  const toast = table.total - table.heap - table.indexes;
  lines.push(`| events TOAST, FSM, VM | ${toast} | ${per(toast)} |`);
  for (const index of indexes) lines.push(`| index ${index.name} | ${index.bytes} | ${per(index.bytes)} |`);
  lines.push(`| events total (pg_total_relation_size) | ${table.total} | ${per(table.total)} |`);
  lines.push(`| idempotency_key, full unique index, rebuilt | ${variants.full} | ${per(variants.full)} |`);
  lines.push(
    `| idempotency_key, partial unique index (WHERE NOT NULL), built | ${variants.partial} | ${per(variants.partial)} |`,
  );
  lines.push(
    `| archive: the rows as NDJSON (sequenceId, digest, payload) | ${archive.ndjson} | ${per(archive.ndjson)} |`,
  );
  lines.push(`| archive: the same, gzip -6 | ${archive.gzip} | ${per(archive.gzip)} |`);
  process.stdout.write(`${lines.join("\n")}\n`);
  if (values.json) {
    writeFileSync(
      values.json,
      `${JSON.stringify({ events: EVENTS, keyed: variants.keyed, seconds, streams, table, indexes, variants, archive }, null, 2)}\n`,
    );
  }
} finally {
  service?.kill("SIGKILL");
  await pg.stop();
  await nats.stop();
  rmSync(dataDir, { recursive: true, force: true });
}
