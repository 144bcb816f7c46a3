/**
 * The sequencer's view of the durable pull consumer `sequencer` on SEQUENCE: batches of messages in delivery
 * order, taken from a local buffer that `consume()` keeps filled. Batches form from whatever has arrived, so
 * a lone order is sequenced at once and a burst is taken up to the batch size — no waiting for a full batch.
 *
 * Memory is bounded by the consumer's max_ack_pending: the server delivers no more unacked messages than that.
 */
import type { ConsumerMessages, JetStreamClient, JsMsg } from "@nats-io/jetstream";
import { INTAKE_STREAM, SEQUENCER_CONSUMER } from "./topology.ts";

/** The part of a JetStream message the sequencer uses (JsMsg satisfies it as is). */
export type IntakeMessage = {
  readonly seq: number;
  readonly subject: string;
  readonly data: Uint8Array;
  ack(): void;
  working(): void;
};

export interface IntakeSource {
  /** Waits up to waitMs for at least one message, then returns up to `max` buffered messages, oldest first. */
  next(max: number, waitMs: number): Promise<IntakeMessage[]>;
  close(): Promise<void>;
}

export class JetStreamIntakeSource implements IntakeSource {
  private buffer: JsMsg[] = [];
  /** Stream sequences currently buffered or handed out, so a redelivered copy is not queued twice. */
  private readonly outstanding = new Set<number>();
  private wake: (() => void) | null = null;
  private messages: ConsumerMessages | null = null;

  static async open(js: JetStreamClient, prefetch: number): Promise<JetStreamIntakeSource> {
    const consumer = await js.consumers.get(INTAKE_STREAM, SEQUENCER_CONSUMER);
    const source = new JetStreamIntakeSource();
    source.messages = await consumer.consume({
      max_messages: prefetch,
      callback: (msg) => source.receive(msg),
    });
    return source;
  }

  private receive(msg: JsMsg): void {
    if (this.outstanding.has(msg.seq)) return; // a redelivery of something we still hold
    this.outstanding.add(msg.seq);
    this.buffer.push(msg);
    this.wake?.();
  }

  async next(max: number, waitMs: number): Promise<IntakeMessage[]> {
    if (this.buffer.length === 0) {
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
    return batch.map((msg) => this.tracked(msg));
  }

  /** Wraps ack so the stream sequence leaves `outstanding` once the sequencer is done with it. */
  private tracked(msg: JsMsg): IntakeMessage {
    const outstanding = this.outstanding;
    return {
      seq: msg.seq,
      subject: msg.subject,
      data: msg.data,
      ack() {
        outstanding.delete(msg.seq);
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
    this.wake?.();
  }
}
