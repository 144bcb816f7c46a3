/**
 * The keys behind the TokenService, from configuration: AUTH_SECRET (auth-secret.ts), the public keys of
 * AUTH_JWKS (a local JWKS file read once at start, or an https URL that jose fetches, caches and refetches for
 * an unknown `kid`), and for `token --key` a private key (a JWK or a PKCS#8 PEM file) to sign with.
 */
import { createPrivateKey } from "node:crypto";
import { readFileSync } from "node:fs";
import { createLocalJWKSet, createRemoteJWKSet, importJWK, importPKCS8, type JWK } from "jose";
import {
  type JwksResolver,
  KEY_ALGORITHMS,
  type KeyAlgorithm,
  TokenService,
  type TokenServiceOptions,
} from "../app/auth.ts";
import { type Config, ConfigError } from "../config.ts";
import { resolveAuthSecret } from "./auth-secret.ts";

/** Members only a private JWK has: a JWKS holding one would publish a signing key. */
const PRIVATE_MEMBERS = ["d", "p", "q", "dp", "dq", "qi", "k"];

/** The policy part of the options: AUTH_MAX_TTL, AUTH_ISSUER, AUTH_AUDIENCE. */
export function tokenPolicy(
  config: Config,
): Pick<TokenServiceOptions, "maxTtlSeconds" | "issuer" | "audience"> {
  return {
    maxTtlSeconds: Math.floor(config.authMaxTtlMs / 1000),
    issuer: config.authIssuer,
    audience: config.authAudience,
  };
}

/** AUTH_JWKS as jose's key resolver; a file is checked now (one line naming AUTH_JWKS), a URL on first use. */
export function loadJwks(source: string): JwksResolver {
  if (/^https?:\/\//i.test(source)) return createRemoteJWKSet(new URL(source), { timeoutDuration: 5_000 });
  let jwks: unknown;
  try {
    jwks = JSON.parse(readFileSync(source, "utf8"));
  } catch {
    throw new ConfigError('AUTH_JWKS: the file is not readable JSON (a JWKS: {"keys": [...]})');
  }
  const keys = (jwks as { keys?: unknown } | null)?.keys;
  if (!Array.isArray(keys) || keys.length === 0 || !keys.every((k) => k && typeof k === "object")) {
    throw new ConfigError('AUTH_JWKS: the file is not a JWKS with at least one key ({"keys": [...]})');
  }
  for (const key of keys as Record<string, unknown>[]) {
    if (PRIVATE_MEMBERS.some((member) => member in key)) {
      throw new ConfigError(
        `AUTH_JWKS: key ${JSON.stringify(key.kid ?? "(no kid)")} is a private or symmetric key; publish only public keys`,
      );
    }
  }
  return createLocalJWKSet(jwks as { keys: JWK[] });
}

/** The API's TokenService: the secret and/or the public keys, with the configured policy. */
export function createTokenService(config: Config): TokenService {
  return new TokenService({
    secret: resolveAuthSecret(config),
    jwks: config.authJwks ? loadJwks(config.authJwks) : undefined,
    ...tokenPolicy(config),
  });
}

/** A private key file that cannot be used to sign (`token --key`). */
export class SigningKeyError extends Error {
  override readonly name = "SigningKeyError";
}

function isKeyAlgorithm(alg: unknown): alg is KeyAlgorithm {
  return typeof alg === "string" && (KEY_ALGORITHMS as readonly string[]).includes(alg);
}

/** The algorithm a key type implies: P-256 → ES256, Ed25519 → EdDSA, RSA → RS256. */
function algorithmOf(kty: unknown, crv: unknown): KeyAlgorithm | undefined {
  if (kty === "EC" && crv === "P-256") return "ES256";
  if (kty === "OKP" && crv === "Ed25519") return "EdDSA";
  if (kty === "RSA") return "RS256";
  return undefined;
}

/**
 * Reads a private key to sign tokens with: a JWK (JSON with `d`; its `kid` and `alg` are used unless given) or
 * a PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`). The algorithm follows from the key type unless `alg` is given,
 * and must fit it.
 */
export async function loadSigningKey(
  file: string,
  options: { kid?: string; alg?: string } = {},
): Promise<{ key: CryptoKey; alg: KeyAlgorithm; kid?: string }> {
  if (options.alg !== undefined && !isKeyAlgorithm(options.alg)) {
    throw new SigningKeyError(`--alg must be one of ${KEY_ALGORITHMS.join(", ")}`);
  }
  let text: string;
  try {
    text = readFileSync(file, "utf8").trim();
  } catch {
    throw new SigningKeyError(`--key: cannot read ${file}`);
  }
  let kty: unknown;
  let crv: unknown;
  let jwk: JWK | undefined;
  if (text.startsWith("{")) {
    try {
      jwk = JSON.parse(text) as JWK;
    } catch {
      throw new SigningKeyError("--key: the file is neither a JWK (JSON) nor a PKCS#8 PEM");
    }
    if (typeof jwk.d !== "string") throw new SigningKeyError('--key: the JWK is not a private key (no "d")');
    ({ kty, crv } = jwk);
  } else if (text.startsWith("-----BEGIN PRIVATE KEY-----")) {
    try {
      const exported = createPrivateKey(text).export({ format: "jwk" });
      ({ kty, crv } = exported);
    } catch {
      throw new SigningKeyError("--key: the PEM is not a readable PKCS#8 private key");
    }
  } else {
    throw new SigningKeyError(
      "--key must be a private JWK (JSON) or a PKCS#8 PEM (-----BEGIN PRIVATE KEY-----; convert with `openssl pkcs8 -topk8 -nocrypt`)",
    );
  }
  const implied = algorithmOf(kty, crv);
  if (!implied) {
    throw new SigningKeyError(`--key: unsupported key type ${String(kty)} ${String(crv ?? "")}`.trim());
  }
  const alg = (options.alg ?? jwk?.alg ?? implied) as string;
  if (alg !== implied)
    throw new SigningKeyError(`--key: a ${String(kty)} key cannot sign ${alg} (it signs ${implied})`);
  const key = jwk ? await importJWK(jwk, alg) : await importPKCS8(text, alg);
  if (key instanceof Uint8Array) throw new SigningKeyError("--key: a symmetric key cannot be used here");
  const kid = options.kid ?? jwk?.kid;
  return kid === undefined ? { key, alg: implied } : { key, alg: implied, kid };
}
