/**
 * Abuse limits around authentication, all per process (each API replica counts on its own):
 * - per client IP, failed authentications (401, on any route): past AUTH_FAILURE_LIMIT the address gets 429 on
 *   every route but health and the API page, before its token is even looked at, until its bucket refills;
 * - per user (the token's subject), requests to the write routes: past RATE_LIMIT, 429. Nothing is published
 *   for a refused request (the check runs before the handler).
 * Both 429s carry Retry-After (whole seconds, at least 1). Refusals (401, 403, 429) go to the audit.
 */
import type { Principal } from "../../app/auth.ts";
import type { Metrics } from "../metrics.ts";
import type { RefusalKind, SecurityAudit } from "./audit.ts";
import type { AuthenticationGuard } from "./auth.ts";
import { clientIp } from "./client-ip.ts";
import { HttpError } from "./errors.ts";
import { type Rate, TokenBuckets } from "./rate-limit.ts";

/** Most keys each limiter tracks (a bucket is ~100 bytes): bounded memory whatever the number of clients. */
export const MAX_TRACKED_KEYS = 100_000;

/** Routes that need no token: never refused for an address's failed authentications. */
const EXEMPT_ROUTES = /^\/(healthz|readyz|openapi)(\/|$)/;

function rateLimited(retryAfterSeconds: number, message: string): HttpError {
  return new HttpError(429, "RATE_LIMITED", message, undefined, { "retry-after": String(retryAfterSeconds) });
}

export class RequestGuard {
  private readonly users: TokenBuckets | null;
  private readonly failures: TokenBuckets | null;
  private readonly who = new WeakMap<Request, string>();

  constructor(
    limits: { rateLimit: Rate | null; authFailureLimit: Rate | null; now?: () => number },
    private readonly metrics: Metrics,
    private readonly audit: SecurityAudit,
  ) {
    const options = { maxKeys: MAX_TRACKED_KEYS, ...(limits.now ? { now: limits.now } : {}) };
    this.users = limits.rateLimit ? new TokenBuckets(limits.rateLimit, options) : null;
    this.failures = limits.authFailureLimit ? new TokenBuckets(limits.authFailureLimit, options) : null;
  }

  /**
   * Before anything else on a routed request (the token is not even read): an address with too many failed
   * authentications is refused. Health checks and the API page are exempt (they need no token).
   */
  admitAddress(request: Request, route: string): void {
    const ip = clientIp(request);
    if (!ip || !this.failures || EXEMPT_ROUTES.test(route)) return;
    const admission = this.failures.check(ip);
    if (!admission.ok) {
      this.metrics.rateLimited("auth_failures");
      throw rateLimited(
        admission.retryAfterSeconds,
        "too many failed authentications from this address; retry later",
      );
    }
  }

  /**
   * For the write routes' authentication (auth.ts): after the token is verified, the user's own limit. Reads
   * do not count toward it (they publish nothing and cost one indexed query).
   */
  readonly writes: AuthenticationGuard = {
    authenticated: (request, principal) => this.authenticated(request, principal),
  };

  /** For the read routes' authentication: no limit, but a refusal (403) is audited by user, not address. */
  readonly reads: AuthenticationGuard = {
    authenticated: (request, principal) => {
      this.who.set(request, `user:${principal.userId}`);
    },
  };

  private authenticated(request: Request, principal: Principal): void {
    const user = principal.userId.toString();
    this.who.set(request, `user:${user}`);
    if (!this.users) return;
    const admission = this.users.take(user);
    if (!admission.ok) {
      this.metrics.rateLimited("user");
      throw rateLimited(admission.retryAfterSeconds, "too many requests for this user; retry later");
    }
  }

  /**
   * Every answer of the error mapping: a 401 (on any route) spends one of the address's failed-authentication
   * tokens, and the refusals are audited (by user when known, else by address).
   */
  answered(status: number, request: Request): void {
    if (status === 401) {
      const ip = clientIp(request);
      if (ip) this.failures?.take(ip);
    }
    const kind: RefusalKind | undefined =
      status === 401
        ? "unauthenticated"
        : status === 403
          ? "forbidden"
          : status === 429
            ? "rate_limited"
            : undefined;
    if (!kind) return;
    this.audit.record(kind, this.who.get(request) ?? `ip:${clientIp(request) ?? "unknown"}`);
  }
}
