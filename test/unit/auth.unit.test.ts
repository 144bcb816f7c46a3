/**
 * The token policy of TokenService (issue 13): lifetimes (iat and exp required, exp − iat ≤ AUTH_MAX_TTL, iat not
 * in the future beyond the clock skew), AUTH_ISSUER / AUTH_AUDIENCE, roles, and the public keys of AUTH_JWKS
 * (ES256, EdDSA and RS256 by kid; two keys at once for rotation; HS256 refused when there is no secret).
 */
import { afterEach, beforeAll, describe, expect, setSystemTime, test } from "bun:test";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  createLocalJWKSet,
  createRemoteJWKSet,
  decodeJwt,
  exportJWK,
  generateKeyPair,
  type JWK,
  type JWTPayload,
  SignJWT,
} from "jose";
import {
  CLOCK_SKEW_SECONDS,
  type KeyAlgorithm,
  type Principal,
  TokenService,
  UnauthenticatedError,
} from "../../src/app/auth.ts";
import { UnavailableError } from "../../src/app/errors.ts";
import { ConfigError } from "../../src/config.ts";
import { loadJwks } from "../../src/runtime/auth-keys.ts";

const SECRET = "unit-test-secret-0123456789-0123456789";
const KEY = new TextEncoder().encode(SECRET);
const now = () => Math.floor(Date.now() / 1000);

type Pair = { kid: string; alg: KeyAlgorithm; privateKey: CryptoKey; publicJwk: JWK };
let es: Pair;
let ed: Pair;
let rs: Pair;
let esNext: Pair;

async function pair(kid: string, alg: KeyAlgorithm): Promise<Pair> {
  const { privateKey, publicKey } = await generateKeyPair(alg, alg === "EdDSA" ? { crv: "Ed25519" } : {});
  return { kid, alg, privateKey, publicJwk: { ...(await exportJWK(publicKey)), kid } };
}

beforeAll(async () => {
  [es, ed, rs, esNext] = await Promise.all([
    pair("es-1", "ES256"),
    pair("ed-1", "EdDSA"),
    pair("rs-1", "RS256"),
    pair("es-2", "ES256"),
  ]);
});

afterEach(() => {
  setSystemTime(); // back to the real clock
});

/** A JWT with exactly these claims, HS256 with the test secret unless another key is given. */
async function sign(
  claims: JWTPayload,
  key: { secret: Uint8Array } | { pair: Pair; kid?: string | null } = { secret: KEY },
): Promise<string> {
  const jwt = new SignJWT(claims);
  if ("secret" in key) return jwt.setProtectedHeader({ alg: "HS256", typ: "JWT" }).sign(key.secret);
  const kid = key.kid === undefined ? key.pair.kid : key.kid;
  return jwt
    .setProtectedHeader(kid === null ? { alg: key.pair.alg } : { alg: key.pair.alg, kid })
    .sign(key.pair.privateKey);
}

async function accepted(service: TokenService, token: string): Promise<Principal> {
  return service.authenticate(`Bearer ${token}`);
}

/** The refusal's message, after checking it is a 401 (UnauthenticatedError). */
async function refused(service: TokenService, token: string): Promise<string> {
  try {
    await service.authenticate(`Bearer ${token}`);
  } catch (error) {
    expect(error).toBeInstanceOf(UnauthenticatedError);
    return (error as Error).message;
  }
  throw new Error("expected the token to be refused");
}

function unsigned(claims: JWTPayload): string {
  const part = (value: unknown) => Buffer.from(JSON.stringify(value)).toString("base64url");
  return `${part({ alg: "none", typ: "JWT" })}.${part(claims)}.`;
}

const jwksOf = (...pairs: Pair[]) => createLocalJWKSet({ keys: pairs.map((p) => p.publicJwk) });

describe("lifetimes", () => {
  const service = new TokenService({ secret: SECRET, maxTtlSeconds: 3600 });

  test("a token minted within the maximum is accepted; mint defaults to the maximum when it is below 24 h", async () => {
    const token = await service.mint(5n);
    const claims = decodeJwt(token);
    expect(Number(claims.exp) - Number(claims.iat)).toBe(3600);
    expect(await accepted(service, token)).toEqual({ userId: 5n, admin: false, reader: false });
  });

  test("exp in the year 9999 is refused, naming AUTH_MAX_TTL", async () => {
    const message = await refused(service, await sign({ sub: "1", iat: now(), exp: 253_402_300_799 }));
    expect(message).toContain("AUTH_MAX_TTL");
  });

  test("exp − iat one second above the maximum is refused; exactly the maximum is accepted", async () => {
    const iat = now() - 10;
    expect(await refused(service, await sign({ sub: "1", iat, exp: iat + 3601 }))).toContain("3601 s");
    expect((await accepted(service, await sign({ sub: "1", iat, exp: iat + 3600 }))).userId).toBe(1n);
  });

  test("a token without iat, or without exp, is refused naming the missing claim", async () => {
    expect(await refused(service, await sign({ sub: "1", exp: now() + 60 }))).toContain('"iat"');
    expect(await refused(service, await sign({ sub: "1", iat: now() }))).toContain('"exp"');
  });

  test("iat in the future beyond the clock skew is refused; within the skew it is tolerated", async () => {
    const ahead = now() + CLOCK_SKEW_SECONDS + 30;
    expect(await refused(service, await sign({ sub: "1", iat: ahead, exp: ahead + 600 }))).toContain(
      "issued in the future",
    );
    const skewed = now() + CLOCK_SKEW_SECONDS - 10;
    expect((await accepted(service, await sign({ sub: "2", iat: skewed, exp: skewed + 600 }))).userId).toBe(
      2n,
    );
  });

  test("expired is refused; a cached token stops working at its exp (the cache keeps expiry)", async () => {
    expect(await refused(service, await service.mint(1n, { ttlSeconds: -60 }))).toContain("expired");
    const token = await service.mint(3n, { ttlSeconds: 30 });
    expect((await accepted(service, token)).userId).toBe(3n); // verified and cached
    setSystemTime(new Date(Date.now() + 31_000));
    expect(await refused(service, token)).toContain("expired");
  });

  test("a refused token is not cached: it is refused again, for the same reason", async () => {
    const token = await sign({ sub: "1", iat: now(), exp: now() + 7200 });
    const first = await refused(service, token);
    expect(await refused(service, token)).toBe(first);
  });
});

describe("issuer and audience", () => {
  const service = new TokenService({
    secret: SECRET,
    issuer: "https://issuer.example",
    audience: "sequencer-api",
  });
  const base = () => ({ sub: "1", iat: now(), exp: now() + 600 });

  test("a matching iss and aud is accepted, and mint sets both", async () => {
    const token = await service.mint(9n);
    expect(decodeJwt(token)).toMatchObject({ iss: "https://issuer.example", aud: "sequencer-api" });
    expect((await accepted(service, token)).userId).toBe(9n);
    const byHand = await sign({ ...base(), iss: "https://issuer.example", aud: ["other", "sequencer-api"] });
    expect((await accepted(service, byHand)).userId).toBe(1n);
  });

  test("a wrong or missing iss, or a wrong or missing aud, is refused", async () => {
    const cases: [JWTPayload, string][] = [
      [{ ...base(), iss: "https://evil.example", aud: "sequencer-api" }, "AUTH_ISSUER"],
      [{ ...base(), aud: "sequencer-api" }, 'missing required "iss"'],
      [{ ...base(), iss: "https://issuer.example", aud: "another-api" }, "AUTH_AUDIENCE"],
      [{ ...base(), iss: "https://issuer.example" }, 'missing required "aud"'],
    ];
    for (const [claims, reason] of cases)
      expect(await refused(service, await sign(claims))).toContain(reason);
  });

  test("without AUTH_ISSUER / AUTH_AUDIENCE, iss and aud are not checked", async () => {
    const plain = new TokenService(SECRET);
    expect((await accepted(plain, await sign({ ...base(), iss: "anyone", aud: "anything" }))).userId).toBe(
      1n,
    );
  });
});

describe("roles", () => {
  const service = new TokenService(SECRET);

  test("user, reader and admin tokens give the matching flags (admin is not reader)", async () => {
    expect(await accepted(service, await service.mint(1n))).toEqual({
      userId: 1n,
      admin: false,
      reader: false,
    });
    expect(await accepted(service, await service.mint(2n, { role: "reader" }))).toEqual({
      userId: 2n,
      admin: false,
      reader: true,
    });
    expect(await accepted(service, await service.mint(3n, { role: "admin" }))).toEqual({
      userId: 3n,
      admin: true,
      reader: false,
    });
    expect(await accepted(service, await service.mint(4n, { admin: true }))).toEqual({
      userId: 4n,
      admin: true,
      reader: false,
    });
    expect(decodeJwt(await service.mint(2n, { role: "reader" })).roles).toEqual(["reader"]);
  });

  test("a roles claim that is not an array grants nothing", async () => {
    const token = await sign({ sub: "5", iat: now(), exp: now() + 60, roles: "admin reader" });
    expect(await accepted(service, token)).toEqual({ userId: 5n, admin: false, reader: false });
  });
});

describe("public keys (AUTH_JWKS)", () => {
  const claims = () => ({ sub: "7", iat: now(), exp: now() + 600, roles: ["reader"] });

  test("ES256, EdDSA and RS256 keys of one JWKS each verify their own tokens, chosen by kid", async () => {
    const service = new TokenService({ jwks: jwksOf(es, ed, rs) });
    for (const p of [es, ed, rs]) {
      expect(await accepted(service, await sign(claims(), { pair: p }))).toEqual({
        userId: 7n,
        admin: false,
        reader: true,
      });
    }
  });

  test("a token naming another key's kid, or an unknown kid, is refused", async () => {
    const service = new TokenService({ jwks: jwksOf(es, esNext) });
    expect(await refused(service, await sign(claims(), { pair: es, kid: esNext.kid }))).toContain(
      "signature does not verify",
    );
    expect(await refused(service, await sign(claims(), { pair: es, kid: "retired" }))).toContain(
      "no configured",
    );
    const stranger = await pair("es-1", "ES256"); // same kid, a key not in the set
    expect(await refused(service, await sign(claims(), { pair: stranger }))).toContain(
      "signature does not verify",
    );
  });

  test("rotation: with two keys in the set, tokens signed by either verify (with or without kid)", async () => {
    const service = new TokenService({ jwks: jwksOf(es, esNext) });
    expect((await accepted(service, await sign(claims(), { pair: es }))).userId).toBe(7n);
    expect((await accepted(service, await sign(claims(), { pair: esNext }))).userId).toBe(7n);
    // No kid: both ES256 keys fit, each is tried.
    expect(
      (await accepted(service, await sign({ ...claims(), sub: "8" }, { pair: esNext, kid: null }))).userId,
    ).toBe(8n);
  });

  test("with only public keys an HS256 token is refused; with the secret as well, both kinds are accepted", async () => {
    const hs = await sign(claims());
    const onlyKeys = new TokenService({ jwks: jwksOf(es) });
    expect(await refused(onlyKeys, hs)).toContain("alg HS256 is not accepted");
    expect(onlyKeys.canMint).toBe(false);
    await expect(onlyKeys.mint(1n)).rejects.toThrow("AUTH_JWKS");
    const both = new TokenService({ secret: SECRET, jwks: jwksOf(es) });
    expect((await accepted(both, hs)).userId).toBe(7n);
    expect((await accepted(both, await sign(claims(), { pair: es }))).userId).toBe(7n);
    // Only the secret: an asymmetric token is refused.
    expect(await refused(new TokenService(SECRET), await sign(claims(), { pair: es }))).toContain(
      "not accepted",
    );
  });

  test("an HS256 token signed with the bytes of a public key is refused (no algorithm confusion)", async () => {
    const both = new TokenService({ secret: SECRET, jwks: jwksOf(rs) });
    const confused = await sign(claims(), { secret: new TextEncoder().encode(JSON.stringify(rs.publicJwk)) });
    expect(await refused(both, confused)).toContain("signature does not verify");
  });

  test("alg none is refused, with a secret and with public keys", async () => {
    const token = unsigned(claims());
    expect(await refused(new TokenService(SECRET), token)).toContain("not accepted");
    expect(await refused(new TokenService({ jwks: jwksOf(es) }), token)).toContain("not accepted");
  });

  test("the lifetime and audience policy applies to key-signed tokens too", async () => {
    const service = new TokenService({ jwks: jwksOf(ed), maxTtlSeconds: 600, audience: "sequencer-api" });
    const iat = now();
    expect(
      await refused(
        service,
        await sign({ sub: "1", iat, exp: iat + 601, aud: "sequencer-api" }, { pair: ed }),
      ),
    ).toContain("AUTH_MAX_TTL");
    expect(await refused(service, await sign({ sub: "1", iat, exp: iat + 60 }, { pair: ed }))).toContain(
      '"aud"',
    );
  });

  test("a signing key mints tokens the JWKS verifies", async () => {
    const signer = new TokenService({ signingKey: { key: rs.privateKey, alg: "RS256", kid: rs.kid } });
    const token = await signer.mint(11n, { role: "admin", ttlSeconds: 300 });
    expect(JSON.parse(Buffer.from(token.split(".")[0] ?? "", "base64url").toString())).toMatchObject({
      alg: "RS256",
      kid: "rs-1",
    });
    expect(await accepted(new TokenService({ jwks: jwksOf(es, rs) }), token)).toEqual({
      userId: 11n,
      admin: true,
      reader: false,
    });
  });

  test("a remote JWKS (served over HTTP on loopback) is fetched; an unreachable one is a 503, not a 401", async () => {
    const server = Bun.serve({
      port: 0,
      hostname: "127.0.0.1",
      fetch: () => Response.json({ keys: [ed.publicJwk] }),
    });
    try {
      const service = new TokenService({
        jwks: createRemoteJWKSet(new URL(`http://127.0.0.1:${server.port}/jwks`)),
      });
      expect((await accepted(service, await sign(claims(), { pair: ed }))).userId).toBe(7n);
    } finally {
      server.stop(true);
    }
    const down = new TokenService({
      jwks: createRemoteJWKSet(new URL(`http://127.0.0.1:${server.port}/jwks`)),
    });
    await expect(down.authenticate(`Bearer ${await sign(claims(), { pair: ed })}`)).rejects.toBeInstanceOf(
      UnavailableError,
    );
  });
});

describe("loadJwks (an AUTH_JWKS file)", () => {
  const dir = mkdtempSync(join(tmpdir(), "jwks-"));
  const file = (name: string, content: string) => {
    const path = join(dir, name);
    writeFileSync(path, content);
    return path;
  };

  test("a file of public keys verifies tokens", async () => {
    const service = new TokenService({
      jwks: loadJwks(file("ok.json", JSON.stringify({ keys: [es.publicJwk] }))),
    });
    expect(
      (await accepted(service, await sign({ sub: "1", iat: now(), exp: now() + 60 }, { pair: es }))).userId,
    ).toBe(1n);
  });

  test("not JSON, no keys, or a private key in the set: a ConfigError naming AUTH_JWKS", async () => {
    const { privateKey } = await generateKeyPair("ES256", { extractable: true });
    const privateJwk = { ...(await exportJWK(privateKey)), kid: "oops" };
    for (const content of [
      "not json",
      JSON.stringify({ keys: [] }),
      JSON.stringify({ keys: [privateJwk] }),
    ]) {
      const path = file(`bad-${content.length}.json`, content);
      expect(() => loadJwks(path)).toThrow(ConfigError);
      expect(() => loadJwks(path)).toThrow("AUTH_JWKS");
    }
  });
});
