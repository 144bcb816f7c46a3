/**
 * What POST /orders refuses in its body, and the routes it does not serve, against a real nats-server and a real
 * PostgreSQL, driven in-process with app.handle(Request): each bad value is named in the 400's `field`, wrong
 * content types are 415, bodies over the limit 413, and every refusal is checked to have published nothing (the
 * SEQUENCE stream's message count must not move).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import {
  BASE,
  type Harness,
  harnessRequests,
  postOrder,
  readError,
  startHarness,
  validOrder,
} from "./http-helpers.ts";

const SETUP_TIMEOUT = 60_000;
const TEST_TIMEOUT = 15_000;
const BODY_LIMIT = 1024;

let h: Harness;
let token: string;

beforeAll(async () => {
  h = await startHarness({ bodyLimitBytes: BODY_LIMIT });
  token = await h.tokens.mint(9_223_372_036_854_775_807n);
}, SETUP_TIMEOUT);

afterAll(async () => {
  await h?.close();
}, SETUP_TIMEOUT);

const { handle, expectRefused } = harnessRequests(() => h);

describe("POST /orders validation", () => {
  const badDecimals: unknown[] = [
    1.5,
    15,
    null,
    true,
    ["1"],
    { value: "1" },
    "",
    "abc",
    "-1",
    "0",
    "0.0",
    "0.00000000",
    "1e5",
    "1E5",
    "0x1A",
    "NaN",
    "Infinity",
    "-Infinity",
    "+1",
    " 1",
    "1 ",
    "1.",
    ".5",
    "01",
    "1,5",
    "1.123456789", // 9 decimal places
    "0.000000001",
    "1234567890123", // 13 integer digits
    "1234567890123.5",
    "9".repeat(100),
    "١٢", // Arabic-Indic digits
  ];

  for (const field of ["price", "quantity"] as const) {
    for (const value of badDecimals) {
      test(
        `${field} = ${JSON.stringify(value)} → 400 naming ${field}`,
        async () => {
          const { error } = await expectRefused(
            postOrder({ ...validOrder, [field]: value }, { token }),
            400,
            "INVALID_INPUT",
            field,
          );
          expect(error.message).toContain(field);
        },
        TEST_TIMEOUT,
      );
    }
  }

  for (const direction of ["HOLD", "buy", "sell", "Buy", "", 1, null]) {
    test(
      `direction = ${JSON.stringify(direction)} → 400 naming direction`,
      async () => {
        await expectRefused(
          postOrder({ ...validOrder, direction }, { token }),
          400,
          "INVALID_INPUT",
          "direction",
        );
      },
      TEST_TIMEOUT,
    );
  }

  for (const missing of ["price", "quantity"] as const) {
    test(
      `missing ${missing} → 400 naming it`,
      async () => {
        const body: Record<string, string> = { ...validOrder };
        delete body[missing];
        await expectRefused(postOrder(body, { token }), 400, "INVALID_INPUT", missing);
      },
      TEST_TIMEOUT,
    );
  }

  test(
    "missing direction → 400 naming it",
    async () => {
      await expectRefused(
        postOrder({ price: "1", quantity: "1" }, { token }),
        400,
        "INVALID_INPUT",
        "direction",
      );
    },
    TEST_TIMEOUT,
  );

  test(
    "unknown extra field → 400 naming it",
    async () => {
      const { error } = await expectRefused(
        postOrder({ ...validOrder, foo: 1 }, { token }),
        400,
        "INVALID_INPUT",
        "foo",
      );
      expect(error.message).toContain("foo");
    },
    TEST_TIMEOUT,
  );

  test(
    "a body that is not an object (or is empty) → 400 INVALID_INPUT",
    async () => {
      // The field named for these is whatever the first schema error says (today "price"), so it is not pinned.
      for (const body of [[validOrder], "BUY", 42, null]) {
        const before = await h.intakeCount();
        const res = await handle(postOrder(body, { token }));
        expect({ body, status: res.status, code: (await readError(res)).code }).toEqual({
          body,
          status: 400,
          code: "INVALID_INPUT",
        });
        expect(await h.intakeCount()).toBe(before);
      }
      const before = await h.intakeCount();
      const empty = await handle(
        new Request(`${BASE}/orders`, {
          method: "POST",
          headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
        }),
      );
      expect({ status: empty.status, code: (await readError(empty)).code }).toEqual({
        status: 400,
        code: "INVALID_INPUT",
      });
      expect(await h.intakeCount()).toBe(before);
    },
    TEST_TIMEOUT,
  );

  test(
    "invalid JSON → 400 INVALID_JSON",
    async () => {
      for (const raw of ["{", '{"direction":"BUY",', "{direction:'BUY'}", "not json"]) {
        await expectRefused(postOrder(raw, { token, raw: true }), 400, "INVALID_JSON");
      }
      // Parsing happens before the auth step, so malformed JSON without a token is a 400, not a 401.
      await expectRefused(postOrder("{", { raw: true }), 400, "INVALID_JSON");
    },
    TEST_TIMEOUT,
  );

  test(
    'a value that cannot be shown as text (an object with a "toString" member) → 400 naming the field, never a 500',
    async () => {
      // Found by the fuzz test: Elysia's validation error formats the value with a template literal, which throws.
      const bodies: [string, string][] = [
        ['{"direction":"BUY","price":"1","quantity":{"toString":1}}', "quantity"],
        ['{"quantity":[{"toString":[]}]}', "quantity"],
        ['{"direction":"BUY","price":[1,{"a":{"toString":"x"}}],"quantity":"1"}', "price"],
      ];
      for (const [raw, field] of bodies) {
        const { error } = await expectRefused(
          postOrder(raw, { token, raw: true }),
          400,
          "INVALID_INPUT",
          field,
        );
        expect(error.message).toStartWith(`${field}: `);
      }
      // A "toString" key where a string is expected at the top level is an unknown field, refused as such.
      await expectRefused(
        postOrder('{"direction":"BUY","price":"1","quantity":"1","toString":1}', { token, raw: true }),
        400,
        "INVALID_INPUT",
        "toString",
      );
    },
    TEST_TIMEOUT,
  );

  test(
    "wrong content type → 415, also without a token (the guard runs first)",
    async () => {
      const body = JSON.stringify(validOrder);
      for (const contentType of [
        "text/plain",
        "application/x-www-form-urlencoded",
        "application/jsonx",
        "json",
      ]) {
        await expectRefused(
          postOrder(body, { token, raw: true, contentType }),
          415,
          "UNSUPPORTED_MEDIA_TYPE",
        );
        await expectRefused(postOrder(body, { raw: true, contentType }), 415, "UNSUPPORTED_MEDIA_TYPE");
      }
    },
    TEST_TIMEOUT,
  );

  test(
    "body over the limit → 413, also without a token; exactly at the limit is accepted",
    async () => {
      const padded = (bytes: number) => {
        const json = JSON.stringify(validOrder);
        return `${json.slice(0, -1)}${" ".repeat(bytes - json.length)}}`;
      };
      expect(padded(2000).length).toBe(2000);
      const { error } = await expectRefused(
        postOrder(padded(2000), { token, raw: true }),
        413,
        "PAYLOAD_TOO_LARGE",
      );
      expect(error.message).toContain(String(BODY_LIMIT));
      await expectRefused(postOrder(padded(BODY_LIMIT + 1), { token, raw: true }), 413, "PAYLOAD_TOO_LARGE");
      await expectRefused(postOrder(padded(2000), { raw: true }), 413, "PAYLOAD_TOO_LARGE");

      const before = await h.intakeCount();
      const res = await handle(postOrder(padded(BODY_LIMIT), { token, raw: true }));
      expect(res.status).toBe(202);
      expect(await h.intakeCount()).toBe(before + 1);
    },
    TEST_TIMEOUT,
  );

  test(
    "unknown routes and methods → 404 NOT_FOUND as JSON",
    async () => {
      for (const [method, path] of [
        ["GET", "/nope"],
        ["GET", "/orders"],
        ["DELETE", "/orders"],
        ["POST", "/order"],
        ["POST", "/events"],
      ] as const) {
        const before = await h.intakeCount();
        const res = await handle(
          new Request(`${BASE}${path}`, { method, headers: { authorization: `Bearer ${token}` } }),
        );
        const error = await readError(res);
        expect({ method, path, status: res.status, code: error.code }).toEqual({
          method,
          path,
          status: 404,
          code: "NOT_FOUND",
        });
        expect(await h.intakeCount()).toBe(before);
      }
    },
    TEST_TIMEOUT,
  );
});
