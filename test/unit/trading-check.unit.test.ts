/**
 * The per-message checks of the TRADING reader (src/client/trading-check.ts), on messages built here the way the
 * sequencer builds them: what passes, and which typed error each kind of wrong message gets.
 */
import { describe, expect, test } from "bun:test";
import { subjectOf, tradingMsgId } from "../../src/adapters/nats/trading-publisher.ts";
import { chainDigests, ZERO_DIGEST } from "../../src/app/log-digest.ts";
import { TradingChecker, type TradingEvent } from "../../src/client/trading-check.ts";
import {
  TradingDigestError,
  TradingInvalidEventError,
  TradingOrderError,
} from "../../src/client/trading-errors.ts";
import { encodeSequencedEvent, type SequencedEvent } from "../../src/domain/events.ts";

function event(sequenceId: bigint, overrides: Partial<SequencedEvent> = {}): SequencedEvent {
  return {
    type: "DEPOSIT",
    referenceId: 1000n + sequenceId,
    createdAt: "2025-01-02T03:04:05.006Z",
    userId: 7n,
    assetId: 2n,
    amount: `${sequenceId}.5`,
    sequenceId,
    previousId: sequenceId - 1n,
    sequencedAt: "2025-01-02T03:04:05.106Z",
    ...overrides,
  } as SequencedEvent;
}

const payloads = [1n, 2n, 3n, 4n].map((id) => encodeSequencedEvent(event(id)));
const digests = chainDigests(ZERO_DIGEST, payloads);

/** Message `i` (0-based) as the sequencer publishes it, with `overrides`. */
function message(i: number, overrides: Partial<{ subject: string; msgId: string; payload: string }> = {}) {
  const sequenceId = BigInt(i + 1);
  return {
    position: sequenceId,
    subject: subjectOf({ type: "DEPOSIT" }),
    msgId: tradingMsgId({ sequenceId, digest: digests[i] as string }),
    payload: payloads[i] as string,
    ...overrides,
  };
}

function refusal(checker: TradingChecker, msg: ReturnType<typeof message>): unknown {
  try {
    checker.accept(msg);
  } catch (error) {
    return error;
  }
  return null;
}

describe("TradingChecker", () => {
  test("accepts the log's messages in order, decoding each and returning its full digest", () => {
    const checker = new TradingChecker(0n, ZERO_DIGEST);
    const read: TradingEvent[] = payloads.map((_, i) => checker.accept(message(i)));
    expect(read.map((e) => e.digest)).toEqual(digests);
    expect(read[2]?.event).toEqual(event(3n));
    expect(checker.expected).toBe(5n);
  });

  test("from a middle position with the previous digest, or with the chain unchecked (null)", () => {
    expect(new TradingChecker(2n, digests[1] as string).accept(message(2)).digest).toBe(digests[2] as string);
    expect(new TradingChecker(2n, null).accept(message(2)).digest).toBeNull();
    const wrong = refusal(new TradingChecker(2n, digests[0] as string), message(2));
    expect(wrong).toBeInstanceOf(TradingDigestError);
    expect(wrong).toMatchObject({ sequenceId: 3n });
  });

  test("a message from before the digest chain (msg id = sequenceId) passes and the chain goes on through it", () => {
    const checker = new TradingChecker(0n, ZERO_DIGEST);
    expect(checker.accept(message(0, { msgId: "1" })).digest).toBe(digests[0] as string);
    expect(checker.accept(message(1)).digest).toBe(digests[1] as string);
  });

  test("a changed body under the log's msg id breaks the chain: TradingDigestError", () => {
    const checker = new TradingChecker(0n, ZERO_DIGEST);
    const tampered = encodeSequencedEvent(event(1n, { amount: "1000000" } as Partial<SequencedEvent>));
    expect(refusal(checker, message(0, { payload: tampered }))).toBeInstanceOf(TradingDigestError);
  });

  test("wrong positions: TradingOrderError", () => {
    const at = (i: number, overrides: Parameters<typeof message>[1]) =>
      refusal(
        new TradingChecker(BigInt(i), i === 0 ? ZERO_DIGEST : (digests[i - 1] as string)),
        message(i, overrides),
      );
    // The event for position 3 delivered at position 2.
    expect(at(1, { payload: payloads[2] as string })).toBeInstanceOf(TradingOrderError);
    expect(String(at(1, { payload: payloads[2] as string }))).toContain("it carries sequenceId 3");
    expect(at(1, { payload: encodeSequencedEvent(event(2n, { previousId: 0n })) })).toBeInstanceOf(
      TradingOrderError,
    );
    expect(at(1, { msgId: tradingMsgId({ sequenceId: 3n, digest: digests[1] as string }) })).toBeInstanceOf(
      TradingOrderError,
    );
    expect(refusal(new TradingChecker(0n, ZERO_DIGEST), message(1))).toBeInstanceOf(TradingOrderError);
  });

  test("not a sequenced event, or on the wrong subject, or with a malformed msg id: TradingInvalidEventError", () => {
    const at0 = (overrides: Parameters<typeof message>[1]) =>
      refusal(new TradingChecker(0n, ZERO_DIGEST), message(0, overrides));
    for (const payload of ["not json", "[]", '{"sequenceId":"1"}']) {
      expect(at0({ payload })).toBeInstanceOf(TradingInvalidEventError);
    }
    const withKey = JSON.stringify({ ...JSON.parse(payloads[0] as string), idempotencyKey: "7:k" });
    expect(String(at0({ payload: withKey }))).toContain("unexpected field idempotencyKey");
    expect(String(at0({ subject: "trading.create_order" }))).toContain("not trading.deposit");
    expect(at0({ msgId: "1:not-hex" })).toBeInstanceOf(TradingInvalidEventError);
    expect(at0({ msgId: "" })).toBeInstanceOf(TradingInvalidEventError);
    // The publisher's layout (position, colon, 32 characters) with the right digest written wrongly: still
    // refused as malformed, not passed (nor called a digest mismatch) by the layout's quick comparison.
    const published = tradingMsgId({ sequenceId: 1n, digest: digests[0] as string });
    const hex = published.slice(2);
    expect(hex).toMatch(/[a-f]/);
    expect(at0({ msgId: `1:${hex.toUpperCase()}` })).toBeInstanceOf(TradingInvalidEventError);
    for (const bad of ["g", " ", ":", "\u00e9"]) {
      expect(at0({ msgId: `1:${bad}${hex.slice(1)}` })).toBeInstanceOf(TradingInvalidEventError);
      expect(at0({ msgId: `1:${hex.slice(0, 31)}${bad}` })).toBeInstanceOf(TradingInvalidEventError);
    }
    expect(new TradingChecker(0n, ZERO_DIGEST).accept(message(0, { msgId: published })).sequenceId).toBe(1n);
    // Any hex digit followed by a non-hex character, at every byte of the digest, is refused as malformed (a
    // digit pair read as hi * 16 + lo would let e.g. "4" + "g" pass for the byte 0x3f).
    const nonHex = Array.from({ length: 95 }, (_, i) => String.fromCharCode(32 + i)).filter(
      (c) => !/[0-9a-f]/.test(c),
    );
    let refused = 0;
    for (let byte = 0; byte < 16; byte++) {
      for (const hi of "0123456789abcdef") {
        for (const lo of nonHex) {
          const forged = `1:${hex.slice(0, 2 * byte)}${hi}${lo}${hex.slice(2 * byte + 2)}`;
          if (at0({ msgId: forged }) instanceof TradingInvalidEventError) refused++;
        }
      }
    }
    expect(refused).toBe(16 * 16 * nonHex.length);
  });

  test("past 10^15 (the positions the fast check leaves to the full decode) the same checks apply", () => {
    const after = 2n ** 62n;
    const big = (id: bigint) => event(id, { amount: "1.5" } as Partial<SequencedEvent>);
    const events = [after + 1n, after + 2n].map((id) => encodeSequencedEvent(big(id)));
    const [first, second] = chainDigests(ZERO_DIGEST, events) as [string, string];
    const at = (i: number, msgId: string) => ({
      position: after + BigInt(i + 1),
      subject: subjectOf({ type: "DEPOSIT" }),
      msgId,
      payload: events[i] as string,
    });
    const checker = new TradingChecker(after, ZERO_DIGEST);
    const read = checker.accept(at(0, tradingMsgId({ sequenceId: after + 1n, digest: first })));
    expect(read.event).toEqual(big(after + 1n));
    expect(read.digest).toBe(first);
    expect(refusal(checker, at(1, tradingMsgId({ sequenceId: after + 3n, digest: second })))).toBeInstanceOf(
      TradingOrderError,
    );
    expect(checker.accept(at(1, `${after + 2n}`)).digest).toBe(second);
  });
});
