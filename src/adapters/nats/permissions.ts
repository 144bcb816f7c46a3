/**
 * Who may do what on the broker: one NATS user per role, each allowed exactly the subjects its code uses, enforced
 * by nats-server. The embedded server and deploy/nats-auth.conf (compose) are both rendered from this table, and
 * test/int/nats-permissions.int.test.ts runs every role's real work and every known attack against a server
 * running the shipped file.
 *
 * - api:       publishes intake (`sequence.*`), reads and writes the IDEMPOTENCY and WORKERS buckets, reads
 *              SEQUENCE's waiting messages one by one for GET /references (no consumer: a work-queue stream takes
 *              none but the sequencer's); may not pull or ack for `sequencer`, nor publish `trading.*`.
 * - sequencer: pulls and acks `SEQUENCE`/`sequencer`, publishes `trading.*`, reads TRADING messages back to check
 *              them; may not publish `sequence.*` nor touch the buckets.
 * - reader:    matching engines, `sequencer replay` and `inspect`: reads TRADING through its own consumers and
 *              stream/consumer info; publishes to no stream.
 * - admin:     everything: creating the topology (`sequencer provision`, or the embedded server's start) and the
 *              `nats` CLI.
 * No runtime role may create, update, delete or purge a stream, nor change or delete the `sequencer` consumer.
 *
 * JetStream calls are requests on `$JS.API.…` subjects whose answers come back on the caller's inbox; each role
 * uses its own inbox prefix (`_INBOX_<role>`) and may subscribe only there, so no role can read another's
 * answers (an idempotency record, a PubAck).
 */
import { INTAKE_STREAM, SEQUENCER_CONSUMER, TRADING_STREAM } from "./topology.ts";

export const NATS_ROLES = ["api", "sequencer", "reader", "admin"] as const;
export type NatsRole = (typeof NATS_ROLES)[number];

/** The KV buckets' streams (a bucket NAME lives in stream KV_NAME under subjects $KV.NAME.>). */
const IDEMPOTENCY_KV_STREAM = "KV_IDEMPOTENCY";
const WORKERS_KV_STREAM = "KV_WORKERS";

type Rule = { allow: string[]; deny?: string[] };
export type RolePermissions = { publish: Rule; subscribe: Rule };

/** The inbox prefix a role's connections use (nats.js `inboxPrefix`); the only subjects a runtime role may subscribe. */
export function inboxPrefixOf(role: NatsRole): string {
  return `_INBOX_${role}`;
}

const API = "$JS.API";
const info = (stream: string) => `${API}.STREAM.INFO.${stream}`;
/** Reading one stored message: the classic and the direct get (KV reads use whichever the bucket allows). */
const readMessages = (stream: string) => [`${API}.STREAM.MSG.GET.${stream}`, `${API}.DIRECT.GET.${stream}.>`];
/** Ephemeral consumers of a stream (create, pull, info), the way ordered and headers-only readers work. */
const ephemeralReaders = (stream: string) => [
  `${API}.CONSUMER.CREATE.${stream}`,
  `${API}.CONSUMER.CREATE.${stream}.>`,
  `${API}.CONSUMER.MSG.NEXT.${stream}.*`,
  `${API}.CONSUMER.INFO.${stream}.*`,
];
/** Every way to create, change, delete or read through the sequencer's durable consumer, except reading its info. */
const sequencerConsumerControl = [
  `${API}.CONSUMER.CREATE.${INTAKE_STREAM}.${SEQUENCER_CONSUMER}`,
  `${API}.CONSUMER.CREATE.${INTAKE_STREAM}.${SEQUENCER_CONSUMER}.>`,
  `${API}.CONSUMER.DURABLE.CREATE.${INTAKE_STREAM}.${SEQUENCER_CONSUMER}`,
  `${API}.CONSUMER.DELETE.${INTAKE_STREAM}.${SEQUENCER_CONSUMER}`,
  `${API}.CONSUMER.MSG.NEXT.${INTAKE_STREAM}.${SEQUENCER_CONSUMER}`,
  `$JS.ACK.${INTAKE_STREAM}.${SEQUENCER_CONSUMER}.>`,
];
/** What every runtime role may look at: account info and the pipeline's stream and consumer info (metrics). */
const pipelineInfo = [
  `${API}.INFO`,
  info(INTAKE_STREAM),
  info(TRADING_STREAM),
  `${API}.CONSUMER.INFO.${INTAKE_STREAM}.${SEQUENCER_CONSUMER}`,
];

export const ROLE_PERMISSIONS: Record<NatsRole, RolePermissions> = {
  api: {
    publish: {
      allow: [
        "sequence.*",
        ...pipelineInfo,
        info(IDEMPOTENCY_KV_STREAM),
        info(WORKERS_KV_STREAM),
        "$KV.IDEMPOTENCY.>",
        "$KV.WORKERS.>",
        ...readMessages(IDEMPOTENCY_KV_STREAM),
        ...readMessages(WORKERS_KV_STREAM),
        // GET /references: SEQUENCE's waiting messages, read one by one.
        ...readMessages(INTAKE_STREAM),
      ],
      deny: sequencerConsumerControl,
    },
    subscribe: { allow: [`${inboxPrefixOf("api")}.>`] },
  },
  sequencer: {
    publish: {
      allow: [
        "trading.*",
        ...pipelineInfo,
        `${API}.CONSUMER.MSG.NEXT.${INTAKE_STREAM}.${SEQUENCER_CONSUMER}`,
        `$JS.ACK.${INTAKE_STREAM}.${SEQUENCER_CONSUMER}.>`,
        // Reading a TRADING message back: a duplicate PubAck and catch-up check that the stored message is ours.
        ...readMessages(TRADING_STREAM),
      ],
    },
    subscribe: { allow: [`${inboxPrefixOf("sequencer")}.>`] },
  },
  reader: {
    publish: {
      // Ordered consumers of TRADING, but no delete: another reader's durable consumer is not theirs to remove
      // (an abandoned reader's consumer expires by itself after its inactivity threshold).
      allow: [...pipelineInfo, ...ephemeralReaders(TRADING_STREAM), ...readMessages(TRADING_STREAM)],
    },
    subscribe: { allow: [`${inboxPrefixOf("reader")}.>`] },
  },
  admin: { publish: { allow: [">"] }, subscribe: { allow: [">"] } },
};

/** The environment variable that holds a role's password for the server (deploy/nats-auth.conf, the embedded child). */
export function passwordVariableOf(role: NatsRole): string {
  return `NATS_${role.toUpperCase()}_PASSWORD`;
}

function list(subjects: readonly string[]): string {
  return `[${subjects.map((s) => JSON.stringify(s)).join(", ")}]`;
}

function rule(name: string, r: Rule): string {
  const deny = r.deny ? `, deny: ${list(r.deny)}` : "";
  return `${name}: { allow: ${list(r.allow)}${deny} }`;
}

/**
 * The nats-server `authorization` block: one user per role, named after it, whose password the server reads from
 * the environment variable `NATS_<ROLE>_PASSWORD` (so the file holds no secret and can be committed).
 */
export function renderAuthorization(): string {
  const users = NATS_ROLES.map((role) => {
    const p = ROLE_PERMISSIONS[role];
    return [
      `    {`,
      `      user: ${role}`,
      `      password: $${passwordVariableOf(role)}`,
      `      permissions: {`,
      `        ${rule("publish", p.publish)}`,
      `        ${rule("subscribe", p.subscribe)}`,
      `      }`,
      `    }`,
    ].join("\n");
  });
  return [
    "# Generated from src/adapters/nats/permissions.ts (bun src/adapters/nats/permissions.ts > deploy/nats-auth.conf);",
    "# test/unit/nats-permissions.unit.test.ts fails when the two differ. Passwords come from the environment.",
    "authorization {",
    "  timeout: 2",
    "  users: [",
    users.join(",\n"),
    "  ]",
    "}",
    "",
  ].join("\n");
}

if (import.meta.main) process.stdout.write(renderAuthorization());
