/**
 * The sequencer's view of the durable pull consumer `sequencer` on SEQUENCE: batches of messages in delivery
 * order, taken from a local buffer that `consume()` keeps filled. Batches form from whatever has arrived, so
 * a lone order is sequenced at once and a burst is taken up to the batch size — no waiting for a full batch.
 *
 * Memory is bounded by the consumer's max_ack_pending: the server delivers no more unacked messages than that.
 */
import type { ConsumerMessages, JetStreamClient, JsMsg } from "@nats-io/jetstream";
import type { IntakeMessage, IntakeSource } from "../../app/ports.ts";
import { type AckNumbers, readAckSubject, replyBytes } from "./ack-subject.ts";
import { INTAKE_STREAM, SEQUENCER_CONSUMER } from "./topology.ts";

/** A delivered message and its stream sequence (read once from the reply subject's bytes, not through msg.info). */
type Delivered = { msg: JsMsg; seq: number };

const numbers: AckNumbers = { position: 0, delivery: 0, deliveries: 0 };

/**
 * The stream sequence and delivery count of a delivered message: read from its reply subject's bytes
 * (ack-subject.ts) — nats.js's msg.info parses the subject into strings, ~5 % of the sequencer's CPU in a drain —
 * or through msg.info where nats.js keeps the message otherwise.
 */
function deliveryOf(msg: JsMsg): { seq: number; redelivered: boolean } {
  const reply = replyBytes((msg as unknown as { msg: Parameters<typeof replyBytes>[0] }).msg ?? msg);
  if (reply !== null && readAckSubject(reply, numbers)) {
    return { seq: numbers.position, redelivered: numbers.deliveries > 1 };
  }
  return { seq: msg.seq, redelivered: msg.info.redelivered };
}

export class JetStreamIntakeSource implements IntakeSource {
  private buffer: Delivered[] = [];
  /**
   * Messages buffered or handed out and not yet acked, by stream sequence: a redelivered copy is not queued
   * twice, and on close they are all nak'ed so the next sequencer gets them at once, not after ack_wait.
   */
  private readonly outstanding = new Map<number, JsMsg>();
  private wake: (() => void) | null = null;
  private messages: ConsumerMessages | null = null;
  private redeliveryDelayMs = 0;
  private onRedelivered: () => void = () => {};

  /**
   * @param options.pullExpiresMs lifetime of each pull request. nats-server 2.9 keeps a pull request open after its
   * subscriber is gone and can hand it messages that then wait out ack_wait; short pulls bound that window.
   * @param options.onRedelivered told of every message the server delivers again (ack_wait ran out, a nak): a
   * sequencer that was frozen or too slow shows up there (sequencer_redelivered_total).
   */
  static async open(
    js: JetStreamClient,
    prefetch: number,
    options: { pullExpiresMs?: number; onRedelivered?: () => void } = {},
  ): Promise<JetStreamIntakeSource> {
    const pullExpiresMs = options.pullExpiresMs ?? 5_000;
    const consumer = await js.consumers.get(INTAKE_STREAM, SEQUENCER_CONSUMER);
    const source = new JetStreamIntakeSource();
    source.redeliveryDelayMs = pullExpiresMs + 1_000;
    if (options.onRedelivered) source.onRedelivered = options.onRedelivered;
    source.messages = await consumer.consume({
      max_messages: prefetch,
      expires: pullExpiresMs,
      callback: (msg) => source.receive(msg),
    });
    return source;
  }

  private receive(msg: JsMsg): void {
    const { seq, redelivered } = deliveryOf(msg);
    // Counted before the check below: a copy of a message still held is a redelivery too (we were too slow).
    if (redelivered) this.onRedelivered();
    if (this.outstanding.has(seq)) return; // a redelivery of something we still hold
    this.outstanding.set(seq, msg);
    this.buffer.push({ msg, seq });
    this.wake?.();
  }

  async next(max: number, waitMs: number): Promise<IntakeMessage[]> {
    if (this.buffer.length === 0) {
      if (waitMs <= 0) return [];
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, waitMs);
        this.wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.wake = null;
    }
    const batch = this.buffer.length <= max ? this.buffer : this.buffer.slice(0, max);
    this.buffer = this.buffer.length <= max ? [] : this.buffer.slice(max);
    return batch.map((delivered) => this.tracked(delivered));
  }

  /** Wraps ack so the stream sequence leaves `outstanding` once the sequencer is done with it. */
  private tracked({ msg, seq }: Delivered): IntakeMessage {
    const outstanding = this.outstanding;
    return {
      seq,
      subject: msg.subject,
      data: msg.data,
      ack() {
        outstanding.delete(seq);
        msg.ack();
      },
      working() {
        msg.working();
      },
    };
  }

  async close(): Promise<void> {
    await this.messages?.close();
    this.messages = null;
    const unacked = [...this.outstanding.entries()].sort((a, b) => a[0] - b[0]).map(([, msg]) => msg);
    // Hand unacked messages back in stream order, delayed until our last pull request has expired on the server
    // (otherwise the server could redeliver them into that dead request and they would wait out ack_wait).
    for (const msg of unacked) msg.nak(this.redeliveryDelayMs);
    this.outstanding.clear();
    this.buffer = [];
    this.wake?.();
  }
}
