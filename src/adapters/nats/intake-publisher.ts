/**
 * Publishes accepted requests to SEQUENCE. The msgID is the referenceId, so a retried publish inside the
 * duplicate window is dropped by the broker; resolving means JetStream has stored the message (PubAck).
 *
 * While the connection is down it refuses instead of letting nats.js buffer the message: a buffered
 * publish would be sent after reconnecting, and an order the client was told failed (503) would then trade.
 */
import { setImmediate } from "node:timers";
import type { JetStreamClient } from "@nats-io/jetstream";
import { encodeIntakeEvent, type IntakeEvent, subjectToken } from "../../domain/events.ts";
import { INTAKE_STREAM, INTAKE_SUBJECT_PREFIX } from "./topology.ts";

export interface IntakePublisher {
  publish(event: IntakeEvent): Promise<void>;
}

export class NotConnectedError extends Error {
  override readonly name = "NotConnectedError";
}

export class JetStreamIntakePublisher implements IntakePublisher {
  constructor(
    private readonly js: JetStreamClient,
    private readonly timeoutMs: number,
    private readonly isConnected: () => boolean = () => true,
    private readonly onPublished: (seconds: number) => void = () => {},
  ) {}

  /** Publishes waiting for the end of this event-loop turn (see `publish`). */
  private waiting: (() => void)[] = [];

  /**
   * Resolves at the end of the current event-loop turn, together with every other publish started in it. nats.js
   * writes what was queued in one microtask burst with one socket write; without this gathering, requests that
   * arrive in one turn each cost a write of their own, and those writes were a third of the API's CPU under load
   * (docs/performance.md). The wait is one turn of the loop, not a timer.
   */
  private endOfTurn(): Promise<void> {
    return new Promise((resolve) => {
      this.waiting.push(resolve);
      if (this.waiting.length > 1) return;
      setImmediate(() => {
        const ready = this.waiting;
        this.waiting = [];
        for (const go of ready) go();
      });
    });
  }

  async publish(event: IntakeEvent): Promise<void> {
    const started = performance.now();
    await this.endOfTurn();
    // Checked right before the write: a connection that dropped during the wait refuses too.
    if (!this.isConnected()) throw new NotConnectedError("not connected to NATS");
    await this.js.publish(`${INTAKE_SUBJECT_PREFIX}.${subjectToken(event.type)}`, encodeIntakeEvent(event), {
      msgID: event.referenceId.toString(),
      expect: { streamName: INTAKE_STREAM },
      timeout: this.timeoutMs,
    });
    this.onPublished((performance.now() - started) / 1000);
  }
}
