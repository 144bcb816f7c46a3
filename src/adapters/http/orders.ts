/** Orders: POST /orders (CREATE_ORDER) and POST /orders/:orderId/cancel (CANCEL_ORDER), for the token's user. */
import { Elysia, t } from "elysia";
import type { TokenService } from "../../app/auth.ts";
import type { IntakeService } from "../../app/intake.ts";
import { type AuthenticationGuard, authentication } from "./auth.ts";
import { documented } from "./openapi-responses.ts";
import { ACCEPTED_DESCRIPTION, Accepted, decimalString, IdempotencyHeaders, idString } from "./schemas.ts";

export const CreateOrderBody = t.Object(
  {
    // A union of literals, not t.UnionEnum: that one carries a default and Elysia would fill in "BUY".
    direction: t.Union([t.Literal("BUY"), t.Literal("SELL")]),
    price: decimalString("price"),
    quantity: decimalString("quantity"),
  },
  { additionalProperties: false },
);

export function ordersModule(intake: IntakeService, tokens: TokenService, guard?: AuthenticationGuard) {
  return new Elysia({ name: "orders" })
    .use(authentication(tokens, guard))
    .post(
      "/orders",
      async ({ principal, body, headers, set }) => {
        set.status = 202;
        return intake.createOrder(principal, body, headers["idempotency-key"]);
      },
      {
        body: CreateOrderBody,
        headers: IdempotencyHeaders,
        response: { 202: Accepted },
        detail: documented({
          summary: "Place an order (CREATE_ORDER) for the token's user",
          tags: ["orders"],
          access: "any-token",
          answers: { 202: { description: ACCEPTED_DESCRIPTION, schema: Accepted } },
          errors: [401, 409, 429, 503],
        }),
      },
    )
    .post(
      "/orders/:orderId/cancel",
      async ({ principal, params, headers, set }) => {
        set.status = 202;
        return intake.cancelOrder(principal, params.orderId, headers["idempotency-key"]);
      },
      {
        params: t.Object({ orderId: idString("the order to cancel") }),
        headers: IdempotencyHeaders,
        response: { 202: Accepted },
        detail: documented({
          summary: "Ask to cancel an order (CANCEL_ORDER)",
          description:
            "The matching engine checks that the order is the token user's; this service does not.",
          tags: ["orders"],
          access: "any-token",
          answers: { 202: { description: ACCEPTED_DESCRIPTION, schema: Accepted } },
          errors: [401, 409, 429, 503],
        }),
      },
    );
}
