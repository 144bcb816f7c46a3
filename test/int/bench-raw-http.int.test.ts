/**
 * The soak generator's keep-alive client (tools/bench/loadgen/raw-http.ts) against a loopback TCP server that
 * answers every request and counts connections: an idle connection is reused while fresh and replaced once it has
 * been idle for keepIdleMs (so the generator never writes into one the server is closing), and a connection the
 * server closes fails only the request on it, with a reason the soak records.
 */
import { afterAll, expect, test } from "bun:test";
import { failureReason } from "../../tools/bench/loadgen/bun-loadgen.ts";
import { RawHttpClient } from "../../tools/bench/loadgen/raw-http.ts";

const ANSWER = "HTTP/1.1 202 Accepted\r\ncontent-length: 2\r\n\r\n{}";
let connections = 0;
/** When set, the server closes the connection instead of answering the next request. */
let hangUp = false;
const server = Bun.listen({
  hostname: "127.0.0.1",
  port: 0,
  socket: {
    open() {
      connections++;
    },
    data(socket) {
      if (hangUp) socket.end();
      else socket.write(ANSWER);
    },
  },
});
afterAll(() => server.stop(true));

const url = `http://127.0.0.1:${server.port}/orders`;
const request = RawHttpClient.post(url, {}, "{}");

test("an idle connection is reused while fresh, and replaced after keepIdleMs", async () => {
  const client = new RawHttpClient(url, [request], 5_000, 150);
  try {
    const before = connections;
    expect((await client.request()).status).toBe(202);
    expect((await client.request()).status).toBe(202);
    expect(connections - before).toBe(1);
    await Bun.sleep(300);
    expect((await client.request()).status).toBe(202);
    expect(connections - before).toBe(2);
    expect(client.idleConnections).toBe(1);
  } finally {
    client.close();
  }
});

test("a connection the server closes fails its request with a reason token", async () => {
  const client = new RawHttpClient(url, [request], 5_000);
  try {
    hangUp = true;
    const error = await client.request().then(
      () => null,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(Error);
    expect(failureReason(error)).toBe("connection-closed-by-the-server");
    hangUp = false;
    expect((await client.request()).status).toBe(202);
  } finally {
    hangUp = false;
    client.close();
  }
});
