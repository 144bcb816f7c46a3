/**
 * A JetStream message's numbers read from its reply (ack) subject's bytes: its stream sequence, the consumer's
 * delivery sequence and how many times it has been delivered. nats.js's own reading (JsMsg.info → parseInfo)
 * decodes the subject and splits it into strings, once per message: ~5 % of the sequencer's CPU in a drain, and
 * more of a TRADING reader's (docs/performance.md). Used by the sequencer's intake consumer and the TRADING reader.
 *
 * Layouts (both written by nats-server; tokens separated by dots):
 *   $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<dseq>.<ts>.<pending>
 *   $JS.ACK.<domain>.<account hash>.<stream>.<consumer>.<delivered>.<sseq>.<dseq>.<ts>.<pending>[.<token>]
 */
import type { Msg } from "@nats-io/nats-core";

export type AckNumbers = {
  /** Stream sequence: the message's position in its stream. */
  position: number;
  /** The consumer's delivery sequence: 1, 2, 3… with nothing skipped unless a delivery was lost in transit. */
  delivery: number;
  /** How many times the message has been delivered (more than 1: a redelivery). */
  deliveries: number;
};

/** What nats.js 3's MsgImpl keeps of a received message: the protocol line's parts, undecoded. */
type WireMsg = Msg & { _msg?: { reply?: Uint8Array } };

const ACK_PREFIX = [36, 74, 83, 46, 65, 67, 75, 46]; // "$JS.ACK."
const DOT = 46;
/** Token indexes (0-based) of the delivery count, stream sequence and delivery sequence in each layout. */
const OLD_LAYOUT = { tokens: 9, deliveries: 4, position: 5, delivery: 6 };
const NEW_LAYOUT = { minTokens: 11, deliveries: 6, position: 7, delivery: 8 };
const MAX_DOTS = 16;

/** The decimal number in b[from, to), or -1 when it is not one or past 2^53 (not exact as a double). */
function numberAt(b: Uint8Array, from: number, to: number): number {
  if (to <= from || to - from > 16) return -1;
  let n = 0;
  for (let i = from; i < to; i++) {
    const d = (b[i] as number) - 48;
    if (d < 0 || d > 9) return -1;
    n = n * 10 + d;
  }
  return n <= Number.MAX_SAFE_INTEGER ? n : -1;
}

const dots = new Int32Array(MAX_DOTS);

/**
 * Reads `reply` (an ack subject's bytes) into `out`; false when it is not an ack subject in either layout or a
 * number in it is not a positive decimal below 2^53 (then `out` is left partly written).
 */
export function readAckSubject(reply: Uint8Array, out: AckNumbers): boolean {
  if (reply.length < ACK_PREFIX.length) return false;
  for (let i = 0; i < ACK_PREFIX.length; i++) if (reply[i] !== ACK_PREFIX[i]) return false;
  let count = 0;
  for (let i = 0; i < reply.length; i++) {
    if (reply[i] !== DOT) continue;
    if (count === MAX_DOTS) return false;
    dots[count++] = i;
  }
  const tokens = count + 1;
  const layout =
    tokens === OLD_LAYOUT.tokens ? OLD_LAYOUT : tokens >= NEW_LAYOUT.minTokens ? NEW_LAYOUT : null;
  if (!layout) return false;
  // Token k runs from just after dot k-1 to dot k (the last one to the end).
  const token = (k: number) =>
    numberAt(reply, (dots[k - 1] as number) + 1, k < count ? (dots[k] as number) : reply.length);
  out.deliveries = token(layout.deliveries);
  out.position = token(layout.position);
  out.delivery = token(layout.delivery);
  return out.deliveries > 0 && out.position > 0 && out.delivery > 0;
}

/** The reply subject's bytes of a received message (nats.js keeps them undecoded), or null when it has none. */
export function replyBytes(msg: Msg): Uint8Array | null {
  const reply = (msg as WireMsg)._msg?.reply;
  if (reply instanceof Uint8Array) return reply.length > 0 ? reply : null;
  // Another nats.js layout: the decoded string (slower, same answer).
  return msg.reply ? new TextEncoder().encode(msg.reply) : null;
}
