/**
 * JetStream publishes that wait for their PubAck on one shared inbox subscription, with one timer for all of
 * them. This is what `js.publish` does, minus its per-request machinery: nats.js's request path builds a timer,
 * two promises and a `Promise.race` per publish, and on every *successful* request constructs a
 * `RequestError("cancelled")` (stack trace included) to reject a promise nobody listens to any more. In the API
 * under load that path was ~15 % of its CPU (docs/performance.md, "Second wave"); here a publish costs a map entry.
 *
 * Semantics kept from `js.publish`: resolves only on a PubAck naming the expected stream; a JetStream error in the
 * answer rejects with nats.js's own `JetStreamApiError` (so `storeFullReason` still reads its code); "no
 * responders" (no stream listens on the subject) rejects; no answer within the timeout rejects with
 * `PubAckTimeoutError`. A connection that closes rejects everything pending at once.
 */
import { type ApiError, JetStreamApiError } from "@nats-io/jetstream";
import {
  createInbox,
  type Msg,
  type MsgHdrs,
  type NatsConnection,
  type Subscription,
} from "@nats-io/nats-core";

export class PubAckTimeoutError extends Error {
  override readonly name = "PubAckTimeoutError";
}

export class NoStreamRespondedError extends Error {
  override readonly name = "NoStreamRespondedError";
}

export class InvalidPubAckError extends Error {
  override readonly name = "InvalidPubAckError";
}

/**
 * The `inboxPrefix` the connection was opened with. nats.js keeps its options on the connection object but does not
 * declare them on the NatsConnection interface; its own request path reads the same field.
 */
function inboxPrefixOf(nc: NatsConnection): string | undefined {
  return (nc as NatsConnection & { options?: { inboxPrefix?: string } }).options?.inboxPrefix;
}

interface Waiter {
  resolve(): void;
  reject(error: Error): void;
  deadline: number;
}

/** The JSON a JetStream publish is answered with (only what is read here). */
interface PubAckBody {
  stream?: string;
  error?: ApiError;
}

export class PubAckInbox {
  private subscription: Subscription | undefined;
  /** Reply-subject prefix of the current subscription (a fresh one after the subscription ended). */
  private base = "";
  private readonly waiting = new Map<string, Waiter>();
  private counter = 0;
  private sweeper: ReturnType<typeof setInterval> | undefined;

  /**
   * @param stream the stream every PubAck must name (the publish also asks the broker to check it).
   * @param timeoutMs how long a publish waits for its PubAck.
   */
  constructor(
    private readonly nc: NatsConnection,
    private readonly stream: string,
    private readonly timeoutMs: number,
  ) {}

  /** Publishes `data` to `subject` with `headers` and resolves when JetStream has stored it. */
  publish(subject: string, data: Uint8Array | string, headers: MsgHdrs): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      // A throw before the entry exists (subscribing on a closed connection) rejects through the executor.
      this.subscribe();
      const reply = this.base + (this.counter++).toString(36);
      this.waiting.set(reply, { resolve, reject, deadline: performance.now() + this.timeoutMs });
      this.sweepWhileWaiting();
      try {
        this.nc.publish(subject, data, { reply, headers });
      } catch (error) {
        this.waiting.delete(reply);
        reject(error instanceof Error ? error : new Error(String(error)));
      }
    });
  }

  /** How many publishes wait for their PubAck (tests; bounded by the callers' own concurrency). */
  get pending(): number {
    return this.waiting.size;
  }

  private subscribe(): void {
    if (this.subscription) return;
    // Under the connection's own inbox prefix: the only subjects a runtime role may subscribe (permissions.ts).
    this.base = `${createInbox(inboxPrefixOf(this.nc))}.`;
    const subscription = this.nc.subscribe(`${this.base}*`, {
      callback: (error, msg) => (error ? this.failAll(error) : this.answer(msg)),
    });
    this.subscription = subscription;
    // The subscription ends with the connection (or a permissions error): nobody can answer what is pending.
    subscription.closed.then(
      (error) => this.ended(subscription, error ?? new Error("the PubAck inbox subscription ended")),
      (error: unknown) => this.ended(subscription, error instanceof Error ? error : new Error(String(error))),
    );
  }

  private ended(subscription: Subscription, error: Error): void {
    if (this.subscription === subscription) this.subscription = undefined;
    this.failAll(error);
  }

  private answer(msg: Msg): void {
    const waiter = this.waiting.get(msg.subject);
    if (!waiter) return; // answered after its timeout: the caller was already told
    this.waiting.delete(msg.subject);
    if (msg.data.length === 0 && msg.headers?.code === 503) {
      waiter.reject(new NoStreamRespondedError("no JetStream stream answered the publish (no responders)"));
      return;
    }
    let body: PubAckBody;
    try {
      body = JSON.parse(msg.string()) as PubAckBody;
    } catch {
      waiter.reject(new InvalidPubAckError("the PubAck is not JSON"));
      return;
    }
    if (body.error) waiter.reject(new JetStreamApiError(body.error));
    else if (body.stream !== this.stream)
      waiter.reject(new InvalidPubAckError(`the PubAck names stream ${JSON.stringify(body.stream)}`));
    else waiter.resolve();
  }

  private failAll(error: Error): void {
    const all = [...this.waiting.values()];
    this.waiting.clear();
    for (const waiter of all) waiter.reject(error);
  }

  /**
   * One interval for every pending publish, running only while some wait. Deadlines grow in insertion order (one
   * timeout for all), so the sweep stops at the first that has not passed. A publish is refused at most a quarter
   * of the timeout late.
   */
  private sweepWhileWaiting(): void {
    if (this.sweeper) return;
    this.sweeper = setInterval(
      () => {
        const now = performance.now();
        for (const [reply, waiter] of this.waiting) {
          if (waiter.deadline > now) break;
          this.waiting.delete(reply);
          waiter.reject(new PubAckTimeoutError(`no PubAck within ${this.timeoutMs} ms`));
        }
        if (this.waiting.size === 0) {
          clearInterval(this.sweeper);
          this.sweeper = undefined;
        }
      },
      Math.max(10, Math.min(250, this.timeoutMs / 4)),
    );
  }
}
