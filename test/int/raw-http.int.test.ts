/**
 * The soak generator's HTTP client (tools/bench/loadgen/raw-http.ts) against a real Bun.serve on 127.0.0.1: answers
 * in order on reused keep-alive connections, requests taken in turn, concurrency, a server that closes the
 * connection, and a server that never answers (the request fails after its timeout instead of hanging).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { RawHttpClient } from "../../tools/bench/loadgen/raw-http.ts";

describe("RawHttpClient against Bun.serve", () => {
  let server: ReturnType<typeof Bun.serve>;
  let base: string;

  beforeAll(() => {
    server = Bun.serve({
      hostname: "127.0.0.1",
      port: 0,
      fetch: async (request) => {
        const path = new URL(request.url).pathname;
        if (path === "/hang") return new Promise<Response>(() => {});
        const body = await request.text();
        const answer = { auth: request.headers.get("authorization"), body };
        if (path === "/close") return Response.json(answer, { headers: { connection: "close" } });
        if (path === "/stream") {
          return new Response(
            new ReadableStream({
              start(controller) {
                controller.enqueue(new TextEncoder().encode('{"part":1,'));
                controller.enqueue(new TextEncoder().encode('"part2":2}'));
                controller.close();
              },
            }),
            { status: 201 },
          );
        }
        return Response.json(answer, { status: 202 });
      },
    });
    base = `http://127.0.0.1:${server.port}`;
  });

  afterAll(() => {
    server.stop(true);
  });

  test("answers come back in order with the body sent; requests are taken in turn", async () => {
    const url = `${base}/orders`;
    const requests = ["a", "b", "c"].map((who) =>
      RawHttpClient.post(
        url,
        { authorization: `Bearer ${who}`, "content-type": "application/json" },
        `{"n":"${who}"}`,
      ),
    );
    const client = new RawHttpClient(url, requests, 5_000);
    try {
      const seen: string[] = [];
      for (let i = 0; i < 6; i++) {
        const { status, body } = await client.request();
        expect(status).toBe(202);
        const parsed = JSON.parse(body) as { auth: string; body: string };
        expect(parsed.body).toBe(`{"n":"${parsed.auth.slice("Bearer ".length)}"}`);
        seen.push(parsed.auth);
      }
      expect(seen).toEqual(["b", "c", "a", "b", "c", "a"].map((who) => `Bearer ${who}`));
      // One after the other: one keep-alive connection, reused.
      expect(client.idleConnections).toBe(1);
      // 300 at once: every one answered, each on a connection with one request at a time.
      const answers = await Promise.all(Array.from({ length: 300 }, () => client.request()));
      expect(answers.every((a) => a.status === 202)).toBe(true);
      expect(client.idleConnections).toBeGreaterThan(1);
      expect(client.idleConnections).toBeLessThanOrEqual(300);
    } finally {
      client.close();
    }
    expect(client.idleConnections).toBe(0);
  });

  test("a chunked answer, and a server that closes the connection after each answer", async () => {
    const stream = new RawHttpClient(`${base}/stream`, [RawHttpClient.post(`${base}/stream`, {}, "")], 5_000);
    const closing = new RawHttpClient(`${base}/close`, [RawHttpClient.post(`${base}/close`, {}, "x")], 5_000);
    try {
      for (let i = 0; i < 3; i++) {
        expect(await stream.request()).toEqual({ status: 201, body: '{"part":1,"part2":2}' });
        const answer = await closing.request();
        expect(answer.status).toBe(200);
        expect(JSON.parse(answer.body).body).toBe("x");
      }
    } finally {
      stream.close();
      closing.close();
    }
  });

  test("a server that never answers: the request fails after its timeout, and a closed client fails the rest", async () => {
    const hang = new RawHttpClient(`${base}/hang`, [RawHttpClient.post(`${base}/hang`, {}, "")], 200);
    const started = performance.now();
    const error = await hang.request().then(
      () => null,
      (e: unknown) => e,
    );
    expect(String(error)).toContain("no answer within 200 ms");
    expect(performance.now() - started).toBeLessThan(3_000);
    const pending = hang.request();
    await Bun.sleep(50);
    hang.close();
    expect(
      String(
        await pending.then(
          () => null,
          (e: unknown) => e,
        ),
      ),
    ).toContain("client closed");
  });

  test("nothing listening: the request fails", async () => {
    const probe = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
    const port = probe.port;
    probe.stop(true);
    const url = `http://127.0.0.1:${port}/`;
    const client = new RawHttpClient(url, [RawHttpClient.post(url, {}, "")], 1_000);
    await expect(client.request()).rejects.toThrow();
    client.close();
  });
});
