/** Bearer-token authentication as an Elysia plugin: adds `principal` to the context of the routes that use it. */
import { Elysia } from "elysia";
import type { Principal, TokenService } from "../../app/auth.ts";

/** The per-user limit of the write routes (guard.ts); none in a bare app. */
export type AuthenticationGuard = {
  authenticated(request: Request, principal: Principal): void;
};

export function authentication(tokens: TokenService, guard?: AuthenticationGuard) {
  return new Elysia({ name: "authentication" }).derive({ as: "scoped" }, async ({ headers, request }) => {
    // Derive runs before body validation, so a request without a valid token is 401 whatever its body.
    const principal = await tokens.authenticate(headers.authorization);
    guard?.authenticated(request, principal);
    return { principal };
  });
}
