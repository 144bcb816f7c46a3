/** POST /orders: authenticated order intake. Answers 202 only after JetStream stored the request. */
import { Elysia, t } from "elysia";
import type { TokenService } from "../../app/auth.ts";
import type { OrderIntake } from "../../app/intake.ts";

export const CreateOrderBody = t.Object(
  {
    // A union of literals, not t.UnionEnum: that one carries a default and Elysia would fill in "BUY".
    direction: t.Union([t.Literal("BUY"), t.Literal("SELL")]),
    price: t.String({
      description: "positive decimal string, at most 8 decimal places",
      examples: ["101.25"],
    }),
    quantity: t.String({ description: "positive decimal string, at most 8 decimal places", examples: ["3"] }),
  },
  { additionalProperties: false },
);

export function ordersModule(intake: OrderIntake, tokens: TokenService) {
  return new Elysia({ name: "orders" })
    .derive({ as: "scoped" }, async ({ headers }) => ({
      principal: await tokens.authenticate(headers.authorization),
    }))
    .post(
      "/orders",
      async ({ principal, body, set }) => {
        const accepted = await intake.createOrder(principal.userId, body);
        set.status = 202;
        return { orderId: accepted.orderId.toString(), referenceId: accepted.referenceId.toString() };
      },
      { body: CreateOrderBody },
    );
}
