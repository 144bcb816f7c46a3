/**
 * Publishes accepted requests to SEQUENCE. The msgID is the referenceId, so a retried publish inside the
 * duplicate window is dropped by the broker; resolving means JetStream has stored the message (PubAck).
 */
import type { JetStreamClient } from "@nats-io/jetstream";
import { encodeIntakeEvent, type IntakeEvent, subjectToken } from "../../domain/events.ts";
import { INTAKE_STREAM, INTAKE_SUBJECT_PREFIX } from "./topology.ts";

export interface IntakePublisher {
  publish(event: IntakeEvent): Promise<void>;
}

export class JetStreamIntakePublisher implements IntakePublisher {
  constructor(
    private readonly js: JetStreamClient,
    private readonly timeoutMs: number,
  ) {}

  async publish(event: IntakeEvent): Promise<void> {
    await this.js.publish(`${INTAKE_SUBJECT_PREFIX}.${subjectToken(event.type)}`, encodeIntakeEvent(event), {
      msgID: event.referenceId.toString(),
      expect: { streamName: INTAKE_STREAM },
      timeout: this.timeoutMs,
    });
  }
}
