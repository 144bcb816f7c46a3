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

export class TokenService {
  private readonly key: Uint8Array;

  constructor(secret: string) {
    this.key = new TextEncoder().encode(secret);
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
    if (!match?.[1]) throw new UnauthenticatedError("Authorization must be 'Bearer <token>'");
    let payload: Record<string, unknown>;
    try {
      ({ payload } = await jwtVerify(match[1], this.key, {
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
    return { userId, admin: Array.isArray(roles) && roles.includes("admin") };
  }
}
