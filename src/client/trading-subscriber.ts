/**
 * subscribeTrading: the sequenced events from TRADING after a given sequenceId, decoded and checked, in order,
 * each exactly once, for as long as the caller reads (a matching engine), or up to a position (a replay).
 * subscribeTradingBatches gives the same events as arrays, the messages that arrived together (one await each).
 *
 * TRADING's position equals the event's sequenceId, so resuming is a read from position after+1 through an
 * ephemeral pull consumer in the broker's memory (trading-pull.ts). When it is lost — a nats-server restart, a
 * delete, a reconnect, two missed heartbeats, a delivery skipped in transit — this reader opens a new one at the
 * next position it has not yielded. It keeps that position itself and checks every message against it
 * (trading-check.ts): a position already delivered is dropped (never yielded twice), and a position past the next
 * one is a TradingGapError — or a TradingTrimmedError when TRADING's retention limits removed it (those events are
 * in PostgreSQL, GET /events). A message that is not the event for its position, or breaks the digest chain, is a
 * TradingOrderError / TradingDigestError / TradingInvalidEventError. None is retried: the iteration ends with it.
 *
 * Who may use it: any NATS user the broker lets read TRADING; in this service that is the `reader` role (ordered
 * consumers of TRADING, stream info and message reads; src/adapters/nats/permissions.ts). Another role is refused
 * by the broker (TradingAccessError); wrong credentials are a NatsAuthenticationError.
 *
 * Runtimes: only nats.js v3 packages. Given `servers`, it connects through @nats-io/transport-node (nats://,
 * tls://) or nats-core's WebSocket transport (ws://, wss://), which run on Bun, Node and Deno (through its npm
 * compatibility); any runtime may instead pass its own open `connection` (the caller then owns and closes it).
 * Bun and Deno import the TypeScript directly (`exactly-once-sequencer/trading`, package.json "exports"). Node
 * consumes it through a bundler (e.g. `bun build --target node`, as test/e2e/trading-subscriber.e2e.test.ts does)
 * or a TypeScript loader: Node's own type stripping (22.6+) skips files under node_modules and refuses
 * non-erasable syntax such as constructor parameter properties, which these modules use.
 * Nothing here touches PostgreSQL, Drizzle or Elysia.
 */
import { Buffer } from "node:buffer";
import {
  JetStreamApiCodes,
  JetStreamApiError,
  type JetStreamManager,
  jetstreamManager,
} from "@nats-io/jetstream";
import type { Msg, NatsConnection } from "@nats-io/nats-core";
import { type AckNumbers, readAckSubject, replyBytes } from "../adapters/nats/ack-subject.ts";
import { connectNats } from "../adapters/nats/connection.ts";
import type { NatsCredentials } from "../adapters/nats/credentials.ts";
import type { NatsRole } from "../adapters/nats/permissions.ts";
import { TRADING_STREAM } from "../adapters/nats/topology.ts";
import { msgIdOf } from "../adapters/nats/trading-publisher.ts";
import { backoffDelay } from "../app/backoff.ts";
import { isDigestHex, ZERO_DIGEST } from "../app/log-digest.ts";
import { retry } from "../app/retry.ts";
import { sleep } from "../app/sleep.ts";
import { TradingChecker, type TradingEvent } from "./trading-check.ts";
import { TradingAccessError, TradingGapError, TradingTrimmedError } from "./trading-errors.ts";
import { isPermissionRefusal, TradingPullConsumer } from "./trading-pull.ts";

export { TRADING_PULL_MESSAGES } from "./trading-pull.ts";

export type SubscribeTradingOptions = {
  /**
   * The broker's URL (nats://, tls://, ws://, wss://); the client learns a cluster's other members from it. Or
   * pass `connection` instead.
   */
  servers?: string;
  /** How to prove who this reader is (user + password, token, nkey seed or creds file). */
  credentials?: NatsCredentials;
  /** The role whose inbox prefix (`_INBOX_<role>`) the broker lets this user subscribe to; `reader` by default. */
  role?: NatsRole;
  /** An open connection to read through instead of `servers`; it stays open when the iteration ends. */
  connection?: NatsConnection;
  /** Read from sequenceId after+1 (0, the default: from the first event). */
  after?: bigint;
  /**
   * The full digest (64 hex characters) of event `after`: the `digest` of the last TradingEvent processed, or
   * `events.digest` in PostgreSQL. The zero digest when after is 0. Required when after > 0; null there reads
   * without the digest chain check (a msg id carries too little of a digest to start the chain from).
   */
  previousDigest?: string | null;
  /**
   * Stop after this sequenceId, or "end": after TRADING's last position when the subscription starts. Unset: read
   * on, waiting for new events, until `signal` aborts or the caller stops iterating.
   */
  until?: bigint | "end";
  /** Ends the iteration (without an error) at the next message or wait. */
  signal?: AbortSignal;
  /** How long connecting may take (ms); 5 s by default. */
  connectTimeoutMs?: number;
};

export type { TradingEvent } from "./trading-check.ts";

/** TRADING's first position now (last + 1 when it holds none) and whether it holds none. */
async function tradingStart(
  jsm: JetStreamManager,
): Promise<{ earliest: bigint; last: bigint; empty: boolean }> {
  const { state } = await jsm.streams.info(TRADING_STREAM);
  // An empty stream reports first_seq = last_seq + 1 (also after its limits removed everything).
  const empty = state.messages === 0;
  return {
    earliest: BigInt(empty ? state.last_seq + 1 : state.first_seq),
    last: BigInt(state.last_seq),
    empty,
  };
}

function checkedStart(options: SubscribeTradingOptions): { after: bigint; previousDigest: string | null } {
  const after = options.after ?? 0n;
  if (typeof after !== "bigint" || after < 0n)
    throw new RangeError("after must be a sequenceId (0n or more)");
  const previousDigest =
    options.previousDigest === undefined && after === 0n ? ZERO_DIGEST : options.previousDigest;
  if (previousDigest === undefined) {
    throw new TypeError(
      `previousDigest is required with after=${after}: the digest of event ${after} (the digest of the last ` +
        "TradingEvent processed, or events.digest), or null to read without the digest chain check",
    );
  }
  if (previousDigest !== null && !isDigestHex(previousDigest))
    throw new TypeError("previousDigest must be 64 lowercase hex characters (or null)");
  if ((options.servers === undefined) === (options.connection === undefined))
    throw new TypeError("pass either servers or connection");
  return { after, previousDigest };
}

function accessError(error: unknown): unknown {
  if (!isPermissionRefusal(error)) return error;
  return new TradingAccessError(
    `the broker refused reading ${TRADING_STREAM} (connect as the reader role): ${error instanceof Error ? error.message : String(error)}`,
    { cause: error },
  );
}

const RESUME_ATTEMPTS = 40;

/** What nats.js 3 keeps of a received message: its bytes (headers, then body) and where the body starts. */
type WireMsg = { _rdata?: unknown; _msg?: { hdr?: unknown; subject?: unknown } };
const MSG_ID_LINE = Buffer.from("\r\nNats-Msg-Id: ");
const CR = 13;

/** ASCII whitespace, as String#trim (MsgHdrs trims each value) removes it. */
const isSpace = (c: number) => c === 32 || (c >= 9 && c <= 13);

function isAscii(b: Uint8Array, from: number, to: number): boolean {
  for (let i = from; i < to; i++) if ((b[i] as number) >= 128) return false;
  return true;
}

/**
 * Where a received TRADING message's msg id and body are in the bytes the client received (headers, then body),
 * found without decoding the headers: MsgHdrs' decode (every header parsed, its key canonicalized, a map built)
 * was a sixth of replay's CPU, and only the msg id is needed — compared as bytes, not decoded (trading-check.ts).
 * One instance is refilled for every message (no object per message). The sequencer writes `Nats-Msg-Id` in that
 * spelling (tradingHeaders); anything else — another spelling, two msg id lines, a byte past ASCII (which
 * String#trim might treat otherwise), a nats.js whose message lacks these fields — makes read() false, and the
 * caller takes the msg id from the headers' own decode, so the result is the same.
 */
class ReceivedBytes {
  bytes: Buffer = Buffer.alloc(0);
  headerEnd = 0;
  idStart = 0;
  idEnd = 0;

  read(msg: Msg): boolean {
    const wire = msg as unknown as WireMsg;
    const raw = wire._rdata;
    const hdr = wire._msg?.hdr;
    if (!(raw instanceof Uint8Array) || typeof hdr !== "number" || hdr <= 0 || hdr > raw.length) return false;
    // A view (no copy), for Buffer's native search; nats.js's data is usually a Buffer already.
    const header = Buffer.isBuffer(raw) ? raw : Buffer.from(raw.buffer, raw.byteOffset, raw.length);
    // The search may run past the headers into the body: a match there counts as none.
    const at = header.indexOf(MSG_ID_LINE);
    if (at < 0 || at >= hdr) return false;
    let start = at + MSG_ID_LINE.length;
    const cr = header.indexOf(CR, start);
    let end = cr < 0 || cr > hdr ? hdr : cr;
    while (start < end && isSpace(header[start] as number)) start++;
    while (end > start && isSpace(header[end - 1] as number)) end--;
    const again = header.indexOf(MSG_ID_LINE, end);
    if ((again >= 0 && again < hdr) || !isAscii(header, start, end)) return false;
    this.bytes = header;
    this.headerEnd = hdr;
    this.idStart = start;
    this.idEnd = end;
    return true;
  }
}

/**
 * Subjects as text, decoded once per distinct subject bytes in a row: a log's events are mostly one type, and
 * decoding every subject was 4 % of a replay's CPU.
 */
class SubjectText {
  private lastBytes: Uint8Array | null = null;
  private lastText = "";

  of(msg: Msg): string {
    const bytes = (msg as unknown as WireMsg)._msg?.subject;
    if (!(bytes instanceof Uint8Array)) return msg.subject;
    const last = this.lastBytes;
    if (last !== null && last.length === bytes.length) {
      let same = true;
      for (let i = 0; i < bytes.length; i++) {
        if (last[i] !== bytes[i]) {
          same = false;
          break;
        }
      }
      if (same) return this.lastText;
    }
    // A copy: nats.js's bytes are a view of its receive buffer, which it reuses.
    this.lastBytes = bytes.slice();
    this.lastText = msg.subject;
    return this.lastText;
  }
}

/**
 * A pull consumer of TRADING from `position`. When resuming after the broker lost the previous one, JetStream
 * may still be starting (timeouts, no responders): retried with a capped backoff, up to about a minute, unless
 * refused outright (permissions, no TRADING) or aborted.
 */
async function openConsumer(
  nc: NatsConnection,
  position: bigint,
  resuming: boolean,
  signal: AbortSignal | undefined,
): Promise<TradingPullConsumer> {
  try {
    return await retry(() => TradingPullConsumer.open(nc, position), {
      attempts: resuming ? RESUME_ATTEMPTS : 1,
      baseMs: 200,
      capMs: 2_000,
      retryable: (error) =>
        !isPermissionRefusal(error) &&
        !(error instanceof JetStreamApiError && error.code === JetStreamApiCodes.StreamNotFound),
      signal,
    });
  } catch (error) {
    throw accessError(error);
  }
}

/** Why a read must open a new consumer at the next position: the consumer's own report, or a skipped delivery. */
class ConsumerLost extends Error {}

/**
 * The events after `after`, in order, each checked (see the file's comment), as arrays: each the messages that
 * arrived together, checked in one go (a reader that forwards bytes, like `sequencer replay`, then pays one await
 * per batch instead of one per event). Events checked before a failing one are yielded before the error.
 * Throws TradingTrimmedError before the first event when TRADING no longer holds after+1, and a TradingStreamError
 * subclass wherever the stream stops being the log; TradingAccessError when the broker refuses the reads.
 */
export async function* subscribeTradingBatches(
  options: SubscribeTradingOptions,
): AsyncGenerator<TradingEvent[], void> {
  const { after, previousDigest } = checkedStart(options);
  const { signal } = options;
  if (signal?.aborted) return;
  const nc =
    options.connection ??
    (await connectNats(options.servers as string, {
      credentials: options.credentials,
      role: options.role ?? "reader",
      timeout: options.connectTimeoutMs ?? 5_000,
      // A follower keeps following through broker restarts; `signal` or ending the iteration stops it.
      maxReconnectAttempts: -1,
      reconnectTimeWait: 1_000,
    }));
  try {
    let jsm: JetStreamManager;
    let start: Awaited<ReturnType<typeof tradingStart>>;
    try {
      jsm = await jetstreamManager(nc);
      start = await tradingStart(jsm);
    } catch (error) {
      throw accessError(error);
    }
    if (after + 1n < start.earliest && after < start.last)
      throw new TradingTrimmedError(after + 1n, start.earliest, start.empty);
    const until = options.until === "end" ? start.last : options.until;
    // Nothing to read.
    if (until !== undefined && until <= after) return;
    const checker = new TradingChecker(after, previousDigest);
    const subjects = new SubjectText();
    const pulled: AckNumbers = { position: 0, delivery: 0, deliveries: 0 };
    const wire = new ReceivedBytes();
    // Consumers lost in a row before delivering anything: a broker that keeps losing them is waited for, then given up.
    let fruitless = 0;
    for (let resuming = false; ; resuming = true) {
      if (fruitless > 0) await sleep(backoffDelay(fruitless - 1, 200, 2_000), signal);
      if (signal?.aborted) return;
      if (fruitless >= RESUME_ATTEMPTS) {
        throw new Error(
          `reading ${TRADING_STREAM} after sequenceId ${checker.expected - 1n}: the broker lost ${fruitless} consumers in a row`,
        );
      }
      // Each consumer starts at the next position this reader has not yielded: a resume skips nothing.
      const consumer = await openConsumer(nc, checker.expected, resuming, signal);
      const stop = () => consumer.close();
      signal?.addEventListener("abort", stop, { once: true });
      const expectedAtOpen = checker.expected;
      try {
        for (;;) {
          if (signal?.aborted) return;
          const received = consumer.takeAll();
          if (received.length === 0) {
            const interrupted = consumer.interrupted;
            if (interrupted?.kind === "failed") throw accessError(interrupted.error);
            if (interrupted?.kind === "connectionClosed") {
              throw new Error(
                `reading ${TRADING_STREAM} stopped after sequenceId ${checker.expected - 1n}: the NATS connection closed`,
              );
            }
            if (interrupted) break;
            await consumer.waitForMessages();
            continue;
          }
          const events: TradingEvent[] = [];
          try {
            for (const msg of received) {
              const reply = replyBytes(msg);
              if (reply === null || !readAckSubject(reply, pulled)) {
                throw new Error(
                  `reading ${TRADING_STREAM}: a message whose reply subject is not a JetStream ack subject (or names a position past 2^53)`,
                );
              }
              if (!consumer.followsLastDelivery(pulled.delivery)) throw new ConsumerLost();
              // Equal to the expected number only when both are exact (a received position is at most 2^53 − 1).
              const position =
                pulled.position === checker.expectedNumber ? checker.expected : BigInt(pulled.position);
              // Delivered again (a consumer recreated from an older position): already yielded once.
              if (position < checker.expected) continue;
              if (position > checker.expected) {
                const now = await tradingStart(jsm);
                if (now.earliest > checker.expected)
                  throw new TradingTrimmedError(checker.expected, now.earliest, now.empty);
                throw new TradingGapError(checker.expected, position);
              }
              const subject = subjects.of(msg);
              events.push(
                wire.read(msg)
                  ? checker.acceptAt(
                      position,
                      subject,
                      wire.bytes,
                      wire.idStart,
                      wire.idEnd,
                      wire.bytes.subarray(wire.headerEnd),
                    )
                  : checker.acceptReceived({
                      position,
                      subject,
                      msgId: Buffer.from(msgIdOf({ header: msg.headers }), "utf8"),
                      body: msg.data,
                    }),
              );
              if (until !== undefined && position >= until) {
                yield events;
                return;
              }
            }
          } catch (error) {
            // The events checked before the failing message are still the log's: the caller gets them first.
            if (events.length > 0) yield events;
            if (error instanceof ConsumerLost) break;
            throw error;
          }
          if (events.length > 0) yield events;
        }
      } finally {
        signal?.removeEventListener("abort", stop);
        consumer.close();
      }
      if (signal?.aborted) return;
      fruitless = checker.expected > expectedAtOpen ? 0 : fruitless + 1;
    }
  } finally {
    if (!options.connection) await nc.close();
  }
}

/**
 * The events after `after`, in order, each checked (see the file's comment), one at a time (subscribeTradingBatches,
 * flattened). Throws TradingTrimmedError before the first event when TRADING no longer holds after+1, and a
 * TradingStreamError subclass wherever the stream stops being the log; TradingAccessError when the broker refuses
 * the reads.
 */
export async function* subscribeTrading(
  options: SubscribeTradingOptions,
): AsyncGenerator<TradingEvent, void> {
  for await (const batch of subscribeTradingBatches(options)) {
    for (const event of batch) {
      if (options.signal?.aborted) return;
      yield event;
    }
  }
}
