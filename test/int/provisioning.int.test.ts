/**
 * Provisioning against the real services: JetStream topology (streams SEQUENCE and TRADING, durable consumer
 * `sequencer`) is created, left alone, updated in place (storage limits too), or refused; database migrations are
 * serialized across concurrently opened instances by the advisory lock, and the constraints they create hold.
 * PGlite migrates idempotently and keeps its data on disk across a close and reopen.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  AckPolicy,
  DeliverPolicy,
  DiscardPolicy,
  type JetStreamClient,
  type JetStreamManager,
  jetstream,
  jetstreamManager,
  RetentionPolicy,
  StorageType,
} from "@nats-io/jetstream";
import { connect, type NatsConnection, nanos } from "@nats-io/transport-node";
import { count, sql } from "drizzle-orm";
import postgres from "postgres";
import { type Database, openDatabase } from "../../src/adapters/db/client.ts";
import { events } from "../../src/adapters/db/schema.ts";
import {
  ensureTopology,
  INTAKE_STREAM,
  SEQUENCER_CONSUMER,
  type TopologyOptions,
  TRADING_STREAM,
} from "../../src/adapters/nats/topology.ts";
import { getPostgres, type NatsServerHandle, onPglite, startNats } from "../support/services.ts";
import { waitFor } from "../support/wait.ts";

const TIMEOUT = 30_000;
/** One row in drizzle.__drizzle_migrations per migration file (drizzle/meta/_journal.json). */
const MIGRATIONS = (
  JSON.parse(readFileSync(join(import.meta.dir, "../../drizzle/meta/_journal.json"), "utf8")) as {
    entries: unknown[];
  }
).entries.length;

const FIRST: TopologyOptions = { duplicateWindowMs: 120_000, ackWaitMs: 30_000, maxAckPending: 20_000 };
// FIRST leaves TRADING's window to follow SEQUENCE's; SECOND gives TRADING its own, shorter one.
const SECOND: TopologyOptions = {
  duplicateWindowMs: 45_000,
  tradingDuplicateWindowMs: 10_000,
  ackWaitMs: 7_000,
  maxAckPending: 512,
};

async function connectNats(
  url: string,
): Promise<{ nc: NatsConnection; jsm: JetStreamManager; js: JetStreamClient }> {
  const nc = await connect({ servers: url, timeout: 5_000, maxReconnectAttempts: 0 });
  const jsm = await jetstreamManager(nc, { timeout: 5_000 });
  return { nc, jsm, js: jetstream(nc, { timeout: 5_000 }) };
}

describe("ensureTopology against nats-server", () => {
  let nats: NatsServerHandle;
  let nc: NatsConnection;
  let jsm: JetStreamManager;
  let js: JetStreamClient;

  beforeAll(async () => {
    nats = await startNats();
    ({ nc, jsm, js } = await connectNats(nats.url));
  }, TIMEOUT);

  afterAll(async () => {
    await nc?.close();
    await nats?.stop();
  }, TIMEOUT);

  const expectStream = async (name: string, subject: string, duplicateWindowMs: number) => {
    const { config } = await jsm.streams.info(name);
    expect(config.name).toBe(name);
    expect(config.subjects).toEqual([subject]);
    expect(config.storage).toBe(StorageType.File);
    // SEQUENCE keeps a message only until the sequencer acked it; TRADING keeps everything (the replay source).
    expect(config.retention).toBe(
      name === INTAKE_STREAM ? RetentionPolicy.Workqueue : RetentionPolicy.Limits,
    );
    expect(config.discard).toBe(DiscardPolicy.New);
    expect(config.duplicate_window).toBe(nanos(duplicateWindowMs));
  };

  const expectConsumer = async (options: TopologyOptions) => {
    const { config } = await jsm.consumers.info(INTAKE_STREAM, SEQUENCER_CONSUMER);
    expect(config.durable_name).toBe(SEQUENCER_CONSUMER);
    expect(config.ack_policy).toBe(AckPolicy.Explicit);
    expect(config.max_deliver).toBe(-1);
    expect(config.ack_wait).toBe(nanos(options.ackWaitMs));
    expect(config.max_ack_pending).toBe(options.maxAckPending);
    expect(config.deliver_subject).toBeUndefined(); // pull consumer
  };

  const snapshot = async () => ({
    sequence: (await jsm.streams.info(INTAKE_STREAM)).created,
    trading: (await jsm.streams.info(TRADING_STREAM)).created,
    consumer: (await jsm.consumers.info(INTAKE_STREAM, SEQUENCER_CONSUMER)).created,
  });

  const expectMessageKept = async () => {
    const info = await jsm.streams.info(INTAKE_STREAM);
    expect(info.state.messages).toBe(1);
    const msg = await jsm.streams.getMessage(INTAKE_STREAM, { seq: 1 });
    expect(msg?.subject).toBe("sequence.x");
    expect(msg?.string()).toBe("kept");
  };

  test(
    "creates SEQUENCE, TRADING and the durable pull consumer on an empty server",
    async () => {
      expect(await jsm.streams.names().next()).toEqual([]);
      await ensureTopology(jsm, FIRST);
      await expectStream(INTAKE_STREAM, "sequence.>", FIRST.duplicateWindowMs);
      await expectStream(TRADING_STREAM, "trading.>", FIRST.duplicateWindowMs);
      await expectConsumer(FIRST);
      expect((await jsm.streams.names().next()).sort()).toEqual([INTAKE_STREAM, TRADING_STREAM]);
      expect(await jsm.consumers.list(TRADING_STREAM).next()).toEqual([]);
    },
    TIMEOUT,
  );

  test(
    "a second run with the same options changes nothing and keeps messages",
    async () => {
      const ack = await js.publish("sequence.x", "kept");
      expect(ack.stream).toBe(INTAKE_STREAM);
      expect(ack.seq).toBe(1);
      const before = await snapshot();
      await ensureTopology(jsm, FIRST);
      expect(await snapshot()).toEqual(before);
      await expectStream(INTAKE_STREAM, "sequence.>", FIRST.duplicateWindowMs);
      await expectStream(TRADING_STREAM, "trading.>", FIRST.duplicateWindowMs);
      await expectConsumer(FIRST);
      await expectMessageKept();
    },
    TIMEOUT,
  );

  test(
    "different duplicate windows (TRADING its own) / ack wait / max ack pending are updated in place, keeping messages",
    async () => {
      const before = await snapshot();
      await ensureTopology(jsm, SECOND);
      await expectStream(INTAKE_STREAM, "sequence.>", SECOND.duplicateWindowMs);
      await expectStream(TRADING_STREAM, "trading.>", 10_000);
      await expectConsumer(SECOND);
      // Same objects (not deleted and recreated), same message.
      expect(await snapshot()).toEqual(before);
      await expectMessageKept();
      // And running again with the new options is again a no-op.
      await ensureTopology(jsm, SECOND);
      expect(await snapshot()).toEqual(before);
      await expectConsumer(SECOND);
      // TRADING's window alone changes TRADING alone.
      await ensureTopology(jsm, { ...SECOND, tradingDuplicateWindowMs: 20_000 });
      await expectStream(TRADING_STREAM, "trading.>", 20_000);
      await expectStream(INTAKE_STREAM, "sequence.>", SECOND.duplicateWindowMs);
      await ensureTopology(jsm, SECOND);
      await expectStream(TRADING_STREAM, "trading.>", 10_000);
      expect(await snapshot()).toEqual(before);
    },
    TIMEOUT,
  );

  test(
    "storage limits are applied in place, changed, and removed again when unset; a repeat run issues no update",
    async () => {
      // Every create/update request on the wire (a second connection sees the JetStream API subjects).
      const watcher = await connect({ servers: nats.url, timeout: 5_000, maxReconnectAttempts: 0 });
      const writes: string[] = [];
      const sub = watcher.subscribe("$JS.API.>", {
        callback: (_, msg) => {
          if (/\.(CREATE|UPDATE)\./.test(msg.subject)) writes.push(msg.subject);
        },
      });
      await watcher.flush();
      const writesOf = async (options: TopologyOptions) => {
        writes.length = 0;
        await ensureTopology(jsm, options);
        await nc.flush();
        await watcher.flush();
        return [...writes].sort();
      };
      const limitsOf = async (name: string) => {
        const { config } = await jsm.streams.info(name);
        return { discard: config.discard, maxBytes: config.max_bytes, maxAge: config.max_age };
      };
      const unlimited = { discard: DiscardPolicy.New, maxBytes: -1, maxAge: 0 };
      try {
        const before = await snapshot();
        const limited: TopologyOptions = {
          ...SECOND,
          tradingMaxAgeMs: 3_600_000,
          tradingMaxBytes: 64 * 1_048_576,
          intakeMaxBytes: 32 * 1_048_576,
        };
        expect(await writesOf(limited)).toEqual([
          `$JS.API.STREAM.UPDATE.${INTAKE_STREAM}`,
          `$JS.API.STREAM.UPDATE.${TRADING_STREAM}`,
        ]);
        // TRADING drops its oldest messages at a limit; SEQUENCE refuses new ones.
        expect(await limitsOf(TRADING_STREAM)).toEqual({
          discard: DiscardPolicy.Old,
          maxBytes: 64 * 1_048_576,
          maxAge: nanos(3_600_000),
        });
        expect(await limitsOf(INTAKE_STREAM)).toEqual({ ...unlimited, maxBytes: 32 * 1_048_576 });
        expect(await snapshot()).toEqual(before);
        await expectMessageKept();
        expect(await writesOf(limited)).toEqual([]);

        // One limit changed, the other unset: only TRADING is updated, and it still discards old messages.
        const ageOnly: TopologyOptions = {
          ...limited,
          tradingMaxBytes: undefined,
          tradingMaxAgeMs: 7_200_000,
        };
        expect(await writesOf(ageOnly)).toEqual([`$JS.API.STREAM.UPDATE.${TRADING_STREAM}`]);
        expect(await limitsOf(TRADING_STREAM)).toEqual({
          discard: DiscardPolicy.Old,
          maxBytes: -1,
          maxAge: nanos(7_200_000),
        });
        const bytesOnly: TopologyOptions = { ...limited, tradingMaxAgeMs: undefined };
        expect(await writesOf(bytesOnly)).toEqual([`$JS.API.STREAM.UPDATE.${TRADING_STREAM}`]);
        expect(await limitsOf(TRADING_STREAM)).toEqual({
          discard: DiscardPolicy.Old,
          maxBytes: 64 * 1_048_576,
          maxAge: 0,
        });
        expect(await writesOf(bytesOnly)).toEqual([]);

        // Unset again: both streams back to no limits and discard New, in place, messages kept.
        expect(await writesOf(SECOND)).toEqual([
          `$JS.API.STREAM.UPDATE.${INTAKE_STREAM}`,
          `$JS.API.STREAM.UPDATE.${TRADING_STREAM}`,
        ]);
        expect(await limitsOf(TRADING_STREAM)).toEqual(unlimited);
        expect(await limitsOf(INTAKE_STREAM)).toEqual(unlimited);
        await expectStream(INTAKE_STREAM, "sequence.>", SECOND.duplicateWindowMs);
        await expectStream(TRADING_STREAM, "trading.>", 10_000);
        await expectConsumer(SECOND);
        expect(await snapshot()).toEqual(before);
        await expectMessageKept();
        expect(await writesOf(SECOND)).toEqual([]);
      } finally {
        sub.unsubscribe();
        await watcher.close();
      }
    },
    TIMEOUT,
  );

  test(
    "at its byte limit TRADING drops its oldest messages and keeps accepting; a full SEQUENCE refuses the publish",
    async () => {
      await ensureTopology(jsm, { ...SECOND, tradingMaxBytes: 1_048_576, intakeMaxBytes: 1_048_576 });
      try {
        const body = "x".repeat(3_000);
        // ~1.5 MiB into a 1 MiB TRADING: every publish is stored, the oldest ones make room.
        for (let i = 1; i <= 500; i++) {
          const ack = await js.publish("trading.test", body, { msgID: `t${i}` });
          expect(ack.seq).toBe(i);
        }
        const trading = (await jsm.streams.info(TRADING_STREAM)).state;
        expect(trading.last_seq).toBe(500);
        expect(trading.first_seq).toBeGreaterThan(1);
        expect(trading.bytes).toBeLessThanOrEqual(1_048_576);

        // SEQUENCE (which holds one message already) fills up and then refuses, keeping what it holds.
        let refused: unknown;
        for (let i = 1; i <= 500 && refused === undefined; i++) {
          await js.publish("sequence.test", body, { msgID: `s${i}` }).catch((error: unknown) => {
            refused = error;
          });
        }
        expect(refused).toBeInstanceOf(Error);
        expect(String((refused as Error).message)).toMatch(/maximum bytes/i);
        const intake = (await jsm.streams.info(INTAKE_STREAM)).state;
        expect(intake.first_seq).toBe(1);
        expect(intake.bytes).toBeLessThanOrEqual(1_048_576);
      } finally {
        await jsm.streams.purge(TRADING_STREAM);
        await jsm.streams.purge(INTAKE_STREAM, { filter: "sequence.test" });
        await ensureTopology(jsm, SECOND);
      }
      await expectMessageKept();
    },
    TIMEOUT,
  );

  test(
    "a SEQUENCE from an earlier version (limits retention) is recreated with work-queue retention once drained, and refused while it holds unsequenced messages",
    async () => {
      await jsm.streams.delete(INTAKE_STREAM); // also deletes the consumer
      await jsm.streams.add({
        name: INTAKE_STREAM,
        subjects: ["sequence.>"],
        retention: RetentionPolicy.Limits,
      });
      await jsm.consumers.add(INTAKE_STREAM, {
        durable_name: SEQUENCER_CONSUMER,
        ack_policy: AckPolicy.Explicit,
        deliver_policy: DeliverPolicy.All,
      });
      await js.publish("sequence.x", "not yet sequenced");
      const refusal = await ensureTopology(jsm, FIRST).then(
        () => null,
        (e: unknown) => e,
      );
      expect(String(refusal)).toContain("1 messages not yet sequenced");
      expect((await jsm.streams.info(INTAKE_STREAM)).config.retention).toBe(RetentionPolicy.Limits);
      expect((await jsm.streams.info(INTAKE_STREAM)).state.messages).toBe(1);
      // Sequenced (acked): drained, so it is recreated.
      const consumer = await js.consumers.get(INTAKE_STREAM, SEQUENCER_CONSUMER);
      const msg = await consumer.next({ expires: 2_000 });
      await msg?.ackAck();
      await ensureTopology(jsm, FIRST);
      await expectStream(INTAKE_STREAM, "sequence.>", FIRST.duplicateWindowMs);
      await expectConsumer(FIRST);
      // Work-queue retention at work: kept until acked, gone after.
      await js.publish("sequence.y", "one");
      expect((await jsm.streams.info(INTAKE_STREAM)).state.messages).toBe(1);
      await (await consumer.next({ expires: 2_000 }))?.ackAck();
      await waitFor(
        "the acked message to go",
        async () => (await jsm.streams.info(INTAKE_STREAM)).state.messages === 0,
      );
    },
    TIMEOUT,
  );

  test(
    "a pre-existing SEQUENCE with memory storage is refused with a clear error",
    async () => {
      await jsm.streams.delete(INTAKE_STREAM); // also deletes the consumer
      await jsm.streams.delete(TRADING_STREAM);
      await jsm.streams.add({
        name: INTAKE_STREAM,
        subjects: ["sequence.>"],
        storage: StorageType.Memory,
        retention: RetentionPolicy.Limits,
      });
      const error = await ensureTopology(jsm, FIRST).then(
        () => null,
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(Error);
      const message = (error as Error).message;
      expect(message).toContain("SEQUENCE");
      expect(message).toContain("file storage");
      // Nothing was changed or created on the way to the refusal.
      expect((await jsm.streams.info(INTAKE_STREAM)).config.storage).toBe(StorageType.Memory);
      expect(await jsm.streams.names().next()).toEqual([INTAKE_STREAM]);
      expect(await jsm.consumers.list(INTAKE_STREAM).next()).toEqual([]);
    },
    TIMEOUT,
  );
});

describe("migrations on PostgreSQL", () => {
  let url: string;
  let databases: Database[] = [];
  let sqlClient: postgres.Sql | undefined;

  beforeAll(async () => {
    url = await (await getPostgres()).createDatabase();
    sqlClient = postgres(url, { max: 2, onnotice: () => {}, connect_timeout: 10 });
  }, TIMEOUT);

  afterAll(async () => {
    await Promise.all(databases.map((d) => d.close()));
    databases = [];
    await sqlClient?.end({ timeout: 5 });
  }, TIMEOUT);

  const db = () => {
    if (!sqlClient) throw new Error("no client");
    return sqlClient;
  };

  const tableCounts = async () => {
    const rows = await db()<{ name: string; n: number }[]>`
      select c.relname as name, count(*)::int as n
      from pg_class c join pg_namespace ns on ns.oid = c.relnamespace
      where c.relkind = 'r' and c.relname in ('events', 'rejected_messages')
      group by c.relname order by c.relname`;
    return rows.map((r) => [r.name, r.n]);
  };

  const migrationRows = async () =>
    db()<{ id: number; hash: string; created_at: string }[]>`
      select id, hash, created_at::text from drizzle.__drizzle_migrations order by id`;

  // Serialized by a session-level advisory lock: on PGlite every client shares one session, so nothing is serialized.
  test.skipIf(onPglite)(
    "migrate() from 4 instances at once applies the schema exactly once; again is a no-op (needs real PostgreSQL sessions)",
    async () => {
      databases = await Promise.all(
        Array.from({ length: 4 }, () => openDatabase({ url, pgliteDir: "/nonexistent-unused" })),
      );
      for (const d of databases) expect(d.kind).toBe("postgres");
      await Promise.all(databases.map((d) => d.migrate()));

      expect(await tableCounts()).toEqual([
        ["events", 1],
        ["rejected_messages", 1],
      ]);
      const applied = await migrationRows();
      expect(applied).toHaveLength(MIGRATIONS);

      // Every instance sees the tables.
      for (const d of databases) {
        await d.ping();
        const [row] = await d.db.select({ n: count() }).from(events);
        expect(row?.n).toBe(0);
      }

      // Again, sequentially and concurrently: nothing changes.
      await databases[0]?.migrate();
      await Promise.all(databases.map((d) => d.migrate()));
      expect(await migrationRows()).toEqual(applied);
      expect(await tableCounts()).toEqual([
        ["events", 1],
        ["rejected_messages", 1],
      ]);

      // The advisory lock is released after each run (no session still holds it).
      const [locks] = await db()<{ n: number }[]>`
        select count(*)::int as n from pg_locks
        where locktype = 'advisory' and granted
          and database = (select oid from pg_database where datname = current_database())`;
      expect(locks?.n).toBe(0);
    },
    TIMEOUT,
  );

  test(
    "the events table refuses a broken chain, a duplicate reference_id and a duplicate previous_id",
    async () => {
      // Applied by the test above; again here (a no-op then) so this one also stands alone where that one is skipped.
      const migrated = await openDatabase({ url, pgliteDir: "/nonexistent-unused" });
      databases.push(migrated);
      await migrated.migrate();
      const pg = db();
      const now = new Date().toISOString();
      let digestBytes = 32;
      const insert = (sequenceId: number, previousId: number, referenceId: number) =>
        pg`insert into events (sequence_id, previous_id, reference_id, type, user_id, payload, created_at, sequenced_at,
                               digest)
            values (${sequenceId}, ${previousId}, ${referenceId}, 'CREATE_ORDER', 1, '{}', ${now}, ${now},
                    decode(repeat('00', ${digestBytes}), 'hex'))`;
      const failure = (p: Promise<unknown>) =>
        p.then(
          () => {
            throw new Error("insert unexpectedly succeeded");
          },
          (e: unknown) => e as { code?: string; constraint_name?: string },
        );

      await insert(1, 0, 1001);

      // previous_id must be sequence_id - 1
      const broken = await failure(insert(2, 0, 1002));
      expect(broken.code).toBe("23514");
      expect(broken.constraint_name).toBe("events_previous_id_is_predecessor");
      const broken2 = await failure(insert(5, 3, 1005));
      expect(broken2.constraint_name).toBe("events_previous_id_is_predecessor");

      // the digest is a SHA-256: 32 bytes
      digestBytes = 31;
      const shortDigest = await failure(insert(2, 1, 1002));
      expect(shortDigest.constraint_name).toBe("events_digest_is_sha256");
      digestBytes = 32;

      // sequence ids are positive
      const zero = await failure(insert(0, -1, 1000));
      expect(zero.code).toBe("23514");
      expect(zero.constraint_name).toBe("events_sequence_id_positive");

      // reference_id is unique
      const dupRef = await failure(insert(2, 1, 1001));
      expect(dupRef.code).toBe("23505");
      expect(dupRef.constraint_name).toBe("events_reference_id_unique");

      // previous_id is unique: the check ties it to sequence_id - 1, so a repeated previous_id repeats sequence_id
      // and the primary key refuses it. No index of its own does that any more (drizzle/0005).
      const dupPrev = await failure(insert(1, 0, 1003));
      expect(dupPrev.code).toBe("23505");
      expect(dupPrev.constraint_name).toBe("events_pkey");
      const [redundant] = await pg<{ n: number }[]>`
        select count(*)::int as n from pg_indexes where tablename = 'events' and indexname = 'events_previous_id_unique'`;
      expect(redundant?.n).toBe(0);

      // Without the check a row could name any predecessor: the check is what keeps previous_id unique. Lift it
      // inside a transaction that is rolled back, and a second row naming predecessor 0 goes in.
      const unchecked = await pg
        .begin(async (tx) => {
          await tx`alter table events drop constraint events_previous_id_is_predecessor`;
          await tx`insert into events (sequence_id, previous_id, reference_id, type, user_id, payload, created_at, sequenced_at,
                                    digest)
                 values (7, 0, 1007, 'CREATE_ORDER', 1, '{}', ${now}, ${now}, decode(repeat('00', 32), 'hex'))`;
          const [n] = await tx<{ n: number }[]>`select count(*)::int as n from events where previous_id = 0`;
          throw Object.assign(new Error("roll back"), { rowsNamingZero: n?.n });
        })
        .catch((e: { rowsNamingZero?: number }) => e.rowsNamingZero);
      expect(unchecked).toBe(2);

      // The rollback restored the check, and only the one valid row was stored.
      const [check] = await pg<{ n: number }[]>`
        select count(*)::int as n from pg_constraint where conname = 'events_previous_id_is_predecessor'`;
      expect(check?.n).toBe(1);
      const rows = await pg<{ sequence_id: string; previous_id: string; reference_id: string }[]>`
        select sequence_id::text, previous_id::text, reference_id::text from events order by sequence_id`;
      expect(rows.map((r) => [r.sequence_id, r.previous_id, r.reference_id])).toEqual([["1", "0", "1001"]]);

      // The valid successor is accepted.
      await insert(2, 1, 1002);
      const [total] = await pg<{ n: number }[]>`select count(*)::int as n from events`;
      expect(total?.n).toBe(2);

      // idempotency_key: unique among the rows that have one, through a partial index (rows without a key, most
      // of them, take no room in it); rows 1 and 2 both have none.
      const [index] = await pg<{ definition: string }[]>`
        select indexdef as definition from pg_indexes where indexname = 'events_idempotency_key_unique'`;
      expect(index?.definition).toContain("UNIQUE INDEX");
      expect(index?.definition).toContain("WHERE (idempotency_key IS NOT NULL)");
      const keyed = (sequenceId: number, key: string) =>
        pg`insert into events (sequence_id, previous_id, reference_id, type, user_id, idempotency_key, payload,
                               created_at, sequenced_at, digest)
            values (${sequenceId}, ${sequenceId - 1}, ${2000 + sequenceId}, 'CREATE_ORDER', 1, ${key}, '{}', ${now},
                    ${now}, decode(repeat('00', 32), 'hex'))`;
      await keyed(3, "1:k");
      const dupKey = await failure(keyed(4, "1:k"));
      expect(dupKey.code).toBe("23505");
      expect(dupKey.constraint_name).toBe("events_idempotency_key_unique");
      await keyed(4, "1:other");
    },
    TIMEOUT,
  );
});

describe("migrations on PGlite", () => {
  const root = mkdtempSync(join(tmpdir(), "provisioning-pglite-"));
  const dir = join(root, "pg");
  let database: Database | undefined;

  afterAll(async () => {
    await database?.close();
    database = undefined;
    rmSync(root, { recursive: true, force: true });
  }, TIMEOUT);

  const migrationCount = async (d: Database) => {
    const result = (await d.db.execute(
      sql`select count(*)::int as n from drizzle.__drizzle_migrations`,
    )) as unknown as { rows: { n: number }[] } | { n: number }[];
    const rows = Array.isArray(result) ? result : result.rows;
    return rows[0]?.n;
  };

  test(
    "migrate() is idempotent and the data survives a close and reopen of the directory",
    async () => {
      database = await openDatabase({ url: undefined, pgliteDir: dir });
      expect(database.kind).toBe("pglite");
      await database.migrate();
      await database.migrate();
      expect(await migrationCount(database)).toBe(MIGRATIONS);
      const [empty] = await database.db.select({ n: count() }).from(events);
      expect(empty?.n).toBe(0);

      const now = new Date().toISOString();
      await database.db.insert(events).values({
        sequenceId: 1n,
        previousId: 0n,
        referenceId: 424242n,
        type: "CREATE_ORDER",
        userId: 7n,
        payload: '{"sequenceId":"1"}',
        createdAt: now,
        sequencedAt: now,
        digest: new Uint8Array(32),
      });
      // The check constraint holds on PGlite too.
      const broken = await database.db
        .insert(events)
        .values({
          sequenceId: 3n,
          previousId: 1n,
          referenceId: 424243n,
          type: "CREATE_ORDER",
          userId: 7n,
          payload: "{}",
          createdAt: now,
          sequencedAt: now,
          digest: new Uint8Array(32),
        })
        .then(
          () => null,
          (e: unknown) => e,
        );
      expect(broken).not.toBeNull();
      await database.close();
      database = undefined;

      database = await openDatabase({ url: undefined, pgliteDir: dir });
      await database.migrate();
      expect(await migrationCount(database)).toBe(MIGRATIONS);
      const rows = await database.db.select().from(events);
      expect(rows).toHaveLength(1);
      expect(rows[0]?.sequenceId).toBe(1n);
      expect(rows[0]?.previousId).toBe(0n);
      expect(rows[0]?.referenceId).toBe(424242n);
      expect(rows[0]?.userId).toBe(7n);
      expect(rows[0]?.payload).toBe('{"sequenceId":"1"}');
      expect(new Date(rows[0]?.createdAt ?? "").toISOString()).toBe(now);
    },
    TIMEOUT,
  );
});
