/**
 * A KV bucket's atomic `create` refused because the key already holds a value. The create is a publish that
 * expects the key's last sequence to be 0; the server refuses it with JetStream API error 10071 (wrong last
 * sequence), or 10164 when it cannot tell the key's last sequence. nats.js passes that error on as it is — the
 * same two codes its own `create` checks before it looks for a deleted key to write over.
 */
import { JetStreamApiCodes, JetStreamApiError } from "@nats-io/jetstream";

export function isKeyTaken(error: unknown): boolean {
  return (
    error instanceof JetStreamApiError &&
    (error.code === JetStreamApiCodes.StreamWrongLastSequence ||
      error.code === JetStreamApiCodes.StreamWrongLastSequenceUnknown)
  );
}
