/** Funds: POST /deposits (DEPOSIT) and POST /transfers (TRANSFER), admin tokens only. */
import { Elysia, t } from "elysia";
import type { TokenService } from "../../app/auth.ts";
import { ForbiddenError } from "../../app/errors.ts";
import type { IntakeService } from "../../app/intake.ts";
import { type AuthenticationGuard, authentication } from "./auth.ts";
import { documented } from "./openapi-responses.ts";
import { ACCEPTED_DESCRIPTION, Accepted, decimalString, IdempotencyHeaders, idString } from "./schemas.ts";

export function fundsModule(intake: IntakeService, tokens: TokenService, guard?: AuthenticationGuard) {
  return (
    new Elysia({ name: "funds" })
      .use(authentication(tokens, guard))
      // In the transform phase, before body validation: a user token learns nothing about these bodies.
      .derive(({ principal }) => {
        if (!principal.admin) throw new ForbiddenError("this route needs an admin token");
        return {};
      })
      .post(
        "/deposits",
        async ({ principal, body, headers, set }) => {
          const answer = await intake.deposit(principal, body, headers["idempotency-key"]);
          set.status = 202;
          return answer;
        },
        {
          body: t.Object(
            {
              userId: idString("credited user"),
              assetId: idString("asset"),
              amount: decimalString("amount"),
            },
            { additionalProperties: false },
          ),
          headers: IdempotencyHeaders,
          response: { 202: Accepted },
          detail: documented({
            summary: "Credit a user's asset (DEPOSIT); admin only",
            tags: ["funds"],
            access: "admin",
            answers: { 202: { description: ACCEPTED_DESCRIPTION, schema: Accepted } },
            errors: [401, 403, 409, 429, 503],
          }),
        },
      )
      .post(
        "/transfers",
        async ({ principal, body, headers, set }) => {
          const answer = await intake.transfer(principal, body, headers["idempotency-key"]);
          set.status = 202;
          return answer;
        },
        {
          body: t.Object(
            {
              fromUserId: idString("debited user"),
              toUserId: idString("credited user, not fromUserId"),
              assetId: idString("asset"),
              amount: decimalString("amount"),
            },
            { additionalProperties: false },
          ),
          headers: IdempotencyHeaders,
          response: { 202: Accepted },
          detail: documented({
            summary: "Move an asset between users (TRANSFER); admin only",
            tags: ["funds"],
            access: "admin",
            answers: { 202: { description: ACCEPTED_DESCRIPTION, schema: Accepted } },
            errors: [401, 403, 409, 429, 503],
          }),
        },
      )
  );
}
