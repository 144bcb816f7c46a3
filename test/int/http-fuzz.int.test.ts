/**
 * Property-based fuzzing of the HTTP API against a real nats-server and PostgreSQL (app.handle in-process).
 *
 * About 2000 random requests: bodies from fc.anything()/fc.object(), field-shaped records with hostile values
 * (numbers, huge strings, unicode, nested objects, exponent strings), raw and broken JSON, content-type and
 * Idempotency-Key variants, chunked framing, forged and random-claim JWTs, random ids in paths and random query
 * strings. Every request is checked for:
 * - never a 5xx;
 * - every 4xx is `{"error":{"code","message","field"?}}` as JSON;
 * - a 4xx puts nothing on SEQUENCE (message count before/after each request);
 * - a 202 puts at most one message on SEQUENCE, which the sequencer's decoder accepts, under the answer's
 *   referenceId and the caller's user; a replayed Idempotency-Key gets its first answer and publishes nothing;
 * - no 2xx on a write without a valid token, nor on an admin route without the admin role.
 */

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import fc from "fast-check";
import { SignJWT } from "jose";
import { INTAKE_STREAM } from "../../src/adapters/nats/topology.ts";
import { decodeIntakeEvent } from "../../src/domain/events.ts";
import { AMOUNT_RULE, type DecimalRule, PRICE_RULE } from "../../src/domain/money.ts";
import { within } from "../support/wait.ts";
import { BASE, type Harness, SECRET, startHarness, unsignedToken } from "./http-helpers.ts";

const SETUP_TIMEOUT = 60_000;
const FUZZ_TIMEOUT = 120_000;
const BODY_LIMIT = 4096;
const MAX_INT64 = (1n << 63n) - 1n;
const KEY_SHAPE = /^[A-Za-z0-9_-]{1,64}$/;

const USER = 31n;
const OTHER_USER = 32n;
const ADMIN = 33n;

let h: Harness;
const stats = { requests: 0, byStatus: new Map<number, number>() };

/** Who a request claims to be, and what the server should make of it. */
type Auth = { header: string | undefined; userId: bigint | null; admin: boolean; label: string };
let auths: Auth[] = [];

beforeAll(async () => {
  h = await startHarness({ bodyLimitBytes: BODY_LIMIT });
  const otherKey = new TextEncoder().encode("y".repeat(40));
  const forged = await new SignJWT({ roles: ["admin"] })
    .setProtectedHeader({ alg: "HS256" })
    .setSubject(ADMIN.toString())
    .setExpirationTime("1h")
    .sign(otherKey);
  auths = [
    { header: `Bearer ${await h.tokens.mint(USER)}`, userId: USER, admin: false, label: "user" },
    { header: `Bearer ${await h.tokens.mint(OTHER_USER)}`, userId: OTHER_USER, admin: false, label: "user2" },
    {
      header: `Bearer ${await h.tokens.mint(ADMIN, { admin: true })}`,
      userId: ADMIN,
      admin: true,
      label: "admin",
    },
    {
      header: `Bearer ${await h.tokens.mint(MAX_INT64, { admin: true })}`,
      userId: MAX_INT64,
      admin: true,
      label: "admin-max",
    },
    { header: undefined, userId: null, admin: false, label: "none" },
    { header: "Bearer", userId: null, admin: false, label: "empty bearer" },
    { header: "Basic dXNlcjpwYXNz", userId: null, admin: false, label: "basic" },
    { header: `Bearer ${forged}`, userId: null, admin: false, label: "forged" },
    {
      header: `Bearer ${unsignedToken({ sub: ADMIN.toString(), exp: 9_999_999_999, roles: ["admin"] })}`,
      userId: null,
      admin: false,
      label: "alg none",
    },
    {
      header: `Bearer ${await h.tokens.mint(ADMIN, { admin: true, ttlSeconds: -60 })}`,
      userId: null,
      admin: false,
      label: "expired",
    },
    { header: "Bearer a.b.c", userId: null, admin: false, label: "garbage" },
  ];
}, SETUP_TIMEOUT);

afterAll(async () => {
  // One line of evidence for the run: how many requests and which statuses.
  const statuses = [...stats.byStatus.entries()].sort(([a], [b]) => a - b);
  console.log(
    `http fuzz: ${stats.requests} requests, statuses ${JSON.stringify(Object.fromEntries(statuses))}`,
  );
  await h?.close();
}, SETUP_TIMEOUT);

// ---------------------------------------------------------------------------------------------------------------
// Arbitraries
// ---------------------------------------------------------------------------------------------------------------

function decimalArb(rule: DecimalRule): fc.Arbitrary<string> {
  return fc
    .tuple(
      fc.oneof(
        fc.constant("0"),
        fc.stringMatching(new RegExp(`^[1-9][0-9]{0,${rule.maxIntegerDigits - 1}}$`)),
      ),
      fc.option(fc.stringMatching(/^[0-9]{0,7}[1-9]0{0,3}$/), { nil: undefined }),
    )
    .map(([int, frac]) => (frac === undefined ? int : `${int}.${frac}`))
    .filter((s) => !/^0(\.0*)?$/.test(s));
}

const idStringArb = fc.oneof(
  fc.bigInt({ min: 1n, max: MAX_INT64 }).map(String),
  fc.bigInt({ min: 1n, max: 999n }).map(String),
);

const exponentArb = fc
  .tuple(
    fc.stringMatching(/^[0-9]{1,5}(\.[0-9]{1,5})?$/),
    fc.constantFrom("e", "E", "e+", "e-", "E-"),
    fc.stringMatching(/^[0-9]{1,3}$/),
  )
  .map(([m, e, x]) => `${m}${e}${x}`);

const specialStringArb = fc.constantFrom(
  "NaN",
  "Infinity",
  "-Infinity",
  "-0",
  "0x1F",
  "0b101",
  "1_000",
  " 1",
  "1 ",
  "1\u0000",
  "١٢٣",
  "１",
  "+1",
  ".5",
  "1.",
  "0",
  "00",
  "01",
  "1.0",
  "0.000000001",
  "9223372036854775807",
  "9223372036854775808",
  "-1",
  "BUY ",
  "buy",
  "SELL\u200b",
  "__proto__",
  "constructor",
  "",
);

const hugeStringArb = fc.oneof(
  fc.integer({ min: 60, max: 3000 }).map((n) => "9".repeat(n)),
  fc.integer({ min: BODY_LIMIT, max: BODY_LIMIT * 3 }).map((n) => "x".repeat(n)),
  fc.integer({ min: 10, max: 500 }).map((n) => "😀".repeat(n)),
);

/** A value for one body field: sometimes right, mostly hostile. */
function fieldValueArb(valid: fc.Arbitrary<unknown>): fc.Arbitrary<unknown> {
  return fc.oneof(
    { weight: 16, arbitrary: valid },
    { weight: 1, arbitrary: fc.string({ maxLength: 30 }) },
    { weight: 1, arbitrary: fc.string({ unit: "grapheme", maxLength: 20 }) },
    { weight: 1, arbitrary: fc.string({ unit: "binary", maxLength: 20 }) },
    { weight: 1, arbitrary: fc.oneof(fc.integer(), fc.double(), fc.boolean(), fc.constant(null)) },
    { weight: 1, arbitrary: exponentArb },
    { weight: 1, arbitrary: specialStringArb },
    { weight: 1, arbitrary: hugeStringArb },
    { weight: 1, arbitrary: fc.oneof(fc.object({ maxDepth: 2 }), fc.array(fc.anything(), { maxLength: 3 })) },
  );
}

/** A record of the route's fields (any of them may be missing), perhaps with unknown or foreign extra keys. */
function fieldsBodyArb(fields: Record<string, fc.Arbitrary<unknown>>): fc.Arbitrary<unknown> {
  const shaped: Record<string, fc.Arbitrary<unknown>> = {};
  for (const [name, valid] of Object.entries(fields)) shaped[name] = fieldValueArb(valid);
  const extras = fc.oneof(
    { weight: 5, arbitrary: fc.constant({}) },
    {
      weight: 1,
      arbitrary: fc.dictionary(
        fc.oneof(
          fc.string({ maxLength: 10 }),
          fc.constantFrom(
            "userId",
            "orderId",
            "amount",
            "assetId",
            "toUserId",
            "__proto__",
            "constructor",
            "type",
          ),
        ),
        fc.anything({ maxDepth: 1 }),
        { maxKeys: 2 },
      ),
    },
  );
  return fc
    .tuple(fc.record(shaped, { requiredKeys: [] }), extras, fc.boolean())
    .map(([body, extra, allRequired]) => {
      // Half the time fill every field in, so the value checks (not just "missing") are reached.
      const out: Record<string, unknown> = { ...extra };
      for (const name of Object.keys(fields)) if (allRequired && !(name in body)) out[name] = "1";
      return Object.assign(out, body);
    });
}

type Body =
  | { kind: "none" }
  | { kind: "json"; value: unknown }
  | { kind: "raw"; text: string }
  | { kind: "bytes"; bytes: Uint8Array };

const rawTextArb: fc.Arbitrary<Body> = fc.oneof(
  fc.string({ maxLength: 50 }).map((text) => ({ kind: "raw" as const, text })),
  fc
    .json({ maxDepth: 3 })
    .map((text) => ({ kind: "raw" as const, text: text.slice(0, Math.max(1, text.length - 1)) })),
  fc
    .integer({ min: 1, max: 1500 })
    .map((n) => ({ kind: "raw" as const, text: `${"[".repeat(n)}${"]".repeat(n)}` })),
  fc
    .constantFrom(
      "",
      "{",
      "}",
      "null",
      "[]",
      "\uFEFF{}",
      '{"direction":"BUY","direction":"SELL","price":"1","quantity":"1"}',
      '{"price":1e400,"quantity":"1","direction":"BUY"}',
      '{"__proto__":{"direction":"BUY"},"price":"1","quantity":"1"}',
      "undefined",
      "NaN",
    )
    .map((text) => ({ kind: "raw" as const, text })),
  fc.uint8Array({ maxLength: 60 }).map((bytes) => ({ kind: "bytes" as const, bytes })),
);

function bodyArb(fields: Record<string, fc.Arbitrary<unknown>>): fc.Arbitrary<Body> {
  return fc.oneof(
    { weight: 6, arbitrary: fieldsBodyArb(fields).map((value) => ({ kind: "json" as const, value })) },
    { weight: 1, arbitrary: fc.anything().map((value) => ({ kind: "json" as const, value })) },
    { weight: 1, arbitrary: fc.object().map((value) => ({ kind: "json" as const, value })) },
    { weight: 1, arbitrary: rawTextArb },
    { weight: 1, arbitrary: fc.constant({ kind: "none" as const }) },
  );
}

const contentTypeArb = fc.oneof(
  { weight: 8, arbitrary: fc.constant("application/json") },
  {
    weight: 3,
    arbitrary: fc.constantFrom(
      "APPLICATION/JSON",
      "application/json; charset=utf-8",
      "application/json;charset=UTF-8",
      "application/json ; x=y",
      "application/json;",
      "text/plain",
      "",
      "application/jsonx",
      "application/json5",
      "application/x-www-form-urlencoded",
      "multipart/form-data; boundary=x",
      "application/vnd.api+json",
      "text/json",
      "application/json, text/plain",
      undefined,
    ),
  },
);

/** Header-safe strings (printable ASCII and Latin-1; no CR/LF/NUL, which Headers refuses). */
const headerTextArb = fc.string({
  unit: fc.oneof(
    fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c)),
    fc.integer({ min: 0xa0, max: 0xff }).map((c) => String.fromCharCode(c)),
    fc.constant("\t"),
  ),
  maxLength: 80,
});

const idempotencyKeyArb = fc.option(
  fc.oneof(
    { weight: 3, arbitrary: fc.constantFrom("k1", "k2", "k3", "shared-key", "A_b-9") },
    { weight: 2, arbitrary: fc.stringMatching(KEY_SHAPE) },
    { weight: 1, arbitrary: fc.integer({ min: 65, max: 200 }).map((n) => "k".repeat(n)) },
    {
      weight: 1,
      arbitrary: fc.constantFrom("", " ", "a b", "a.b", "a:b", "a/b", "clé", " k1", "k1 ", "\tk1"),
    },
    { weight: 1, arbitrary: headerTextArb },
  ),
  { nil: undefined, freq: 2 },
);

type Framing = "length" | "chunked";
const framingArb = fc.constantFrom<Framing>("length", "length", "length", "chunked");

const authArb = fc.nat({ max: 1000 }).map((n) => n);

// ---------------------------------------------------------------------------------------------------------------
// Sending and checking
// ---------------------------------------------------------------------------------------------------------------

function encodeBody(body: Body): Uint8Array | null {
  switch (body.kind) {
    case "none":
      return null;
    case "bytes":
      return body.bytes;
    case "raw":
      return new TextEncoder().encode(body.text);
    case "json": {
      let text: string | undefined;
      try {
        text = JSON.stringify(body.value);
      } catch {
        text = String(body.value);
      }
      return new TextEncoder().encode(text ?? "");
    }
  }
}

type Spec = {
  method: string;
  path: string;
  auth?: Auth | undefined;
  body?: Body;
  contentType?: string | undefined;
  idempotencyKey?: string | undefined;
  framing?: Framing;
};

/** Builds the request the way a client would put it on the wire: a Content-Length, or chunked framing. */
function build(spec: Spec): Request | null {
  const headers = new Headers();
  try {
    if (spec.auth?.header !== undefined) headers.set("authorization", spec.auth.header);
    if (spec.idempotencyKey !== undefined) headers.set("idempotency-key", spec.idempotencyKey);
    const bytes = spec.body ? encodeBody(spec.body) : null;
    if (bytes !== null) {
      if (spec.contentType !== undefined) headers.set("content-type", spec.contentType);
      if (spec.framing === "chunked") headers.set("transfer-encoding", "chunked");
      else headers.set("content-length", String(bytes.byteLength));
    }
    return new Request(`${BASE}${spec.path}`, {
      method: spec.method,
      headers,
      ...(bytes === null ? {} : { body: bytes }),
    });
  } catch {
    return null; // a header value Headers refuses: a client could not send it either
  }
}

/** Scoped key → the first answer the server gave for it. */
const answers = new Map<string, string>();

function describeSpec(spec: Spec): string {
  const body = spec.body
    ? new TextDecoder().decode(encodeBody(spec.body) ?? new Uint8Array()).slice(0, 300)
    : "";
  return JSON.stringify({
    method: spec.method,
    path: spec.path.slice(0, 200),
    auth: spec.auth?.label,
    contentType: spec.contentType,
    key: spec.idempotencyKey?.slice(0, 80),
    framing: spec.framing,
    body,
  });
}

/**
 * Sends one request and checks every invariant that does not depend on the route's semantics; returns the status.
 * `write` describes what a 202 must have published, for the write routes.
 */
async function send(spec: Spec, write?: { subject: string; needsAdmin: boolean }): Promise<number | null> {
  const req = build(spec);
  if (req === null) return null;
  const seenKey = req.headers.get("idempotency-key") ?? undefined; // as the server sees it (trimmed)
  const what = describeSpec(spec);
  const before = await h.intakeCount();
  const res = await within(10_000, what, () => h.app.handle(req));
  const text = await res.text();
  stats.requests++;
  stats.byStatus.set(res.status, (stats.byStatus.get(res.status) ?? 0) + 1);
  const after = await h.intakeCount();

  // Never a 5xx.
  if (res.status >= 500) throw new Error(`${res.status} for ${what}: ${text.slice(0, 300)}`);

  if (res.status >= 400) {
    // JSON error shape (HEAD answers carry no body).
    if (spec.method !== "HEAD") {
      expect({ what, type: res.headers.get("content-type") ?? "" }).toEqual({
        what,
        type: expect.stringMatching(/^application\/json/),
      });
      let parsed: unknown;
      try {
        parsed = JSON.parse(text);
      } catch {
        throw new Error(`${res.status} is not JSON for ${what}: ${text.slice(0, 200)}`);
      }
      const body = parsed as { error?: Record<string, unknown> };
      expect({ what, keys: Object.keys(body) }).toEqual({ what, keys: ["error"] });
      const error = body.error ?? {};
      expect({ what, code: typeof error.code, message: typeof error.message }).toEqual({
        what,
        code: "string",
        message: "string",
      });
      const extra = Object.keys(error).filter((k) => !["code", "message", "field"].includes(k));
      expect({ what, extra }).toEqual({ what, extra: [] });
      if ("field" in error) expect({ what, field: typeof error.field }).toEqual({ what, field: "string" });
    }
    // A refusal publishes nothing.
    expect({ what, published: after - before }).toEqual({ what, published: 0 });
    // A replayed key that was answered before cannot now be refused as a conflict unless the request differs;
    // nothing to check here beyond "nothing published".
    return res.status;
  }

  if (!write || res.status !== 202) {
    expect({ what, published: after - before }).toEqual({ what, published: 0 });
    return res.status;
  }

  // A 202 on a write route.
  const auth = spec.auth;
  expect({ what, authenticated: auth?.userId !== null && auth?.userId !== undefined }).toEqual({
    what,
    authenticated: true,
  });
  if (write.needsAdmin) expect({ what, admin: auth?.admin }).toEqual({ what, admin: true });
  if (seenKey !== undefined)
    expect({ what, key: seenKey }).toEqual({ what, key: expect.stringMatching(KEY_SHAPE) });
  const answer = JSON.parse(text) as Record<string, string>;
  expect(answer.referenceId).toMatch(/^[1-9][0-9]{0,18}$/);
  const scoped = seenKey === undefined ? undefined : `${auth?.userId}:${seenKey}`;
  const previous = scoped === undefined ? undefined : answers.get(scoped);
  if (previous !== undefined) {
    // A replay: the first answer, nothing new on SEQUENCE.
    expect({ what, text, published: after - before }).toEqual({ what, text: previous, published: 0 });
    return res.status;
  }
  if (scoped !== undefined) answers.set(scoped, text);
  expect({ what, published: after - before }).toEqual({ what, published: 1 });
  const msg = await h.jsm.streams.getMessage(INTAKE_STREAM, { seq: after });
  if (!msg) throw new Error(`no message at ${after}`);
  expect(msg.subject).toBe(write.subject);
  expect(msg.header.get("Nats-Msg-Id")).toBe(answer.referenceId ?? "");
  // The sequencer will accept what the API published.
  const decoded = decodeIntakeEvent(msg.data);
  if (!decoded.ok)
    throw new Error(`published an event the sequencer rejects (${decoded.reason}) for ${what}`);
  expect(decoded.event.referenceId.toString()).toBe(answer.referenceId ?? "");
  expect(decoded.event.idempotencyKey).toBe(scoped);
  if (decoded.event.type === "CREATE_ORDER" || decoded.event.type === "CANCEL_ORDER") {
    expect(decoded.event.userId).toBe(auth?.userId ?? -1n);
    expect(decoded.event.orderId.toString()).toBe(answer.orderId ?? "");
  }
  return res.status;
}

const pickAuth = (n: number, weights: { good: number }) => {
  // Mostly the right kind of valid token, sometimes any of the others.
  const good = auths.filter((a) => a.userId !== null);
  return n % 100 < weights.good ? good[n % good.length] : auths[n % auths.length];
};

// ---------------------------------------------------------------------------------------------------------------
// The properties
// ---------------------------------------------------------------------------------------------------------------

const orderFields = {
  direction: fc.constantFrom("BUY", "SELL"),
  price: decimalArb(PRICE_RULE),
  quantity: decimalArb(PRICE_RULE),
};
const depositFields = { userId: idStringArb, assetId: idStringArb, amount: decimalArb(AMOUNT_RULE) };
const transferFields = {
  fromUserId: idStringArb,
  toUserId: idStringArb,
  assetId: idStringArb,
  amount: decimalArb(AMOUNT_RULE),
};

const writeRoutes = [
  { path: "/orders", fields: orderFields, subject: "sequence.create_order", needsAdmin: false, runs: 450 },
  { path: "/deposits", fields: depositFields, subject: "sequence.deposit", needsAdmin: true, runs: 300 },
  { path: "/transfers", fields: transferFields, subject: "sequence.transfer", needsAdmin: true, runs: 300 },
] as const;

describe("fuzz: write routes", () => {
  for (const route of writeRoutes) {
    test(
      `POST ${route.path}: ${route.runs} random requests`,
      async () => {
        await fc.assert(
          fc.asyncProperty(
            bodyArb(route.fields),
            authArb,
            contentTypeArb,
            idempotencyKeyArb,
            framingArb,
            async (body, authN, contentType, idempotencyKey, framing) => {
              await send(
                {
                  method: "POST",
                  path: route.path,
                  auth: pickAuth(authN, { good: 80 }),
                  body,
                  contentType,
                  idempotencyKey,
                  framing,
                },
                { subject: route.subject, needsAdmin: route.needsAdmin },
              );
            },
          ),
          { numRuns: route.runs },
        );
      },
      FUZZ_TIMEOUT,
    );
  }

  const pathIdArb = fc.oneof(
    { weight: 4, arbitrary: idStringArb },
    {
      weight: 2,
      arbitrary: fc.constantFrom(
        "0",
        "-1",
        "abc",
        "9223372036854775808",
        "99999999999999999999",
        "%",
        "%zz",
        "%31",
        "%E0%A4%A",
        "1%2F2",
        "..",
        ".",
        "__proto__",
        "constructor",
        "1%00",
        "%20",
        "1.0",
        "1e3",
        "01",
        "１",
      ),
    },
    { weight: 2, arbitrary: fc.string({ maxLength: 30 }).map(encodeURIComponent) },
    { weight: 1, arbitrary: fc.string({ unit: "grapheme", maxLength: 10 }).map(encodeURIComponent) },
    { weight: 1, arbitrary: fc.integer({ min: 20, max: 2000 }).map((n) => "7".repeat(n)) },
  );

  test(
    "POST /orders/:orderId/cancel: 300 random requests",
    async () => {
      await fc.assert(
        fc.asyncProperty(
          pathIdArb,
          fc.oneof(
            { weight: 3, arbitrary: fc.constant<Body>({ kind: "none" }) },
            { weight: 2, arbitrary: bodyArb({}) },
          ),
          authArb,
          contentTypeArb,
          idempotencyKeyArb,
          framingArb,
          async (id, body, authN, contentType, idempotencyKey, framing) => {
            const status = await send(
              {
                method: "POST",
                path: `/orders/${id}/cancel`,
                auth: pickAuth(authN, { good: 80 }),
                body,
                contentType,
                idempotencyKey,
                framing,
              },
              { subject: "sequence.cancel_order", needsAdmin: false },
            );
            // The path id is the one validated: a 202 means it decoded to a positive int64.
            if (status === 202) {
              let decodedId = "";
              try {
                decodedId = decodeURIComponent(id);
              } catch {
                decodedId = id;
              }
              expect({
                id,
                ok: /^[1-9][0-9]{0,18}$/.test(decodedId) && BigInt(decodedId) <= MAX_INT64,
              }).toEqual({
                id,
                ok: true,
              });
            }
          },
        ),
        { numRuns: 300 },
      );
    },
    FUZZ_TIMEOUT,
  );

  test(
    "JWTs with random claims (signed with the real secret): 120 requests; a write passes only with valid claims",
    async () => {
      const key = new TextEncoder().encode(SECRET);
      const now = Math.floor(Date.now() / 1000);
      const claimValue = fc.oneof(fc.anything({ maxDepth: 1 }), fc.string({ maxLength: 25 }));
      await fc.assert(
        fc.asyncProperty(
          fc.record(
            {
              sub: fc.oneof(
                idStringArb,
                fc.constantFrom("0", "-1", "01", "9223372036854775808", "abc", ""),
                claimValue,
              ),
              exp: fc.oneof(
                fc.integer({ min: now + 60, max: now + 86_400 }),
                fc.integer({ min: 0, max: now - 60 }),
                claimValue,
              ),
              roles: fc.oneof(
                fc.constant(["admin"]),
                fc.constantFrom("admin", ["Admin"], ["user", "admin"], [], null),
                claimValue,
              ),
            },
            { requiredKeys: [] },
          ),
          fc.constantFrom("/orders", "/deposits", "/transfers"),
          async (claims, path) => {
            let token: string;
            try {
              token = await new SignJWT(claims as Record<string, unknown>)
                .setProtectedHeader({ alg: "HS256" })
                .setIssuedAt(now) // iat is required (issue 13)
                .sign(key);
            } catch {
              return; // jose refuses to sign some claim values; a client could not send them either
            }
            const subOk =
              typeof claims.sub === "string" &&
              /^[1-9][0-9]{0,18}$/.test(claims.sub) &&
              BigInt(claims.sub) <= MAX_INT64;
            // Not expired, and no longer-lived than AUTH_MAX_TTL (24 h) allows.
            const expOk = typeof claims.exp === "number" && claims.exp > now && claims.exp - now <= 86_400;
            const admin = Array.isArray(claims.roles) && claims.roles.includes("admin");
            const auth: Auth = {
              header: `Bearer ${token}`,
              userId: subOk && expOk ? BigInt(claims.sub as string) : null,
              admin: subOk && expOk && admin,
              label: `claims ${JSON.stringify(claims)?.slice(0, 100)}`,
            };
            const body =
              path === "/orders"
                ? { direction: "BUY", price: "1", quantity: "1" }
                : path === "/deposits"
                  ? { userId: "1", assetId: "2", amount: "3" }
                  : { fromUserId: "1", toUserId: "2", assetId: "3", amount: "4" };
            const status = await send(
              {
                method: "POST",
                path,
                auth,
                body: { kind: "json", value: body },
                contentType: "application/json",
              },
              {
                subject: `sequence.${path === "/orders" ? "create_order" : path.slice(1, -1)}`,
                needsAdmin: path !== "/orders",
              },
            );
            // Valid claims are accepted: the right answer is 202 (or 403 for a user on an admin route).
            if (auth.userId !== null) {
              expect({ claims, status }).toEqual({
                claims,
                status: path === "/orders" || auth.admin ? 202 : 403,
              });
            } else {
              expect({ claims, status }).toEqual({ claims, status: 401 });
            }
          },
        ),
        { numRuns: 120 },
      );
    },
    FUZZ_TIMEOUT,
  );
});

describe("fuzz: read routes and everything else", () => {
  const queryValueArb = fc.oneof(
    idStringArb,
    fc.constantFrom(
      "0",
      "1",
      "1000",
      "1001",
      "-1",
      "",
      "%",
      "%zz",
      "1e3",
      "9223372036854775808",
      "9999999999999999999",
    ),
    fc.string({ maxLength: 20 }).map(encodeURIComponent),
    fc.integer({ min: 0, max: 2000 }).map(String),
  );
  const queryArb = fc
    .array(
      fc.tuple(
        fc.oneof(
          { weight: 4, arbitrary: fc.constantFrom("after", "limit") },
          {
            weight: 1,
            arbitrary: fc.oneof(
              fc.constantFrom("after[]", "limit[0]", "__proto__", "constructor", "toString", "AFTER", ""),
              fc.string({ maxLength: 8 }).map(encodeURIComponent),
            ),
          },
        ),
        queryValueArb,
        fc.boolean(),
      ),
      { maxLength: 4 },
    )
    .map((pairs) => {
      if (pairs.length === 0) return "";
      return `?${pairs.map(([k, v, withEq]) => (withEq || v !== "" ? `${k}=${v}` : k)).join("&")}`;
    });

  const segmentArb = fc.oneof(
    idStringArb,
    fc.constantFrom(
      "0",
      "-1",
      "abc",
      "%",
      "%zz",
      "%31",
      "9223372036854775808",
      "1%00",
      "",
      "1/2",
      "..",
      "%2e%2e",
    ),
    fc.string({ maxLength: 30 }).map(encodeURIComponent),
    fc.string({ unit: "grapheme", maxLength: 10 }).map(encodeURIComponent),
  );

  test(
    "GET /events, /events/:id, /references/:id: 400 random requests",
    async () => {
      await fc.assert(
        fc.asyncProperty(
          fc.oneof(
            queryArb.map((q) => `/events${q}`),
            fc.tuple(segmentArb, queryArb).map(([s, q]) => `/events/${s}${q}`),
            fc.tuple(segmentArb, queryArb).map(([s, q]) => `/references/${s}${q}`),
          ),
          authArb,
          async (path, authN) => {
            const status = await send({ method: "GET", path, auth: pickAuth(authN, { good: 30 }) });
            expect(status === null || status < 500).toBe(true);
          },
        ),
        { numRuns: 400 },
      );
    },
    FUZZ_TIMEOUT,
  );

  test(
    "random methods and paths: 150 requests",
    async () => {
      const paths = [
        "/orders",
        "/orders/1/cancel",
        "/deposits",
        "/transfers",
        "/events",
        "/events/1",
        "/references/1",
        "/healthz",
        "/readyz",
        "/",
        "/nope",
        "/orders/1",
        "/orders/1/cancel/extra",
        "//orders",
        "/ORDERS",
        "/orders%2F1%2Fcancel",
      ];
      await fc.assert(
        fc.asyncProperty(
          fc.constantFrom("GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"),
          fc.oneof(
            fc.constantFrom(...paths),
            segmentArb.map((s) => `/${s}`),
          ),
          fc.option(bodyArb(orderFields), { nil: undefined }),
          authArb,
          contentTypeArb,
          async (method, path, body, authN, contentType) => {
            const withBody = body !== undefined && method !== "GET" && method !== "HEAD";
            const write =
              method !== "POST"
                ? undefined
                : path === "/orders"
                  ? { subject: "sequence.create_order", needsAdmin: false }
                  : path === "/orders/1/cancel" || path === "/orders/1/cancel/"
                    ? { subject: "sequence.cancel_order", needsAdmin: false }
                    : undefined;
            await send(
              {
                method,
                path,
                auth: pickAuth(authN, { good: 60 }),
                ...(withBody ? { body, contentType } : {}),
              },
              write,
            );
          },
        ),
        { numRuns: 150 },
      );
    },
    FUZZ_TIMEOUT,
  );

  test("the fuzz actually reached the success paths and the refusals", () => {
    expect(stats.requests).toBeGreaterThan(1_800);
    for (const status of [200, 202, 400, 401, 403, 404, 409, 413, 415]) {
      expect({ status, seen: (stats.byStatus.get(status) ?? 0) > 0 }).toEqual({ status, seen: true });
    }
  });
});
