/**
 * The ack-subject read of the TRADING reader and the intake consumer (src/adapters/nats/ack-subject.ts,
 * readAckSubject): the delivery count, stream and delivery sequence from a JetStream reply subject's bytes, in both layouts nats-server writes (generated subjects, the
 * tokens where nats.js's own parser reads them), and refusing anything that is not an ack subject.
 */
import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { type AckNumbers, readAckSubject } from "../../src/adapters/nats/ack-subject.ts";

const bytes = (s: string) => new TextEncoder().encode(s);
const read = (s: string): AckNumbers | null => {
  const out = { position: 0, delivery: 0, deliveries: 0 };
  return readAckSubject(bytes(s), out) ? out : null;
};

describe("readAckSubject", () => {
  test("the classic layout: $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<dseq>.<ts>.<pending>", () => {
    expect(read("$JS.ACK.TRADING.trading_reader_x1.3.1234.17.1796101995123642767.999")).toEqual({
      position: 1234,
      delivery: 17,
      deliveries: 3,
    });
  });

  test("the domain layout, with and without the trailing token", () => {
    expect(read("$JS.ACK.hub.ACCHASH.TRADING.c.1.42.7.1796101995123642767.0")).toEqual({
      position: 42,
      delivery: 7,
      deliveries: 1,
    });
    expect(read("$JS.ACK._.ACCHASH.TRADING.c.2.43.8.1796101995123642767.0.xyz")).toEqual({
      position: 43,
      delivery: 8,
      deliveries: 2,
    });
  });

  test("reads the numbers from generated ack subjects of either layout", () => {
    const token = fc.stringMatching(/^[A-Za-z0-9_-]{1,12}$/);
    const seq = fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER });
    fc.assert(
      fc.property(
        fc.boolean(),
        token,
        token,
        seq,
        seq,
        fc.integer({ min: 1, max: 100 }),
        (domain, stream, consumer, sseq, dseq, delivered) => {
          const subject = domain
            ? `$JS.ACK.d.HASH.${stream}.${consumer}.${delivered}.${sseq}.${dseq}.1796101995123642767.5.rnd`
            : `$JS.ACK.${stream}.${consumer}.${delivered}.${sseq}.${dseq}.1796101995123642767.5`;
          expect(read(subject)).toEqual({ position: sseq, delivery: dseq, deliveries: delivered });
        },
      ),
      { numRuns: 500 },
    );
  });

  test("refuses what is not an ack subject, or whose numbers are not positive decimals", () => {
    for (const s of [
      "",
      "$JS.ACK",
      "_INBOX_reader.abc.1",
      "$JS.API.CONSUMER.MSG.NEXT.TRADING.c",
      "$JS.ACK.TRADING.c.1.2.3.4", // 7 tokens: neither layout
      "$JS.ACK.TRADING.c.1.2.3.4.5.6", // 10 tokens
      "$JS.ACK.TRADING.c.1.x2.3.4.5", // a position that is not a number
      "$JS.ACK.TRADING.c.1.0.3.4.5", // position 0 is none
      "$JS.ACK.TRADING.c.1..3.4.5", // empty
      `$JS.ACK.TRADING.c.1.${2 ** 53}.3.4.5`, // past what a double holds exactly
      "$JS.ACK.TRADING.c.1.12345678901234567.3.4.5",
      "$js.ack.TRADING.c.1.2.3.4.5",
      "$JS.ACK.TRADING.c.0.2.3.4.5", // delivered 0 times
      `$JS.ACK.${"x.".repeat(16)}c.1.2.3.4.5`, // more dots than any layout
    ]) {
      expect(read(s)).toBeNull();
    }
  });
});
