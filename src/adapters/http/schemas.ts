/** Schemas shared by the feature modules. Shapes only: the domain checks values (bounds, scale, ranges). */
import { t } from "elysia";

export const idString = (description: string) =>
  t.String({
    description: `${description}: a positive 64-bit integer as a decimal string`,
    examples: ["42"],
  });

export const decimalString = (name: string) =>
  t.String({
    description: `${name}: a positive plain decimal string (no sign or exponent), at most 8 decimal places`,
    examples: ["101.25"],
  });

export const IdempotencyHeaders = t.Object({
  "idempotency-key": t.Optional(
    t.String({ description: "1-64 of A-Z a-z 0-9 _ -; a retry with the same key gets the first answer" }),
  ),
});

export const ACCEPTED_DESCRIPTION =
  "Accepted: stored on the intake stream (JetStream PubAck); it will be sequenced. A retry with the same " +
  "Idempotency-Key gets this same answer.";

export const Accepted = t.Object({
  referenceId: t.String({ description: "global reference id (decimal string)" }),
  orderId: t.Optional(t.String({ description: "for orders and cancels (decimal string)" })),
});
