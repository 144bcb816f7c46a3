/**
 * Bearer tokens: JWTs with claim `sub` = user id (positive 64-bit, as digits), `iat` and `exp` required, and
 * optional `roles: ["admin"]` or `roles: ["reader"]`. Signed either with AUTH_SECRET (HS256) or with a private
 * key whose public half is in AUTH_JWKS (ES256, EdDSA or RS256, chosen by `kid`); both kinds are accepted when
 * both are configured, and an HS256 token is refused when only public keys are. jose checks the signature and
 * refuses every other algorithm, `alg: none` included. The policy on top: a token may not claim to live longer
 * than AUTH_MAX_TTL (exp − iat), nor be issued in the future beyond a small clock skew, and carries
 * AUTH_ISSUER / AUTH_AUDIENCE when those are set.
 */
import {
  decodeProtectedHeader,
  errors,
  type FlattenedJWSInput,
  type JWTHeaderParameters,
  type JWTPayload,
  type JWTVerifyOptions,
  jwtVerify,
  SignJWT,
} from "jose";
import { parsePositiveId } from "../domain/ids.ts";
import { UnavailableError } from "./errors.ts";

/**
 * Who a verified token speaks for. `admin` may deposit and transfer; `reader` (a downstream service, an auditor)
 * may read every user's events. Independent flags: an admin token is not a reader token; routes that admit both
 * check `admin || reader`. A token with no role is a user acting for itself.
 */
export type Principal = { userId: bigint; admin: boolean; reader: boolean };

/** The roles a token can carry (claim `roles`). */
export type TokenRole = "admin" | "reader";
export const TOKEN_ROLES: readonly TokenRole[] = ["admin", "reader"];

/** Asymmetric algorithms a JWKS key (and `token --key`) may use. */
export type KeyAlgorithm = "ES256" | "EdDSA" | "RS256";
export const KEY_ALGORITHMS: readonly KeyAlgorithm[] = ["ES256", "EdDSA", "RS256"];

/** A public-key resolver as jose's createLocalJWKSet / createRemoteJWKSet make: picks the key by `kid` and `alg`. */
export type JwksResolver = (header: JWTHeaderParameters, token: FlattenedJWSInput) => Promise<CryptoKey>;

/** An `iat` up to this far in the future is the issuer's clock running ahead, not a forged lifetime. */
export const CLOCK_SKEW_SECONDS = 60;

/** AUTH_MAX_TTL's default, and the longest lifetime `mint` gives a token unless asked. */
export const DEFAULT_MAX_TTL_SECONDS = 24 * 3600;

/**
 * Tokens verified with a JWKS key are checked again at least this often, so a key removed from a remote key set
 * stops working within about jose's cache age (10 min) even for tokens already seen.
 */
const JWKS_RECHECK_MS = 10 * 60_000;

export type TokenServiceOptions = {
  /** AUTH_SECRET: signs (HS256) and verifies HS256 tokens. */
  secret?: string;
  /** AUTH_JWKS: verifies ES256 / EdDSA / RS256 tokens by `kid`. */
  jwks?: JwksResolver;
  /** Signs with this private key instead of the secret (`token --key`). */
  signingKey?: { key: CryptoKey; alg: KeyAlgorithm; kid?: string };
  /** AUTH_MAX_TTL in seconds: the longest exp − iat accepted. Default 24 h. */
  maxTtlSeconds?: number;
  /** AUTH_ISSUER: required `iss` when set, and put into minted tokens. */
  issuer?: string;
  /** AUTH_AUDIENCE: required `aud` when set, and put into minted tokens. */
  audience?: string;
};

export class UnauthenticatedError extends Error {
  override readonly name = "UnauthenticatedError";
}

/** Verified tokens kept (until their exp) so a client's next request skips the HMAC: ~19 % of the API's CPU. */
const VERIFIED_CACHE_SIZE = 10_000;

export class TokenService {
  private readonly key: Uint8Array<ArrayBuffer> | undefined;
  private cryptoKey: Promise<CryptoKey> | undefined;
  private readonly jwks: JwksResolver | undefined;
  private readonly signingKey: TokenServiceOptions["signingKey"];
  readonly maxTtlSeconds: number;
  private readonly issuer: string | undefined;
  private readonly audience: string | undefined;
  private readonly verifyOptions: JWTVerifyOptions;
  private readonly verified = new Map<string, { principal: Principal; expiresAtMs: number }>();

  /** A string is an HS256 secret with the default policy (24 h, no issuer or audience). */
  constructor(options: string | TokenServiceOptions) {
    const o: TokenServiceOptions = typeof options === "string" ? { secret: options } : options;
    if (o.secret === undefined && o.jwks === undefined && o.signingKey === undefined) {
      throw new Error("TokenService needs a secret, a JWKS or a signing key");
    }
    this.key = o.secret === undefined ? undefined : new TextEncoder().encode(o.secret);
    this.jwks = o.jwks;
    this.signingKey = o.signingKey;
    this.maxTtlSeconds = o.maxTtlSeconds ?? DEFAULT_MAX_TTL_SECONDS;
    this.issuer = o.issuer;
    this.audience = o.audience;
    this.verifyOptions = {
      // HS256 only with a secret (a public-key-only replica cannot check it); the key types only with a JWKS.
      algorithms: [...(this.key ? ["HS256"] : []), ...(this.jwks ? KEY_ALGORITHMS : [])],
      // jose checks presence in reverse order: sub, then exp, then iat.
      requiredClaims: ["iat", "exp", "sub"],
      ...(this.issuer === undefined ? {} : { issuer: this.issuer }),
      ...(this.audience === undefined ? {} : { audience: this.audience }),
    };
  }

  /** Whether this service can sign tokens (false for a replica holding only AUTH_JWKS public keys). */
  get canMint(): boolean {
    return this.signingKey !== undefined || this.key !== undefined;
  }

  /** The HMAC key imported once, not on every verification. */
  private verifyKey(): Promise<CryptoKey> {
    const key = this.key;
    if (!key) throw new errors.JOSEAlgNotAllowed("HS256 tokens are not accepted: no AUTH_SECRET");
    this.cryptoKey ??= crypto.subtle.importKey("raw", key, { name: "HMAC", hash: "SHA-256" }, false, [
      "verify",
    ]);
    return this.cryptoKey;
  }

  /** jose's key lookup: the secret for HS256 (never a JWKS key), the JWKS for the rest (never the secret). */
  private readonly keyFor = async (
    header: JWTHeaderParameters,
    token: FlattenedJWSInput,
  ): Promise<CryptoKey> => {
    if (header.alg === "HS256") return this.verifyKey();
    if (!this.jwks) throw new errors.JOSEAlgNotAllowed(`${header.alg} tokens are not accepted: no AUTH_JWKS`);
    try {
      return await this.jwks(header, token);
    } catch (error) {
      const aboutTheToken =
        error instanceof errors.JWKSNoMatchingKey ||
        error instanceof errors.JWKSMultipleMatchingKeys ||
        error instanceof errors.JOSENotSupported;
      if (aboutTheToken) throw error;
      throw new KeySetUnavailable("the key set could not be loaded", { cause: error });
    }
  };

  /**
   * A signed token for `userId`, with `role` (or `admin: true`, the same as role admin), living `ttlSeconds`
   * (default: 24 h or the maximum if lower). Signed with the private key when one was given, else the secret.
   * The lifetime is not checked here (tests mint expired tokens); `token --ttl` refuses more than the maximum.
   */
  async mint(
    userId: bigint,
    options: { role?: TokenRole; admin?: boolean; ttlSeconds?: number } = {},
  ): Promise<string> {
    const role = options.role ?? (options.admin ? "admin" : undefined);
    const ttl = options.ttlSeconds ?? Math.min(DEFAULT_MAX_TTL_SECONDS, this.maxTtlSeconds);
    const now = Math.floor(Date.now() / 1000);
    const jwt = new SignJWT(role ? { roles: [role] } : {})
      .setSubject(userId.toString())
      .setIssuedAt(now)
      .setExpirationTime(now + ttl);
    if (this.issuer !== undefined) jwt.setIssuer(this.issuer);
    if (this.audience !== undefined) jwt.setAudience(this.audience);
    if (this.signingKey) {
      const { key, alg, kid } = this.signingKey;
      return jwt
        .setProtectedHeader(kid === undefined ? { alg, typ: "JWT" } : { alg, kid, typ: "JWT" })
        .sign(key);
    }
    if (!this.key) {
      throw new Error("no AUTH_SECRET or private key to sign with (AUTH_JWKS holds public keys only)");
    }
    return jwt.setProtectedHeader({ alg: "HS256", typ: "JWT" }).sign(this.key);
  }

  /** jose's verification; a JWKS with several keys fitting a token without `kid` is tried key by key. */
  private async verify(token: string): Promise<JWTPayload> {
    try {
      return (await jwtVerify(token, this.keyFor, this.verifyOptions)).payload;
    } catch (error) {
      if (!(error instanceof errors.JWKSMultipleMatchingKeys)) throw error;
      for await (const key of error) {
        try {
          return (await jwtVerify(token, key, this.verifyOptions)).payload;
        } catch (inner) {
          if (!(inner instanceof errors.JWSSignatureVerificationFailed)) throw inner;
        }
      }
      throw new errors.JWSSignatureVerificationFailed();
    }
  }

  /** Verifies an Authorization header value; throws UnauthenticatedError with a reason a client can act on. */
  async authenticate(header: string | null | undefined): Promise<Principal> {
    if (!header) throw new UnauthenticatedError("missing Authorization: Bearer <token>");
    const match = /^Bearer ([A-Za-z0-9_\-.]+)$/.exec(header);
    const token = match?.[1];
    if (!token) throw new UnauthenticatedError("Authorization must be 'Bearer <token>'");
    // The exact token string verified before and not yet expired is the same proof again.
    const cached = this.verified.get(token);
    if (cached && cached.expiresAtMs > Date.now()) return cached.principal;
    let payload: JWTPayload;
    try {
      payload = await this.verify(token);
    } catch (error) {
      if (error instanceof KeySetUnavailable) {
        // A remote AUTH_JWKS that cannot be fetched (or is malformed) is this API's problem, not the client's.
        throw new UnavailableError("the API cannot load its public keys (AUTH_JWKS) right now", 5, {
          cause: error.cause,
        });
      }
      throw new UnauthenticatedError(`token rejected: ${this.reasonFor(error, token)}`);
    }
    // jose checked that iat and exp are present and numbers, exp is in the future, and iss/aud when configured.
    const iat = Number(payload.iat);
    const exp = Number(payload.exp);
    if (iat > Date.now() / 1000 + CLOCK_SKEW_SECONDS) {
      throw new UnauthenticatedError(
        "token rejected: issued in the future (iat ahead of this server's clock); check the issuer's clock",
      );
    }
    if (exp - iat > this.maxTtlSeconds) {
      throw new UnauthenticatedError(
        `token rejected: it claims to live ${exp - iat} s (exp − iat), more than the ${this.maxTtlSeconds} s allowed (AUTH_MAX_TTL); mint a shorter-lived token`,
      );
    }
    const userId = parsePositiveId(payload.sub);
    if (userId === null) throw new UnauthenticatedError("token subject must be a positive 64-bit user id");
    const roles = Array.isArray(payload.roles) ? payload.roles : [];
    const principal: Principal = { userId, admin: roles.includes("admin"), reader: roles.includes("reader") };
    // Cached only now, after every check; none of them can turn from pass to fail before exp (the policy is fixed
    // for this instance) except a key leaving a remote key set, hence the recheck for JWKS-signed tokens.
    if (this.verified.size >= VERIFIED_CACHE_SIZE) {
      const oldest = this.verified.keys().next().value;
      if (oldest !== undefined) this.verified.delete(oldest);
    }
    const viaJwks = algOf(token) !== "HS256";
    const expiresAtMs = viaJwks ? Math.min(exp * 1000, Date.now() + JWKS_RECHECK_MS) : exp * 1000;
    this.verified.set(token, { principal, expiresAtMs });
    return principal;
  }

  /** Why jose refused a token, in words a client can act on (never echoing the token or a key). */
  private reasonFor(error: unknown, token: string): string {
    if (error instanceof errors.JWTExpired) return "expired (exp is past); mint a new token";
    if (error instanceof errors.JWTClaimValidationFailed) {
      if (error.reason === "missing") return error.message; // missing required "iat" claim
      if (error.claim === "iss") return `"iss" is not this API's issuer (AUTH_ISSUER)`;
      if (error.claim === "aud") return `"aud" does not name this API's audience (AUTH_AUDIENCE)`;
      if (error.claim === "nbf") return "not valid yet (nbf is in the future)";
      return error.message; // e.g. "iat" claim must be a number
    }
    if (error instanceof errors.JOSEAlgNotAllowed) {
      const accepted = (this.verifyOptions.algorithms ?? []).join(", ");
      return `alg ${algOf(token)?.slice(0, 16) ?? "(none)"} is not accepted here (accepted: ${accepted})`;
    }
    if (error instanceof errors.JWSSignatureVerificationFailed) {
      return "signature does not verify (signed with another secret or key)";
    }
    if (error instanceof errors.JWKSNoMatchingKey) return "no configured public key matches its kid and alg";
    if (error instanceof errors.JOSEError) return `${error.code}: ${error.message}`;
    return "invalid token";
  }
}

/** The public keys (AUTH_JWKS) could not be fetched or read: nothing the token's holder can fix. */
class KeySetUnavailable extends Error {
  override readonly name = "KeySetUnavailable";
}

/** The token's `alg` header, or undefined when it cannot be read. */
function algOf(token: string): string | undefined {
  try {
    const { alg } = decodeProtectedHeader(token);
    return typeof alg === "string" ? alg : undefined;
  } catch {
    return undefined;
  }
}
