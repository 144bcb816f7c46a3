/** Bearer-token authentication as an Elysia plugin: adds `principal` to the context of the routes that use it. */
import { Elysia } from "elysia";
import type { TokenService } from "../../app/auth.ts";

export function authentication(tokens: TokenService) {
  return new Elysia({ name: "authentication" }).derive({ as: "scoped" }, async ({ headers }) => ({
    // Derive runs before body validation, so a request without a valid token is 401 whatever its body.
    principal: await tokens.authenticate(headers.authorization),
  }));
}
