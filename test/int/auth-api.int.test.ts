/**
 * Who may POST /orders, against a real nats-server and a real PostgreSQL, driven in-process with
 * app.handle(Request): every malformed, forged, expired or wrongly-signed bearer token is a 401 with
 * `WWW-Authenticate: Bearer` that published nothing, and authentication comes before body validation.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { SignJWT } from "jose";
import {
  type Harness,
  harnessRequests,
  postOrder,
  SECRET,
  startHarness,
  unsignedToken,
  validOrder,
} from "./http-helpers.ts";

const SETUP_TIMEOUT = 60_000;
const TEST_TIMEOUT = 15_000;

let h: Harness;

beforeAll(async () => {
  h = await startHarness();
}, SETUP_TIMEOUT);

afterAll(async () => {
  await h?.close();
}, SETUP_TIMEOUT);

const { handle, expectRefused } = harnessRequests(() => h);

describe("POST /orders authentication", () => {
  const key = new TextEncoder().encode(SECRET);
  const now = () => Math.floor(Date.now() / 1000);

  async function signed(claims: Record<string, unknown>, secret: Uint8Array = key): Promise<string> {
    return new SignJWT(claims).setProtectedHeader({ alg: "HS256", typ: "JWT" }).sign(secret);
  }

  async function expectUnauthenticated(request: Request) {
    const { res, error } = await expectRefused(request, 401, "UNAUTHENTICATED");
    expect(res.headers.get("www-authenticate")).toBe("Bearer");
    expect(error.field).toBeUndefined();
    return error;
  }

  test(
    "missing Authorization header",
    async () => {
      const error = await expectUnauthenticated(postOrder(validOrder, {}));
      expect(error.message).toContain("missing");
    },
    TEST_TIMEOUT,
  );

  const badHeaders: [string, () => Promise<string>][] = [
    ["Basic scheme", async () => "Basic dXNlcjpwYXNz"],
    ["Basic x", async () => "Basic x"],
    ["Bearer without a token", async () => "Bearer "],
    ["lower-case bearer", async () => `bearer ${await signed({ sub: "1", exp: now() + 60 })}`],
    ["garbage token", async () => "Bearer not-a-jwt"],
    ["garbage three-part token", async () => "Bearer aaa.bbb.ccc"],
    ["token with characters outside base64url", async () => "Bearer a+b/c=.d.e"],
    [
      "token signed with another secret",
      async () =>
        `Bearer ${await signed({ sub: "1", exp: now() + 60 }, new TextEncoder().encode("y".repeat(40)))}`,
    ],
    [
      "expired token (mint with negative ttl)",
      async () => `Bearer ${await h.tokens.mint(1n, { ttlSeconds: -60 })}`,
    ],
    [
      "expired token (jose, exp in the past)",
      async () =>
        `Bearer ${await new SignJWT({})
          .setProtectedHeader({ alg: "HS256" })
          .setSubject("1")
          .setExpirationTime(now() - 10)
          .sign(key)}`,
    ],
    ["token without exp", async () => `Bearer ${await signed({ sub: "1" })}`],
    ["token without sub", async () => `Bearer ${await signed({ exp: now() + 60 })}`],
    [
      "token not yet valid (nbf in the future)",
      async () => `Bearer ${await signed({ sub: "1", exp: now() + 600, nbf: now() + 300 })}`,
    ],
    ["alg none", async () => `Bearer ${unsignedToken({ sub: "1", exp: now() + 60 })}`],
    [
      "alg none with a forged signature part",
      async () => {
        const real = await signed({ sub: "1", exp: now() + 60 });
        const signature = real.split(".")[2] ?? "";
        return `Bearer ${unsignedToken({ sub: "1", exp: now() + 60 })}${signature}`;
      },
    ],
    [
      "HS512 with the right secret (only HS256 is allowed)",
      async () =>
        `Bearer ${await new SignJWT({ sub: "1", exp: now() + 60 }).setProtectedHeader({ alg: "HS512" }).sign(key)}`,
    ],
    ["sub not digits", async () => `Bearer ${await signed({ sub: "alice", exp: now() + 60 })}`],
    ["sub zero", async () => `Bearer ${await signed({ sub: "0", exp: now() + 60 })}`],
    ["sub negative", async () => `Bearer ${await signed({ sub: "-5", exp: now() + 60 })}`],
    ["sub with leading zero", async () => `Bearer ${await signed({ sub: "012", exp: now() + 60 })}`],
    [
      "sub above int64",
      async () => `Bearer ${await signed({ sub: "9223372036854775808", exp: now() + 60 })}`,
    ],
    ["sub as a number", async () => `Bearer ${await signed({ sub: 12, exp: now() + 60 })}`],
    [
      "tampered payload (sub swapped after signing)",
      async () => {
        const [header, , signature] = (await signed({ sub: "1", exp: now() + 60 })).split(".");
        const payload = Buffer.from(JSON.stringify({ sub: "2", exp: now() + 60 })).toString("base64url");
        return `Bearer ${header}.${payload}.${signature}`;
      },
    ],
  ];

  for (const [name, header] of badHeaders) {
    test(
      name,
      async () => {
        await expectUnauthenticated(postOrder(validOrder, { authorization: await header() }));
      },
      TEST_TIMEOUT,
    );
  }

  test(
    "auth is checked before body validation: a schema-invalid body without a token is 401",
    async () => {
      await expectUnauthenticated(postOrder({ direction: "HOLD", price: 1, foo: true }, {}));
      await expectUnauthenticated(postOrder({}, { authorization: "Basic x" }));
      await expectUnauthenticated(postOrder({ ...validOrder, price: "abc" }, {}));
    },
    TEST_TIMEOUT,
  );

  test(
    "a token minted by the TokenService with a short ttl is accepted (control)",
    async () => {
      const res = await handle(postOrder(validOrder, { token: await h.tokens.mint(5n, { ttlSeconds: 30 }) }));
      expect(res.status).toBe(202);
    },
    TEST_TIMEOUT,
  );
});
