/**
 * What the ops listener shows: the Prometheus metrics (with the figures read at scrape time from JetStream and the
 * database) and the live status page's probes. Every role has both; the API and sequencer parts appear only in a
 * process that runs that role.
 */
import type { DrizzleEventStore } from "../adapters/db/event-store.ts";
import { readWriterLease } from "../adapters/db/writer-lease.ts";
import type { ReadinessCheck } from "../adapters/http/ops.ts";
import { StatusSampler } from "../adapters/http/status-page.ts";
import { Metrics } from "../adapters/metrics.ts";
import { INTAKE_STREAM, SEQUENCER_CONSUMER, TRADING_STREAM } from "../adapters/nats/topology.ts";
import type { LeadershipState } from "../app/leadership.ts";
import type { Logger } from "../logger.ts";
import type { RoleConnection } from "./infrastructure.ts";
import type { SequencerRole } from "./sequencer-role.ts";

/** TRADING's last position: the head of the sequenced log as published. */
async function tradingHead(info: Pick<RoleConnection, "jsm">): Promise<bigint> {
  return BigInt((await info.jsm.streams.info(TRADING_STREAM)).state.last_seq);
}

/** `leadership`: the sequencer role's state, in a process that runs one (sequencer_leader). */
export function createMetrics(
  info: Pick<RoleConnection, "jsm">,
  store: Pick<DrizzleEventStore, "head">,
  leadership: LeadershipState | undefined,
): Metrics {
  return new Metrics({
    intakeLag: async () => {
      const consumer = await info.jsm.consumers.info(INTAKE_STREAM, SEQUENCER_CONSUMER);
      return { pending: consumer.num_pending, ackPending: consumer.num_ack_pending };
    },
    tradingHead: () => tradingHead(info),
    databaseHead: async () => (await store.head()).sequenceId,
    ...(leadership ? { isLeader: () => leadership.leader } : {}),
  });
}

export type StatusSources = {
  info: Pick<RoleConnection, "jsm">;
  store: Pick<DrizzleEventStore, "head">;
  database: Parameters<typeof readWriterLease>[0];
  readiness: ReadinessCheck;
  metrics: Metrics;
  /** Whether this process serves the API (the accepted count). */
  serveApi: boolean;
  sequencer: Pick<SequencerRole, "lease" | "leadership"> | undefined;
  log: Logger;
};

/** The status page's sampler (/status, /status.json on the ops listener). */
export function createStatusSampler(sources: StatusSources): StatusSampler {
  const { info, store, metrics, sequencer } = sources;
  return new StatusSampler(
    {
      intake: async () => {
        const [consumer, stream] = await Promise.all([
          info.jsm.consumers.info(INTAKE_STREAM, SEQUENCER_CONSUMER),
          info.jsm.streams.info(INTAKE_STREAM),
        ]);
        return {
          pending: consumer.num_pending,
          ackPending: consumer.num_ack_pending,
          redeliveredUnacked: consumer.num_redelivered,
          stored: stream.state.last_seq,
        };
      },
      databaseHead: async () => (await store.head()).sequenceId,
      tradingHead: () => tradingHead(info),
      writer: () => readWriterLease(sources.database),
      readiness: sources.readiness,
      ...(sources.serveApi ? { accepted: () => metrics.accepted() } : {}),
      ...(sequencer
        ? {
            sequencer: async () => ({
              leader: sequencer.leadership.leader,
              lease: sequencer.lease.describe(),
              error: sequencer.leadership.term?.sequencer.status().lastError ?? null,
              redelivered: await metrics.redeliveries(),
            }),
          }
        : {}),
    },
    sources.log,
  );
}
