/**
 * A TRADING stream holding sequenced events the way the sequencer publishes them (JetStreamTradingLog: bodies,
 * subjects, msg ids with the chained digest, expected-last-sequence headers), on a real nats-server, without
 * PostgreSQL: for the readers of TRADING (src/client) and their tests. Also a raw publish, for the messages the
 * sequencer would never write (out of order, tampered), as an admin or an open broker's client could.
 */
import { type JetStreamClient, type JetStreamManager, jetstream, jetstreamManager } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { ensureTopology, TRADING_STREAM } from "../../src/adapters/nats/topology.ts";
import { JetStreamTradingLog, subjectOf, tradingMsgId } from "../../src/adapters/nats/trading-publisher.ts";
import { DigestChain, ZERO_DIGEST } from "../../src/app/log-digest.ts";
import { encodeSequencedEvent, type SequencedEvent } from "../../src/domain/events.ts";
import { makeOrder } from "./stack.ts";
import { waitFor } from "./wait.ts";

/** One event as published: its body and full chain digest. */
export type Published = { sequenceId: bigint; event: SequencedEvent; payload: string; digest: string };

export type TradingFixture = {
  nc: NatsConnection;
  js: JetStreamClient;
  jsm: JetStreamManager;
  /** Every event published so far, in order; published[i] has sequenceId i + 1. */
  published: Published[];
  /** The full digest of event `sequenceId` (the zero digest for 0). */
  digestOf(sequenceId: bigint): string;
  /** The next `count` events, built, chained and appended as the sequencer does. */
  append(count: number): Promise<Published[]>;
  /** Builds the next event (sequenceId, previousId, body, digest) without publishing it or moving on. */
  next(): Published;
  /** Publishes bytes on TRADING with a msg id and no expectations, as a client other than the sequencer could. */
  publishRaw(subject: string, payload: string, msgId: string): Promise<number>;
  /** Resolves once this connection reaches TRADING again (after a server restart). */
  ready(): Promise<void>;
  close(): Promise<void>;
};

/** Opens `url` (as the connection options say, e.g. admin credentials), provisions the topology, appends `count`. */
export async function openTradingFixture(
  url: string,
  count = 0,
  connectOptions: Parameters<typeof connect>[0] = {},
): Promise<TradingFixture> {
  // Reconnects for as long as a test restarts the server.
  const nc = await connect({
    ...connectOptions,
    servers: url,
    maxReconnectAttempts: -1,
    reconnectTimeWait: 250,
  });
  const jsm = await jetstreamManager(nc);
  const js = jetstream(nc);
  await ensureTopology(jsm, { duplicateWindowMs: 120_000, ackWaitMs: 30_000, maxAckPending: 20_000 });
  const log = new JetStreamTradingLog(nc, js, jsm, 5_000);
  const published: Published[] = [];
  const chain = new DigestChain(ZERO_DIGEST);
  const build = (): Published => {
    const sequenceId = BigInt(published.length + 1);
    const event: SequencedEvent = {
      ...makeOrder(),
      sequenceId,
      previousId: sequenceId - 1n,
      sequencedAt: new Date().toISOString(),
    };
    const payload = encodeSequencedEvent(event);
    return { sequenceId, event, payload, digest: new DigestChain(chain.head).next(payload) };
  };
  const fixture: TradingFixture = {
    nc,
    js,
    jsm,
    published,
    digestOf: (sequenceId) =>
      sequenceId === 0n ? ZERO_DIGEST : (published[Number(sequenceId) - 1]?.digest ?? "unknown"),
    next: build,
    async append(n) {
      const batch: Published[] = [];
      for (let i = 0; i < n; i++) {
        const one = build();
        chain.next(one.payload);
        published.push(one);
        batch.push(one);
      }
      await log.append(batch.map((p) => ({ ...p, type: p.event.type })));
      return batch;
    },
    async publishRaw(subject, payload, msgId) {
      return (await js.publish(subject, payload, { msgID: msgId, expect: { streamName: TRADING_STREAM } }))
        .seq;
    },
    async ready() {
      await waitFor("TRADING to answer again", async () =>
        jsm.streams.info(TRADING_STREAM).then(
          () => true,
          () => false,
        ),
      );
    },
    close: () => nc.close(),
  };
  await fixture.append(count);
  return fixture;
}

export { subjectOf, tradingMsgId };
