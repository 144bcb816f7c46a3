/** What counts as "TRADING's message is the log's event": the exact bytes, the subject, the digest header. */
import { describe, expect, test } from "bun:test";
import { headers } from "@nats-io/transport-node";
import {
  DIGEST_HEADER,
  type TradingRecord,
  tradingDifference,
  tradingMsgId,
} from "../../src/adapters/nats/trading-publisher.ts";
import { chainDigests, ZERO_DIGEST } from "../../src/app/log-digest.ts";

const payload = '{"sequenceId":"1","type":"DEPOSIT","amount":"5"}';
const record: TradingRecord = {
  sequenceId: 1n,
  type: "DEPOSIT",
  payload,
  digest: chainDigests(ZERO_DIGEST, [payload])[0] ?? "",
};
const bytes = (text: string) => new TextEncoder().encode(text);
function withDigest(digest: string | undefined) {
  const h = headers();
  if (digest !== undefined) h.set(DIGEST_HEADER, digest);
  return h;
}

describe("tradingDifference", () => {
  test("the log's bytes, subject and digest header: a match", () => {
    const message = { subject: "trading.deposit", data: bytes(payload), header: withDigest(record.digest) };
    expect(tradingDifference(message, record)).toBeNull();
  });

  test("other bytes, another subject or another digest header: named", () => {
    const header = withDigest(record.digest);
    expect(
      tradingDifference({ subject: "trading.deposit", data: bytes(`${payload} `), header }, record),
    ).toBe("the message body differs from the log's");
    expect(
      tradingDifference({ subject: "trading.transfer", data: bytes(payload), header }, record),
    ).toContain("trading.transfer");
    const forged = withDigest("f".repeat(64));
    expect(
      tradingDifference({ subject: "trading.deposit", data: bytes(payload), header: forged }, record),
    ).toContain(`its ${DIGEST_HEADER} ${"f".repeat(64)} is not the log's`);
  });

  test("no digest header but the log's exact bytes (published before the chain existed): a match", () => {
    expect(
      tradingDifference({ subject: "trading.deposit", data: bytes(payload), header: undefined }, record),
    ).toBeNull();
    expect(
      tradingDifference(
        { subject: "trading.deposit", data: bytes("{}"), header: withDigest(undefined) },
        record,
      ),
    ).toBe("the message body differs from the log's");
  });

  test("the msg id is the sequenceId and the digest", () => {
    expect(tradingMsgId(record)).toBe(`1:${record.digest}`);
  });
});
