/**
 * What counts as "TRADING's message is the log's event": the exact bytes, the subject, and a msg id carrying the
 * first 32 hex characters of the event's digest (or, published before the digest chain, just the sequenceId).
 */
import { describe, expect, test } from "bun:test";
import { headers, MsgHdrsImpl } from "@nats-io/transport-node";
import {
  carriesDigest,
  digestOfMsgId,
  MSG_ID_DIGEST_HEX,
  msgIdDigest,
  tradingDifference,
  tradingHeaders,
  tradingMsgId,
} from "../../src/adapters/nats/trading-publisher.ts";
import { chainDigests, ZERO_DIGEST } from "../../src/app/log-digest.ts";
import type { SequencedRecord } from "../../src/app/ports.ts";

const payload = '{"sequenceId":"1","type":"DEPOSIT","amount":"5"}';
const record: SequencedRecord = {
  sequenceId: 1n,
  type: "DEPOSIT",
  payload,
  digest: chainDigests(ZERO_DIGEST, [payload])[0] ?? "",
};
const bytes = (text: string) => new TextEncoder().encode(text);
function withMsgId(msgId: string | undefined) {
  const h = headers();
  if (msgId !== undefined) h.set("Nats-Msg-Id", msgId);
  return h;
}
const ours = { subject: "trading.deposit", data: bytes(payload), header: withMsgId(tradingMsgId(record)) };

describe("tradingDifference", () => {
  test("the log's bytes, subject and msg id: a match", () => {
    expect(tradingDifference(ours, record)).toBeNull();
  });

  test("other bytes, another subject or another digest in the msg id: named", () => {
    const header = ours.header;
    expect(
      tradingDifference({ subject: "trading.deposit", data: bytes(`${payload} `), header }, record),
    ).toBe("the message body differs from the log's");
    expect(
      tradingDifference({ subject: "trading.transfer", data: bytes(payload), header }, record),
    ).toContain("trading.transfer");
    const forged = withMsgId(`1:${"f".repeat(MSG_ID_DIGEST_HEX)}`);
    const named = tradingDifference(
      { subject: "trading.deposit", data: bytes(payload), header: forged },
      record,
    );
    expect(named).toContain(`its msg id carries the digest ${"f".repeat(MSG_ID_DIGEST_HEX)}`);
    expect(named).toContain(msgIdDigest(record.digest));
    // One hex character off, the whole digest instead of its prefix, another sequenceId: not ours either.
    const last = record.digest[MSG_ID_DIGEST_HEX - 1] === "0" ? "1" : "0";
    for (const msgId of [
      `1:${record.digest.slice(0, MSG_ID_DIGEST_HEX - 1)}${last}`,
      `1:${record.digest}`,
      `2:${msgIdDigest(record.digest)}`,
      `1:${msgIdDigest(record.digest)}:`,
      "by-hand",
      "",
    ]) {
      const message = { subject: "trading.deposit", data: bytes(payload), header: withMsgId(msgId) };
      expect(tradingDifference(message, record)).toContain("msg id");
    }
  });

  test("msg id = the sequenceId and the log's exact bytes (published before the chain existed): a match", () => {
    const legacy = withMsgId("1");
    expect(
      tradingDifference({ subject: "trading.deposit", data: bytes(payload), header: legacy }, record),
    ).toBeNull();
    expect(carriesDigest({ header: legacy })).toBe(false);
    expect(tradingDifference({ subject: "trading.deposit", data: bytes("{}"), header: legacy }, record)).toBe(
      "the message body differs from the log's",
    );
    // No msg id at all: nothing this sequencer ever published.
    expect(
      tradingDifference({ subject: "trading.deposit", data: bytes(payload), header: undefined }, record),
    ).toContain("msg id");
  });

  test("the msg id is the sequenceId and the digest's first 32 hex characters (128 bits)", () => {
    expect(record.digest).toHaveLength(64);
    expect(tradingMsgId(record)).toBe(`1:${record.digest.slice(0, 32)}`);
    expect(digestOfMsgId(tradingMsgId(record))).toBe(record.digest.slice(0, 32));
    expect(msgIdDigest(record.digest)).toBe(record.digest.slice(0, 32));
    expect(digestOfMsgId("1")).toBeNull();
    expect(digestOfMsgId(undefined)).toBeNull();
    expect(carriesDigest(ours)).toBe(true);
  });
});

describe("tradingHeaders", () => {
  const second = { ...record, sequenceId: 2n };
  const decoder = new TextDecoder();

  test("the same bytes as MsgHdrsImpl encodes for the same headers, with and without an expected last msg id", () => {
    const plain = (entries: Record<string, string>) =>
      MsgHdrsImpl.fromRecord(
        Object.fromEntries(Object.entries(entries).map(([k, v]) => [k, [v]])),
      ) as MsgHdrsImpl;
    const first = tradingHeaders(record, tradingMsgId(record), undefined);
    expect(decoder.decode(first.encode())).toBe(
      decoder.decode(
        plain({
          "Nats-Msg-Id": tradingMsgId(record),
          "Nats-Expected-Stream": "TRADING",
          "Nats-Expected-Last-Sequence": "0",
        }).encode(),
      ),
    );
    const next = tradingHeaders(second, tradingMsgId(second), tradingMsgId(record));
    const expected = plain({
      "Nats-Msg-Id": tradingMsgId(second),
      "Nats-Expected-Stream": "TRADING",
      "Nats-Expected-Last-Sequence": "1",
      "Nats-Expected-Last-Msg-Id": tradingMsgId(record),
    });
    expect(decoder.decode(next.encode())).toBe(decoder.decode(expected.encode()));
    expect(next.toString()).toBe(expected.toString());
    expect(next.get("Nats-Msg-Id")).toBe(`2:${msgIdDigest(record.digest)}`);
    expect(next.get("Nats-Expected-Last-Msg-Id")).toBe(tradingMsgId(record));
    expect(MsgHdrsImpl.decode(next.encode()).get("Nats-Expected-Last-Sequence")).toBe("1");
  });

  test("a change through set, append or delete shows in the encoding", () => {
    const h = tradingHeaders(second, tradingMsgId(second), tradingMsgId(record));
    h.set("Nats-Expected-Last-Sequence", "7");
    expect(decoder.decode(h.encode())).toContain("Nats-Expected-Last-Sequence: 7\r\n");
    h.delete("Nats-Expected-Last-Msg-Id");
    expect(decoder.decode(h.encode())).not.toContain("Nats-Expected-Last-Msg-Id");
    h.append("X-Extra", "1");
    expect(decoder.decode(h.encode())).toEndWith("X-Extra: 1\r\n\r\n");
  });
});
