/**
 * The admin routes POST /deposits and POST /transfers against a real nats-server and a real PostgreSQL, driven
 * in-process with app.handle(Request): what an admin token gets accepted (and how the event lands on SEQUENCE),
 * that a user token is refused, and which bodies are refused. Every refusal is also checked to have published
 * nothing.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import {
  deposit,
  expectRecentIso,
  freshKey,
  type Harness,
  harnessRequests,
  request,
  startHarness,
  transfer,
} from "./http-helpers.ts";

const SETUP_TIMEOUT = 60_000;
const TEST_TIMEOUT = 20_000;

let h: Harness;
let userToken: string;
let adminToken: string;

beforeAll(async () => {
  h = await startHarness();
  userToken = await h.tokens.mint(1001n);
  adminToken = await h.tokens.mint(1n, { admin: true });
}, SETUP_TIMEOUT);

afterAll(async () => {
  await h?.close();
}, SETUP_TIMEOUT);

const { expectRefused, expectAccepted } = harnessRequests(() => h);

// ---------------------------------------------------------------------------------------------------------------
// POST /deposits and POST /transfers (admin only)
// ---------------------------------------------------------------------------------------------------------------

describe("POST /deposits", () => {
  test(
    "admin → 202 {referenceId} only; DEPOSIT on sequence.deposit with canonical amount",
    async () => {
      const { answer, stored } = await expectAccepted(
        request("POST", "/deposits", deposit, { token: adminToken }),
      );
      expect(Object.keys(answer)).toEqual(["referenceId"]);
      expect(stored.subject).toBe("sequence.deposit");
      expect(Object.keys(stored.body)).toEqual([
        "referenceId",
        "type",
        "createdAt",
        "userId",
        "assetId",
        "amount",
      ]);
      expect(stored.body).toEqual({
        referenceId: answer.referenceId ?? "missing",
        type: "DEPOSIT",
        createdAt: expect.any(String),
        userId: "5",
        assetId: "6",
        amount: "100.5",
      });
      expectRecentIso(stored.body.createdAt);
    },
    TEST_TIMEOUT,
  );

  test(
    "amount bounds: 15 integer digits and 8 decimals accepted",
    async () => {
      const { stored } = await expectAccepted(
        request(
          "POST",
          "/deposits",
          { ...deposit, amount: "999999999999999.99999999" },
          { token: adminToken },
        ),
      );
      expect(stored.body.amount).toBe("999999999999999.99999999");
      const tiny = await expectAccepted(
        request("POST", "/deposits", { ...deposit, amount: "0.00000001" }, { token: adminToken }),
      );
      expect(tiny.stored.body.amount).toBe("0.00000001");
    },
    TEST_TIMEOUT,
  );

  test(
    "user token → 403 FORBIDDEN, nothing published; no token → 401",
    async () => {
      await expectRefused(request("POST", "/deposits", deposit, { token: userToken }), 403, "FORBIDDEN");
      await expectRefused(
        request("POST", "/deposits", deposit, { token: userToken, key: freshKey() }),
        403,
        "FORBIDDEN",
      );
      await expectRefused(request("POST", "/deposits", deposit), 401, "UNAUTHENTICATED");
    },
    TEST_TIMEOUT,
  );

  const invalid: [string, Record<string, unknown>, string][] = [
    ["missing userId", { assetId: "6", amount: "1" }, "userId"],
    ["missing assetId", { userId: "5", amount: "1" }, "assetId"],
    ["missing amount", { userId: "5", assetId: "6" }, "amount"],
    ["extra field", { ...deposit, note: "x" }, "note"],
    ["extra field of another type", { ...deposit, toUserId: "8" }, "toUserId"],
    ["amount 9 decimals", { ...deposit, amount: "1.123456789" }, "amount"],
    ["amount 16 integer digits", { ...deposit, amount: "1234567890123456" }, "amount"],
    ["amount zero", { ...deposit, amount: "0.000" }, "amount"],
    ["amount exponent", { ...deposit, amount: "1e5" }, "amount"],
    ["amount negative", { ...deposit, amount: "-1" }, "amount"],
    ["amount as a number", { ...deposit, amount: 1 }, "amount"],
    ["assetId zero", { ...deposit, assetId: "0" }, "assetId"],
    ["assetId above int64", { ...deposit, assetId: "9223372036854775808" }, "assetId"],
    ["userId as a number", { ...deposit, userId: 5 }, "userId"],
  ];
  for (const [what, body, field] of invalid) {
    test(
      `${what} → 400 field ${field}`,
      async () => {
        await expectRefused(
          request("POST", "/deposits", body, { token: adminToken }),
          400,
          "INVALID_INPUT",
          field,
        );
      },
      TEST_TIMEOUT,
    );
  }
});

describe("POST /transfers", () => {
  test(
    "admin → 202 {referenceId} only; TRANSFER on sequence.transfer",
    async () => {
      const { answer, stored } = await expectAccepted(
        request("POST", "/transfers", transfer, { token: adminToken }),
      );
      expect(Object.keys(answer)).toEqual(["referenceId"]);
      expect(stored.subject).toBe("sequence.transfer");
      expect(Object.keys(stored.body)).toEqual([
        "referenceId",
        "type",
        "createdAt",
        "fromUserId",
        "toUserId",
        "assetId",
        "amount",
      ]);
      expect(stored.body).toEqual({
        referenceId: answer.referenceId ?? "missing",
        type: "TRANSFER",
        createdAt: expect.any(String),
        fromUserId: "5",
        toUserId: "7",
        assetId: "6",
        amount: "12.25",
      });
    },
    TEST_TIMEOUT,
  );

  test(
    "user token → 403 FORBIDDEN, nothing published; no token → 401",
    async () => {
      await expectRefused(request("POST", "/transfers", transfer, { token: userToken }), 403, "FORBIDDEN");
      await expectRefused(request("POST", "/transfers", transfer), 401, "UNAUTHENTICATED");
    },
    TEST_TIMEOUT,
  );

  const invalid: [string, Record<string, unknown>, string][] = [
    ["same from and to", { ...transfer, toUserId: "5" }, "toUserId"],
    ["missing fromUserId", { toUserId: "7", assetId: "6", amount: "1" }, "fromUserId"],
    ["missing toUserId", { fromUserId: "5", assetId: "6", amount: "1" }, "toUserId"],
    ["missing assetId", { fromUserId: "5", toUserId: "7", amount: "1" }, "assetId"],
    ["missing amount", { fromUserId: "5", toUserId: "7", assetId: "6" }, "amount"],
    ["extra userId", { ...transfer, userId: "5" }, "userId"],
    ["amount 9 decimals", { ...transfer, amount: "0.000000001" }, "amount"],
    ["amount with a sign", { ...transfer, amount: "+1" }, "amount"],
    ["amount with spaces", { ...transfer, amount: " 1" }, "amount"],
    ["fromUserId zero", { ...transfer, fromUserId: "0" }, "fromUserId"],
    ["toUserId not digits", { ...transfer, toUserId: "x" }, "toUserId"],
  ];
  for (const [what, body, field] of invalid) {
    test(
      `${what} → 400 field ${field}`,
      async () => {
        await expectRefused(
          request("POST", "/transfers", body, { token: adminToken }),
          400,
          "INVALID_INPUT",
          field,
        );
      },
      TEST_TIMEOUT,
    );
  }
});
