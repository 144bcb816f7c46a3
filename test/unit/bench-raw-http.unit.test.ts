/**
 * The soak generator's HTTP/1.1 response parser (tools/bench/loadgen/raw-http.ts): complete and partial responses
 * with a Content-Length or a chunked body, `Connection: close`, and a refusal for what it does not read; and how
 * the soak names and counts requests that got no answer.
 */
import { describe, expect, test } from "bun:test";
import { failureReason } from "../../tools/bench/loadgen/bun-loadgen.ts";
import { parseResponse, RawHttpClient, RawHttpError } from "../../tools/bench/loadgen/raw-http.ts";
import { failedText } from "../../tools/bench/soak.ts";

const bytes = (text: string) => Buffer.from(text, "latin1");

describe("parseResponse", () => {
  const json = '{"referenceId":"42"}';
  const whole = `HTTP/1.1 202 Accepted\r\ncontent-type: application/json\r\nContent-Length: ${json.length}\r\n\r\n${json}`;

  test("a Content-Length response: status, body and the bytes it took; null until all of it is there", () => {
    const parsed = parseResponse(bytes(whole));
    expect(parsed?.status).toBe(202);
    expect(parsed?.body.toString()).toBe(json);
    expect(parsed?.used).toBe(whole.length);
    expect(parsed?.close).toBe(false);
    for (const cut of [1, 20, whole.indexOf("\r\n\r\n") + 2, whole.length - 1]) {
      expect(parseResponse(bytes(whole.slice(0, cut)))).toBeNull();
    }
  });

  test("a chunked body is joined; an incomplete one is null; Connection: close is reported", () => {
    const chunked =
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n" +
      "5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\n\r\n";
    const parsed = parseResponse(bytes(chunked));
    expect(parsed?.status).toBe(200);
    expect(parsed?.body.toString()).toBe("hello, world");
    expect(parsed?.used).toBe(chunked.length);
    expect(parsed?.close).toBe(true);
    for (let cut = chunked.indexOf("\r\n\r\n") + 4; cut < chunked.length; cut++) {
      expect(parseResponse(bytes(chunked.slice(0, cut)))).toBeNull();
    }
  });

  test("an empty body with Content-Length: 0", () => {
    const parsed = parseResponse(bytes("HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n"));
    expect(parsed?.status).toBe(204);
    expect(parsed?.body.length).toBe(0);
  });

  test("refuses what is not a response it reads", () => {
    expect(() => parseResponse(bytes("SSH-2.0-OpenSSH\r\n\r\n"))).toThrow(RawHttpError);
    expect(() => parseResponse(bytes("HTTP/1.1 200 OK\r\n\r\n"))).toThrow("neither a Content-Length");
    expect(() => parseResponse(bytes("HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n"))).toThrow(RawHttpError);
    expect(() => parseResponse(bytes("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n"))).toThrow(
      "bad chunk size",
    );
    expect(() => parseResponse(bytes(`HTTP/1.1 200 OK\r\nx: ${"a".repeat(20_000)}`))).toThrow("too large");
  });
});

describe("RawHttpClient.post", () => {
  test("writes the request line, Host, Content-Length (in bytes) and the headers, then the body", () => {
    const body = '{"price":"1.5","note":"é"}';
    const text = Buffer.from(
      RawHttpClient.post("http://127.0.0.1:8080/orders?x=1", { authorization: "Bearer t" }, body),
    ).toString("utf8");
    expect(text).toBe(
      `POST /orders?x=1 HTTP/1.1\r\nhost: 127.0.0.1:8080\r\ncontent-length: ${Buffer.byteLength(body)}\r\n` +
        `authorization: Bearer t\r\n\r\n${body}`,
    );
  });

  test("refuses a header with a line break, and a target that is not http://", () => {
    expect(() => RawHttpClient.post("http://127.0.0.1:1/", { x: "a\r\nb: c" }, "")).toThrow("line break");
    expect(() => new RawHttpClient("https://127.0.0.1:1/", [new Uint8Array(1)], 1_000)).toThrow(
      "only http://",
    );
    expect(() => new RawHttpClient("http://127.0.0.1:1/", [], 1_000)).toThrow("no request");
  });
});

describe("the soak's failure reasons", () => {
  test("an error's message as one token for the generator's line; a count per reason in the totals", () => {
    expect(failureReason(new RawHttpError("no answer within 30000 ms"))).toBe("no-answer-within-30000-ms");
    expect(failureReason("ECONNRESET: socket hang up")).toBe("ECONNRESET-socket-hang-up");
    expect(failureReason(new Error(" "))).toBe("unknown");
    expect(failureReason(new Error("x".repeat(100)))).toHaveLength(60);
    expect(failedText({ failed: 0, failureReasons: {} })).toBe("0 failed");
    expect(
      failedText({ failed: 5, failureReasons: { timeout: 1, "connection-closed-by-the-server": 4 } }),
    ).toBe("5 failed (connection-closed-by-the-server 4, timeout 1)");
  });
});
