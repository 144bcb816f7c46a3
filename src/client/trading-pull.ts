/**
 * TradingPullConsumer: one ephemeral pull consumer of TRADING from a position, read through nats.js's core API
 * (a subscription on this reader's inbox and pull requests published to it), for subscribeTrading.
 *
 * Why not nats.js's ordered consumer: it wraps every message in a JsMsg, parses its reply subject into an object
 * (split into strings, every field parsed) and hands it through an async iterator — about a fifth of a replay's
 * CPU per event (docs/performance.md, "Replay"). Here the callback only queues the message nats.js already built;
 * the reader takes what is queued as one batch and reads the two numbers it needs (stream and delivery sequence)
 * from the reply subject's bytes.
 *
 * What the ordered consumer did that this does too: the consumer is ephemeral (in the broker's memory, no acks,
 * expiring 5 minutes after its reader goes, as nats.js's own); pulls ask for at most TRADING_PULL_MESSAGES in
 * flight and queued; idle heartbeats prove the pull is alive. When the broker lost the consumer (a restart, a
 * delete, a shutdown, a leadership change), heartbeats stop, or the connection reconnected, the consumer reports
 * itself `lost` and the reader opens a new one at the next position it has not yielded (as it does when a
 * delivery sequence skips one: trading-subscriber.ts). Messages queued before that
 * stay valid (they came in order), so the reader takes them first. A refusal or a request the broker calls bad
 * is `failed`: retrying it would not help.
 *
 * Who may use it: the reader role (src/adapters/nats/permissions.ts: consumer create and pull on TRADING, its
 * own inbox prefix). The broker refusing any of them ends the read with that refusal.
 */
import { AckPolicy, DeliverPolicy, jetstreamManager } from "@nats-io/jetstream";
import {
  createInbox,
  type Msg,
  type NatsConnection,
  nanos,
  nuid,
  PermissionViolationError,
  type Status,
  type Subscription,
} from "@nats-io/nats-core";
import { replyBytes } from "../adapters/nats/ack-subject.ts";
import { TRADING_STREAM } from "../adapters/nats/topology.ts";

/**
 * Messages kept pulled ahead of the reader (asked for and not yet taken). Larger pulls mean fewer round trips
 * while catching up: a replay of 1M events ran ~6 % faster than with 1,024 (docs/performance.md, "Replay"); at
 * ~300 bytes an event this holds about a megabyte. The bench's raw ordered consumer uses the same figure.
 */
export const TRADING_PULL_MESSAGES = 4096;
/** A new pull is sent once this many of the window are free, so each request is for about a thousand. */
const REFILL_MESSAGES = TRADING_PULL_MESSAGES / 4;
/** How long one pull request waits on the broker; it answers 408 then and the window is pulled again. */
const PULL_EXPIRES_MS = 10_000;
/** The broker sends a heartbeat this often while a pull waits; two missed mean the pull (or consumer) is gone. */
const IDLE_HEARTBEAT_MS = 5_000;
const HEARTBEAT_CHECK_MS = IDLE_HEARTBEAT_MS / 2;
/** The consumer outlives a reader that went away by this much, then the broker removes it (nats.js's figure). */
const INACTIVE_THRESHOLD_MS = 5 * 60_000;

/**
 * Why a consumer stopped delivering: `lost` — open a new one at the next position; `failed` — end the read with
 * the error; `connectionClosed` — the NATS connection closed under it (nothing more can arrive).
 */
export type PullInterruption =
  | { kind: "lost"; reason: string }
  | { kind: "failed"; error: unknown }
  | { kind: "connectionClosed" };

/** Whether the broker refused an operation for permissions (the error itself, or as its cause). */
export function isPermissionRefusal(error: unknown): boolean {
  return (
    error instanceof PermissionViolationError ||
    (error instanceof Error && error.cause instanceof PermissionViolationError)
  );
}

export class TradingPullConsumer {
  private received: Msg[] = [];
  /** Messages asked for and neither delivered nor given up by the broker (a 408's pending count). */
  private outstanding = 0;
  private interruption: PullInterruption | null = null;
  private wake: (() => void) | null = null;
  /** Messages and statuses received so far: the heartbeat check sees whether it moved (no clock read per message). */
  private heard = 0;
  private heardAtLastCheck = 0;
  /** Checks in a row that found nothing heard while a pull was waiting. */
  private quietChecks = 0;
  private readonly monitor: ReturnType<typeof setInterval>;
  private readonly statusEvents: AsyncIterable<Status> & { stop?: () => void };
  private sub: Subscription | null = null;
  private closed = false;
  private lastDelivery = 0;

  private constructor(
    private readonly nc: NatsConnection,
    private readonly inbox: string,
    private readonly nextSubject: string,
  ) {
    // Checked twice per heartbeat interval: a lost pull is noticed 10–12.5 s after the last sign of life.
    this.monitor = setInterval(() => this.checkHeartbeats(), HEARTBEAT_CHECK_MS);
    this.statusEvents = nc.status() as AsyncIterable<Status> & { stop?: () => void };
    void this.watchConnection();
  }

  /**
   * Opens a consumer of TRADING at `position` and pulls the first window. Throws what the broker answered the
   * consumer's creation (the caller maps and retries it).
   */
  static async open(nc: NatsConnection, position: bigint): Promise<TradingPullConsumer> {
    // A bare nuid (22 characters): the name is in every message's reply subject, which nats.js parses a byte at a
    // time, so a longer prefix costs on every event.
    const name = nuid.next();
    const inboxPrefix = (nc as { options?: { inboxPrefix?: string } }).options?.inboxPrefix ?? "_INBOX";
    const consumer = new TradingPullConsumer(
      nc,
      createInbox(inboxPrefix),
      `$JS.API.CONSUMER.MSG.NEXT.${TRADING_STREAM}.${name}`,
    );
    try {
      consumer.sub = nc.subscribe(consumer.inbox, {
        callback: (error, msg) => consumer.onMessage(error, msg),
      });
      const jsm = await jetstreamManager(nc);
      await jsm.consumers.add(TRADING_STREAM, {
        name,
        deliver_policy: DeliverPolicy.StartSequence,
        opt_start_seq: Number(position),
        ack_policy: AckPolicy.None,
        inactive_threshold: nanos(INACTIVE_THRESHOLD_MS),
        num_replicas: 1,
        mem_storage: true,
      });
    } catch (error) {
      consumer.close();
      throw error;
    }
    consumer.refill();
    return consumer;
  }

  /** Why the consumer stopped delivering, once it has; messages it queued before that are still to be taken. */
  get interrupted(): PullInterruption | null {
    return this.interruption;
  }

  /** Every message received and not yet taken, oldest first (possibly none); pulls more as the window frees. */
  takeAll(): Msg[] {
    const taken = this.received;
    if (taken.length > 0) {
      this.received = [];
      this.refill();
    }
    return taken;
  }

  /** Resolves when a message arrives, the consumer is interrupted, or close() is called. */
  waitForMessages(): Promise<void> {
    if (this.received.length > 0 || this.interruption || this.closed) return Promise.resolve();
    return new Promise((resolve) => {
      this.wake = resolve;
    });
  }

  /**
   * Whether a message's delivery sequence follows the last one's: a skipped one was lost in transit (a
   * reconnect), so the consumer must be replaced, not the stream called gapped.
   */
  followsLastDelivery(delivery: number): boolean {
    const follows = delivery === this.lastDelivery + 1;
    this.lastDelivery = delivery;
    return follows;
  }

  /** Stops receiving; the broker removes the consumer after its inactivity threshold (readers may not delete). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.monitor);
    this.statusEvents.stop?.();
    this.sub?.unsubscribe();
    this.notify();
  }

  private notify(): void {
    const wake = this.wake;
    this.wake = null;
    wake?.();
  }

  private interrupt(interruption: PullInterruption): void {
    this.interruption ??= interruption;
    this.notify();
  }

  /** Asks for as many messages as keep the window full, once a quarter of it is free. */
  private refill(): void {
    if (this.closed || this.interruption) return;
    const want = TRADING_PULL_MESSAGES - this.outstanding - this.received.length;
    if (want < REFILL_MESSAGES) return;
    try {
      this.nc.publish(
        this.nextSubject,
        JSON.stringify({
          batch: want,
          expires: nanos(PULL_EXPIRES_MS),
          idle_heartbeat: nanos(IDLE_HEARTBEAT_MS),
        }),
        { reply: this.inbox },
      );
    } catch (error) {
      this.interrupt({ kind: "failed", error });
      return;
    }
    if (this.outstanding === 0) this.quietChecks = 0;
    this.outstanding += want;
  }

  private onMessage(error: Error | null, msg: Msg): void {
    if (error) {
      // The broker refused the inbox subscription (permissions): nothing will ever arrive.
      this.interrupt({ kind: "failed", error });
      return;
    }
    this.heard++;
    if (replyBytes(msg) !== null) {
      this.outstanding = Math.max(0, this.outstanding - 1);
      const wasEmpty = this.received.length === 0;
      this.received.push(msg);
      if (wasEmpty) this.notify();
      return;
    }
    this.onStatus(msg);
  }

  /** A status message from the broker about our pulls (no reply subject; the code in the header line). */
  private onStatus(msg: Msg): void {
    const headers = msg.headers;
    const code = headers?.code ?? 0;
    const description = (headers?.description ?? "").toLowerCase();
    // A pull that ended (expired, or cut short): the broker says how many of it it will not deliver.
    const left = Number(headers?.get("Nats-Pending-Messages") || "0");
    if (left > 0) this.outstanding = Math.max(0, this.outstanding - left);
    switch (code) {
      case 100: // idle heartbeat: the pull is alive
        return;
      case 404: // no messages (only for no-wait pulls, which this does not send)
      case 408: // the pull expired: ask again
        if (left === 0) this.outstanding = 0;
        this.refill();
        return;
      case 409:
        if (description.startsWith("exceeded") || description.includes("exceeds")) {
          // Limits on our own requests (batch, expiry, max waiting, bytes): asking again would be refused again.
          this.interrupt({
            kind: "failed",
            error: new Error(`pulling ${TRADING_STREAM}: ${code} ${description}`),
          });
        } else {
          // Consumer deleted, server shutdown, leadership change: a new consumer carries on.
          this.interrupt({ kind: "lost", reason: `the broker said: ${code} ${description}` });
        }
        return;
      case 503: // no responders: the consumer is not there (a restarted broker)
        this.interrupt({ kind: "lost", reason: "the consumer has no responders" });
        return;
      default:
        this.interrupt({
          kind: "failed",
          error: new Error(`pulling ${TRADING_STREAM}: unexpected status ${code} ${description}`),
        });
    }
  }

  /**
   * No message or heartbeat for two heartbeat intervals (four checks in a row) while a pull waits: the pull or the
   * consumer is gone.
   */
  private checkHeartbeats(): void {
    // Nothing asked for (the reader has not taken what it holds): the broker owes no heartbeat.
    if (this.outstanding === 0 || this.heard !== this.heardAtLastCheck) {
      this.heardAtLastCheck = this.heard;
      this.quietChecks = 0;
      return;
    }
    if (++this.quietChecks * HEARTBEAT_CHECK_MS >= 2 * IDLE_HEARTBEAT_MS) {
      this.interrupt({ kind: "lost", reason: "two idle heartbeats missed" });
    }
  }

  /**
   * A reconnect may have lost pulls and deliveries in flight; a refused pull publish is final; the connection's
   * close ends its status events (after a "close" one).
   */
  private async watchConnection(): Promise<void> {
    for await (const status of this.statusEvents) {
      if (this.closed) return;
      if (status.type === "close") break;
      if (status.type === "reconnect") this.interrupt({ kind: "lost", reason: "the connection reconnected" });
      if (status.type === "error" && isPermissionRefusal(status.error)) {
        const refused = status.error as PermissionViolationError;
        if (refused.subject === this.nextSubject || refused.subject === this.inbox) {
          this.interrupt({ kind: "failed", error: refused });
        }
      }
    }
    if (!this.closed) this.interrupt({ kind: "connectionClosed" });
  }
}
