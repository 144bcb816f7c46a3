/**
 * Publishes accepted requests to SEQUENCE. The msgID is the referenceId, so a retried publish inside the
 * duplicate window is dropped by the broker; resolving means JetStream has stored the message (PubAck).
 *
 * While the connection is down it refuses instead of letting nats.js buffer the message: a buffered
 * publish would be sent after reconnecting, and an order the client was told failed (503) would then trade.
 */
import { setImmediate } from "node:timers";
import { JetStreamApiError, PubHeaders } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/nats-core";
import { IntakeFullError } from "../../app/errors.ts";
import type { IntakePublisher } from "../../app/ports.ts";
import { encodeIntakeEvent, type IntakeEvent, subjectToken } from "../../domain/events.ts";
import { encodedHeaders } from "./encoded-headers.ts";
import { PubAckInbox } from "./pub-ack-inbox.ts";
import { INTAKE_STREAM, INTAKE_SUBJECT_PREFIX } from "./topology.ts";

export class NotConnectedError extends Error {
  override readonly name = "NotConnectedError";
}

/** JetStream's "store failed" (10077: maximum bytes/messages exceeded) and "insufficient resources" (10023). */
const STORE_FAILED = 10077;
const INSUFFICIENT_RESOURCES = 10023;

/** Why the broker refused to store an intake message for want of space, or null when that is not the reason. */
export function storeFullReason(error: unknown): string | null {
  if (!(error instanceof JetStreamApiError)) return null;
  if (error.code === INSUFFICIENT_RESOURCES) {
    return "the broker's JetStream store is full (insufficient resources)";
  }
  // 10077 covers every failure of the stream's store and carries the store's own text; no narrower code exists,
  // so only that text tells a full stream from another store failure.
  if (error.code === STORE_FAILED && /maximum (bytes|messages) exceeded/.test(error.message)) {
    return `the intake stream ${INTAKE_STREAM} is full (${error.message}; INTAKE_MAX_BYTES)`;
  }
  return null;
}

/** How long after the last refusal readiness still reports the intake as full (unless a publish got through). */
const FULL_REPORT_MS = 10_000;

export class JetStreamIntakePublisher implements IntakePublisher {
  private readonly acks: PubAckInbox;

  constructor(
    nc: NatsConnection,
    timeoutMs: number,
    private readonly isConnected: () => boolean = () => true,
    private readonly onPublished: (seconds: number) => void = () => {},
  ) {
    this.acks = new PubAckInbox(nc, INTAKE_STREAM, timeoutMs);
  }

  /** Publishes waiting for the end of this event-loop turn (see `publish`). */
  private waiting: (() => void)[] = [];
  /** The last refusal for want of space, until a publish succeeds again. */
  private full: { at: number; reason: string } | undefined;

  /** Why intake is refused now for want of space (for readiness), or null. */
  fullness(): string | null {
    if (!this.full || Date.now() - this.full.at > FULL_REPORT_MS) return null;
    return this.full.reason;
  }

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
    try {
      // Nats-Msg-Id: the broker drops a retried publish inside the duplicate window. Nats-Expected-Stream: the
      // broker refuses the write if the subject is bound to any other stream.
      await this.acks.publish(
        `${INTAKE_SUBJECT_PREFIX}.${subjectToken(event.type)}`,
        encodeIntakeEvent(event),
        encodedHeaders([
          [PubHeaders.MsgIdHdr, event.referenceId.toString()],
          [PubHeaders.ExpectedStreamHdr, INTAKE_STREAM],
        ]),
      );
    } catch (error) {
      const reason = storeFullReason(error);
      if (reason === null) throw error;
      this.full = { at: Date.now(), reason };
      throw new IntakeFullError(reason, { cause: error });
    }
    this.full = undefined;
    this.onPublished((performance.now() - started) / 1000);
  }
}
