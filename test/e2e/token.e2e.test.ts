/**
 * Token policy through the real CLI (issue 13): `token` refuses a lifetime above AUTH_MAX_TTL and an unknown role,
 * mints reader and admin tokens, and signs with a private key (`--key`) that the API verifies through AUTH_JWKS;
 * `serve` stops at once, with one line naming AUTH_SECRET, on an empty or short `$DATA_DIR/auth-secret` or the
 * documented example secret; with AUTH_JWKS alone it generates no secret and its banner mints no token, and
 * otherwise the banner's token lives one hour.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { decodeJwt, exportJWK, exportPKCS8, generateKeyPair } from "jose";
import { TokenService } from "../../src/app/auth.ts";
import { CLI } from "../support/cli.ts";
import { runProcess } from "../support/process.ts";
import { freePort } from "../support/services.ts";
import { until } from "../support/wait.ts";

const SECRET = "token-e2e-secret-0123456789-0123456789";
const dir = mkdtempSync(join(tmpdir(), "seq-token-e2e-"));
const baseEnv = (): Record<string, string> => ({ PATH: process.env.PATH ?? "", LOG_LEVEL: "warn" });
/** Each CLI run loads the whole program (about half a second); `serve` also starts nats-server and PGlite. */
const CLI_TIMEOUT = 20_000;
const START_TIMEOUT = 60_000;

type Result = { code: number; stdout: string; stderr: string };

async function cli(args: string[], env: Record<string, string>): Promise<Result> {
  const { out, err, code } = await runProcess([process.execPath, CLI, ...args], {
    env: { ...baseEnv(), ...env },
  });
  return { code, stdout: out, stderr: err };
}

async function token(args: string[], env: Record<string, string> = { AUTH_SECRET: SECRET }): Promise<string> {
  const result = await cli(["token", ...args], { DATA_DIR: join(dir, "cli-data"), ...env });
  if (result.code !== 0) throw new Error(`token ${args.join(" ")} failed (${result.code}): ${result.stderr}`);
  return result.stdout.trim();
}

describe("sequencer token", () => {
  test(
    "--ttl above AUTH_MAX_TTL is a usage error (exit 64) naming AUTH_MAX_TTL; nothing on stdout",
    async () => {
      for (const [ttl, env] of [
        ["1000000h", { AUTH_SECRET: SECRET }],
        ["2h", { AUTH_SECRET: SECRET, AUTH_MAX_TTL: "1h" }],
      ] as const) {
        const result = await cli(["token", "--user", "1", "--admin", "--ttl", ttl], env);
        expect(result.code).toBe(64);
        expect(result.stdout).toBe("");
        expect(result.stderr.split("\n")[0]).toContain("AUTH_MAX_TTL");
      }
    },
    CLI_TIMEOUT,
  );

  test(
    "--role reader, --role admin and --admin mint the matching roles; an unknown role is a usage error",
    async () => {
      const verifier = new TokenService(SECRET);
      const principal = async (args: string[]) => verifier.authenticate(`Bearer ${await token(args)}`);
      const [reader, admin, adminFlag, user, unknown, conflicting] = await Promise.all([
        principal(["--user", "5", "--role", "reader"]),
        principal(["--user", "6", "--role", "admin"]),
        principal(["--user", "7", "--admin"]),
        principal(["--user", "8"]),
        cli(["token", "--user", "1", "--role", "boss"], { AUTH_SECRET: SECRET }),
        cli(["token", "--user", "1", "--admin", "--role", "reader"], { AUTH_SECRET: SECRET }),
      ]);
      expect(reader).toEqual({ userId: 5n, admin: false, reader: true });
      expect(admin).toEqual({ userId: 6n, admin: true, reader: false });
      expect(adminFlag).toEqual({ userId: 7n, admin: true, reader: false });
      expect(user).toEqual({ userId: 8n, admin: false, reader: false });
      for (const result of [unknown, conflicting]) {
        expect(result.code).toBe(64);
        expect(result.stderr.split("\n")[0]).toContain("role");
      }
    },
    CLI_TIMEOUT,
  );

  test(
    "AUTH_ISSUER and AUTH_AUDIENCE go into the token, and the default lifetime is the maximum",
    async () => {
      const claims = decodeJwt(
        await token(["--user", "9"], {
          AUTH_SECRET: SECRET,
          AUTH_ISSUER: "https://i.example",
          AUTH_AUDIENCE: "api",
        }),
      );
      expect(claims).toMatchObject({ sub: "9", iss: "https://i.example", aud: "api" });
      expect(Number(claims.exp) - Number(claims.iat)).toBe(86_400);
    },
    CLI_TIMEOUT,
  );
});

describe("serve refuses a weak AUTH_SECRET at once, in one line", () => {
  const cases: [string, string | undefined, Record<string, string>][] = [
    ["an empty $DATA_DIR/auth-secret", "", {}],
    ["a 1-character $DATA_DIR/auth-secret", "x\n", {}],
    [
      "the documented example AUTH_SECRET",
      undefined,
      { AUTH_SECRET: "change-me-change-me-change-me-change-me" },
    ],
  ];
  for (const [name, file, env] of cases) {
    test(
      name,
      async () => {
        const dataDir = mkdtempSync(join(dir, "weak-"));
        if (file !== undefined) writeFileSync(join(dataDir, "auth-secret"), file);
        const started = Date.now();
        const result = await cli(["serve"], { DATA_DIR: dataDir, PORT: "0", OPS_PORT: "0", ...env });
        expect(Date.now() - started).toBeLessThan(10_000);
        expect(result.code).not.toBe(0);
        const lines = result.stderr.trim().split("\n");
        expect(lines).toHaveLength(1);
        expect(lines[0]).toContain("AUTH_SECRET");
        expect(result.stdout).toBe("");
        // Nothing was started: the embedded broker never got to write its state.
        expect(existsSync(join(dataDir, "nats"))).toBe(false);
      },
      CLI_TIMEOUT,
    );
  }
});

type Serve = { proc: ReturnType<typeof Bun.spawn>; base: string; banner: string };

/** `serve` on the embedded defaults with `env`; resolves once the banner is printed and /readyz answers 200. */
async function serve(env: Record<string, string>): Promise<Serve> {
  const port = await freePort();
  const proc = Bun.spawn([process.execPath, CLI, "serve"], {
    env: { ...baseEnv(), PORT: String(port), OPS_PORT: "0", ...env },
    stdout: "pipe",
    stderr: "inherit",
  });
  let out = "";
  (async () => {
    const decoder = new TextDecoder();
    for await (const chunk of proc.stdout as ReadableStream<Uint8Array>) out += decoder.decode(chunk);
  })();
  const base = `http://127.0.0.1:${port}`;
  try {
    await until("the banner", async () => (out.includes("curl -sS -X POST") ? true : undefined));
    await until("readiness", async () => ((await fetch(`${base}/readyz`)).ok ? true : undefined));
  } catch (error) {
    proc.kill("SIGKILL");
    throw error;
  }
  return { proc, base, banner: out };
}

async function stop(s: Serve | undefined): Promise<void> {
  if (!s) return;
  s.proc.kill("SIGTERM");
  const exited = await Promise.race([s.proc.exited, Bun.sleep(20_000).then(() => "timeout" as const)]);
  if (exited === "timeout") s.proc.kill("SIGKILL");
}

async function placeOrder(base: string, bearer: string): Promise<Response> {
  return fetch(`${base}/orders`, {
    method: "POST",
    headers: { authorization: `Bearer ${bearer}`, "content-type": "application/json" },
    body: JSON.stringify({ direction: "BUY", price: "100.5", quantity: "2" }),
  });
}

describe("tokens signed with a private key (AUTH_JWKS), through the API", () => {
  const keyDir = mkdtempSync(join(dir, "keys-"));
  const jwksFile = join(keyDir, "jwks.json");
  const pemFile = join(keyDir, "es256.pem");
  const jwkFile = join(keyDir, "ed25519.jwk.json");

  beforeAll(async () => {
    // Two keys at once (as during a rotation): an ES256 key as a PKCS#8 PEM and an EdDSA key as a private JWK.
    const es = await generateKeyPair("ES256", { extractable: true });
    const ed = await generateKeyPair("EdDSA", { crv: "Ed25519", extractable: true });
    writeFileSync(pemFile, await exportPKCS8(es.privateKey));
    writeFileSync(jwkFile, JSON.stringify({ ...(await exportJWK(ed.privateKey)), kid: "ed-2026" }));
    const keys = [
      { ...(await exportJWK(es.publicKey)), kid: "es-2025" },
      { ...(await exportJWK(ed.publicKey)), kid: "ed-2026" },
    ];
    writeFileSync(jwksFile, JSON.stringify({ keys }));
  });

  describe("AUTH_JWKS alone", () => {
    const dataDir = mkdtempSync(join(dir, "jwks-only-"));
    let running: Serve | undefined;
    beforeAll(async () => {
      running = await serve({ DATA_DIR: dataDir, AUTH_JWKS: jwksFile });
    }, START_TIMEOUT);
    afterAll(() => stop(running), 30_000);

    test("no secret is generated and the banner mints no token: it prints the command instead", () => {
      expect(existsSync(join(dataDir, "auth-secret"))).toBe(false);
      expect(running?.banner).toContain("sequencer token --user 1 --key");
      expect(running?.banner).not.toMatch(/Bearer ey/);
    });

    test(
      "`token --key` tokens from either key are accepted (202); an HS256 token is refused (401)",
      async () => {
        const base = running?.base ?? "";
        const env = { AUTH_JWKS: jwksFile };
        const fromPem = await token(
          ["--user", "21", "--key", pemFile, "--kid", "es-2025", "--ttl", "10m"],
          env,
        );
        const fromJwk = await token(["--user", "22", "--key", jwkFile, "--ttl", "10m"], env);
        expect(decodeJwt(fromPem).exp).toBeDefined();
        expect((await placeOrder(base, fromPem)).status).toBe(202);
        expect((await placeOrder(base, fromJwk)).status).toBe(202);
        const hs = await new TokenService(SECRET).mint(23n, { ttlSeconds: 600 });
        const refused = await placeOrder(base, hs);
        expect(refused.status).toBe(401);
        expect(((await refused.json()) as { error: { message: string } }).error.message).toContain("HS256");
      },
      CLI_TIMEOUT,
    );
  });

  describe("AUTH_SECRET and AUTH_JWKS together", () => {
    let running: Serve | undefined;
    beforeAll(async () => {
      running = await serve({
        DATA_DIR: mkdtempSync(join(dir, "both-")),
        AUTH_SECRET: SECRET,
        AUTH_JWKS: jwksFile,
      });
    }, START_TIMEOUT);
    afterAll(() => stop(running), 30_000);

    test(
      "the banner's token lives one hour and says so; it and a --key token are both accepted",
      async () => {
        const banner = running?.banner ?? "";
        expect(banner).toContain("valid 1 h");
        const bannerToken = /Bearer ([\w.-]+)/.exec(banner)?.[1] ?? "";
        const claims = decodeJwt(bannerToken);
        expect(Number(claims.exp) - Number(claims.iat)).toBe(3600);
        expect(claims.roles).toBeUndefined();
        expect((await placeOrder(running?.base ?? "", bannerToken)).status).toBe(202);
        const keyed = await token(["--user", "24", "--key", jwkFile, "--ttl", "10m"], {
          AUTH_SECRET: SECRET,
        });
        expect((await placeOrder(running?.base ?? "", keyed)).status).toBe(202);
      },
      CLI_TIMEOUT,
    );
  });
});
