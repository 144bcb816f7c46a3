/**
 * Publishes accepted requests to SEQUENCE. The msgID is the referenceId, so a retried publish inside the
 * duplicate window is dropped by the broker; resolving means JetStream has stored the message (PubAck).
 *
 * While the connection is down it refuses at once instead of letting nats.js buffer the message: a buffered
 * publish would be sent after reconnecting, and an order the client was told failed (503) would then trade.
 */
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

  async publish(event: IntakeEvent): Promise<void> {
    if (!this.isConnected()) throw new NotConnectedError("not connected to NATS");
    const started = performance.now();
    await this.js.publish(`${INTAKE_SUBJECT_PREFIX}.${subjectToken(event.type)}`, encodeIntakeEvent(event), {
      msgID: event.referenceId.toString(),
      expect: { streamName: INTAKE_STREAM },
      timeout: this.timeoutMs,
    });
    this.onPublished((performance.now() - started) / 1000);
  }
}
