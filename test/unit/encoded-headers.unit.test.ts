/**
 * Headers written once (encoded-headers.ts) are what nats.js's own MsgHdrsImpl would send for the same entries, and
 * stay correct after a change through the MsgHdrs methods.
 */
import { describe, expect, test } from "bun:test";
import { MsgHdrsImpl } from "@nats-io/nats-core";
import { encodedHeaders } from "../../src/adapters/nats/encoded-headers.ts";

const decoder = new TextDecoder();
const plain = (entries: [string, string][]) =>
  MsgHdrsImpl.fromRecord(Object.fromEntries(entries.map(([k, v]) => [k, [v]]))) as MsgHdrsImpl;

describe("encodedHeaders", () => {
  const intake: [string, string][] = [
    ["Nats-Msg-Id", "7310382619476082688"],
    ["Nats-Expected-Stream", "SEQUENCE"],
  ];

  test("the same bytes and text as MsgHdrsImpl for the same entries; get/has/keys answer from the map", () => {
    const h = encodedHeaders(intake);
    expect(decoder.decode(h.encode())).toBe(decoder.decode(plain(intake).encode()));
    expect(h.toString()).toBe(plain(intake).toString());
    expect(h.get("Nats-Msg-Id")).toBe("7310382619476082688");
    expect(h.has("Nats-Expected-Stream")).toBe(true);
    expect(h.keys()).toEqual(["Nats-Msg-Id", "Nats-Expected-Stream"]);
    expect(MsgHdrsImpl.decode(h.encode()).get("Nats-Expected-Stream")).toBe("SEQUENCE");
  });

  test("no entries: the bare header block", () => {
    expect(decoder.decode(encodedHeaders([]).encode())).toBe("NATS/1.0\r\n\r\n");
  });

  test("a change through set, append or delete shows in the encoding", () => {
    const h = encodedHeaders(intake);
    h.set("Nats-Msg-Id", "1");
    expect(decoder.decode(h.encode())).toContain("Nats-Msg-Id: 1\r\n");
    h.delete("Nats-Expected-Stream");
    expect(decoder.decode(h.encode())).not.toContain("Nats-Expected-Stream");
    h.append("X-Extra", "2");
    expect(decoder.decode(h.encode())).toEndWith("X-Extra: 2\r\n\r\n");
  });
});
