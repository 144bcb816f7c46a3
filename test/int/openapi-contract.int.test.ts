/**
 * The API contract at /openapi/json, checked three ways against a running API (real nats-server + PostgreSQL):
 * - Redocly's recommended ruleset (redocly.yaml) finds no error and no warning in it;
 * - every answer a set of probes gets (success and refusal, on every route) is documented for its operation,
 *   and an error's code is one the document lists for that status;
 * - a client generated from it (openapi-typescript + openapi-fetch) type-checks under `tsc --strict`, fails to
 *   type-check with a wrong body, and, run with bun over loopback, places an order, reads a typed 400 and reads
 *   the order back from the log.
 * The tools run from node_modules with telemetry off and nothing to reach but 127.0.0.1.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { type ProcessResult, runProcess } from "../support/process.ts";
import { type RunningSequencer, runSequencer } from "../support/stack.ts";
import { waitFor, within } from "../support/wait.ts";
import { type Harness, harnessStack, jsonRequest, readJson, startHarness } from "./http-helpers.ts";

const SETUP_TIMEOUT = 60_000;
const TOOL_TIMEOUT = 90_000;

const ROOT = resolve(import.meta.dir, "../..");
const BIN = join(ROOT, "node_modules/.bin");

type Json = Record<string, unknown>;
type Operation = Json & { responses: Record<string, Json> };
type OpenApi = Json & { paths: Record<string, Record<string, Operation>>; components: Json };

/** Runs a tool to its end (a hang, e.g. on the network, fails the test instead), with telemetry and colour off. */
function run(cmd: string[], options: { cwd: string; timeoutMs?: number }): Promise<ProcessResult> {
  return runProcess(cmd, {
    ...options,
    env: { ...process.env, REDOCLY_TELEMETRY: "off", REDOCLY_SUPPRESS_UPDATE_NOTICE: "true", NO_COLOR: "1" },
  });
}

let h: Harness;
let base = "";
let listening = false;
let sequencer: RunningSequencer | undefined;
let dir = "";
let spec: OpenApi;
const tokens = { user: "", other: "", admin: "", reader: "" };

beforeAll(async () => {
  h = await startHarness();
  const port = h.app.listen({ port: 0, hostname: "127.0.0.1" }).server?.port;
  if (!port) throw new Error("the app did not start listening");
  listening = true;
  base = `http://127.0.0.1:${port}`;
  tokens.user = await h.tokens.mint(3001n);
  tokens.other = await h.tokens.mint(3002n);
  tokens.admin = await h.tokens.mint(1n, { admin: true });
  tokens.reader = await h.tokens.mint(2n, { role: "reader" });
  // The harness's own connections and database: the sequencer numbers what the API accepts.
  sequencer = await runSequencer(harnessStack(h));
  // Under the repo (test-results/ is gitignored) so the client program resolves openapi-fetch and @types/bun
  // from its node_modules.
  mkdirSync(join(ROOT, "test-results"), { recursive: true });
  dir = mkdtempSync(join(ROOT, "test-results", "openapi-contract-"));
  const res = await fetch(`${base}/openapi/json`);
  expect(res.status).toBe(200);
  spec = (await res.json()) as OpenApi;
  writeFileSync(join(dir, "openapi.json"), JSON.stringify(spec, null, 2));
}, SETUP_TIMEOUT);

afterAll(async () => {
  await sequencer?.stop();
  if (listening) await h.app.stop();
  await h?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
}, SETUP_TIMEOUT);

function operations(): [string, string, Operation][] {
  return Object.entries(spec.paths).flatMap(([path, item]) =>
    Object.entries(item).map(([method, op]): [string, string, Operation] => [path, method, op]),
  );
}

/** A `$ref` inside the document, resolved. */
function deref(value: Json): Json {
  const target = value.$ref;
  if (typeof target !== "string") return value;
  let node: unknown = spec;
  for (const part of target.replace(/^#\//, "").split("/")) node = (node as Json)[part];
  return node as Json;
}

describe("the document", () => {
  test(
    "Redocly (recommended ruleset, redocly.yaml): 0 errors, 0 warnings",
    async () => {
      const lint = await run(
        [
          join(BIN, "redocly"),
          "lint",
          "--config",
          join(ROOT, "redocly.yaml"),
          "--format=json",
          "openapi.json",
        ],
        { cwd: dir, timeoutMs: TOOL_TIMEOUT },
      );
      const report = JSON.parse(lint.out) as {
        totals: { errors: number; warnings: number };
        problems: { ruleId: string; message: string }[];
      };
      expect(report.problems.map((p) => `${p.ruleId}: ${p.message}`)).toEqual([]);
      expect(report.totals).toMatchObject({ errors: 0, warnings: 0 });
      expect(lint.code).toBe(0);
    },
    TOOL_TIMEOUT,
  );

  test("every operation: summary, role, security, a body schema where it takes one, its errors", () => {
    const ops = operations();
    expect(ops.map(([path, method]) => `${method.toUpperCase()} ${path}`).sort()).toEqual([
      "GET /events",
      "GET /events/{sequenceId}",
      "GET /healthz",
      "GET /me/events",
      "GET /readyz",
      "GET /references/{referenceId}",
      "POST /deposits",
      "POST /orders",
      "POST /orders/{orderId}/cancel",
      "POST /transfers",
    ]);
    expect(spec.servers).toEqual([expect.objectContaining({ url: "/" })]);
    for (const [path, method, op] of ops) {
      const where = `${method} ${path}`;
      expect({ where, summary: typeof op.summary }).toEqual({ where, summary: "string" });
      const role = op["x-required-role"];
      expect({
        where,
        role: ["none", "any-token", "reader-or-admin", "admin"].includes(String(role)),
      }).toEqual({
        where,
        role: true,
      });
      expect({ where, described: String(op.description).includes("Who may call it") }).toEqual({
        where,
        described: true,
      });
      if (role === "none") expect({ where, security: op.security }).toEqual({ where, security: [] });
      else {
        expect({ where, security: (op.security as Json[]).length > 0 }).toEqual({ where, security: true });
        expect({ where, has401: "401" in op.responses }).toEqual({ where, has401: true });
      }
      if (method === "post" && path !== "/orders/{orderId}/cancel") {
        const body = op.requestBody as { content: Record<string, { schema: Json }> };
        expect({ where, media: Object.keys(body.content) }).toEqual({ where, media: ["application/json"] });
        expect(body.content["application/json"]?.schema.additionalProperties).toBe(false);
      }
      const statuses = Object.keys(op.responses);
      expect({ where, ok: statuses.some((s) => s.startsWith("2")) }).toEqual({ where, ok: true });
      for (const status of ["400", "413", "415", "500"]) {
        expect({ where, status, has: statuses.includes(status) }).toEqual({ where, status, has: true });
      }
      // A body is read (and can be late) only on the POST routes; GET bodies are never read.
      expect({ where, late: statuses.includes("408") }).toEqual({ where, late: method === "post" });
      for (const status of ["429", "503"]) {
        if (!(status in op.responses)) continue;
        const response = deref(op.responses[status] as Json);
        // /readyz's 503 is its "not ready" answer, not a refusal to retry.
        if (path === "/readyz") continue;
        expect({ where, status, header: Object.keys((response.headers as Json) ?? {}) }).toEqual({
          where,
          status,
          header: ["Retry-After"],
        });
      }
    }
    expect(spec.paths["/deposits"]?.post?.["x-required-role"]).toBe("admin");
    expect(spec.paths["/events"]?.get?.security).toEqual([{ bearer: ["reader"] }, { bearer: ["admin"] }]);
  });
});

type Probe = {
  method: string;
  path: string;
  body?: unknown;
  token?: keyof typeof tokens;
  contentType?: string;
  raw?: boolean;
  key?: string;
  status: number;
};

describe("answers against the document", () => {
  const order = { direction: "BUY", price: "10.5", quantity: "2" };
  const probes: Probe[] = [
    { method: "GET", path: "/healthz", status: 200 },
    { method: "GET", path: "/healthz?verbose=1", status: 400 },
    { method: "GET", path: "/readyz", status: 200 },
    { method: "GET", path: "/events", status: 401 },
    { method: "GET", path: "/events", token: "user", status: 403 },
    { method: "GET", path: "/events?limit=0", token: "reader", status: 400 },
    { method: "GET", path: "/events?from=1", token: "reader", status: 400 },
    { method: "GET", path: "/events?limit=5", token: "admin", status: 200 },
    { method: "GET", path: "/me/events", token: "user", status: 200 },
    { method: "GET", path: "/me/events", status: 401 },
    { method: "GET", path: "/events/abc", token: "reader", status: 400 },
    { method: "GET", path: "/events/987654321", token: "reader", status: 404 },
    { method: "GET", path: "/events/1", token: "user", status: 403 },
    { method: "GET", path: "/references/987654321", token: "user", status: 404 },
    { method: "GET", path: "/references/0", token: "user", status: 400 },
    { method: "POST", path: "/orders", body: order, status: 401 },
    { method: "POST", path: "/orders", body: order, token: "user", status: 202 },
    { method: "POST", path: "/orders", body: { ...order, quantity: "-1" }, token: "user", status: 400 },
    { method: "POST", path: "/orders", body: { ...order, extra: "1" }, token: "user", status: 400 },
    { method: "POST", path: "/orders", body: '{"a":1,"a":2}', raw: true, token: "user", status: 400 },
    {
      method: "POST",
      path: "/orders",
      body: "direction=BUY",
      raw: true,
      contentType: "text/plain",
      token: "user",
      status: 415,
    },
    { method: "POST", path: "/orders", body: "x".repeat(20_000), raw: true, token: "user", status: 413 },
    { method: "POST", path: "/orders", body: order, token: "user", key: "contract-k", status: 202 },
    {
      method: "POST",
      path: "/orders",
      body: { ...order, quantity: "3" },
      token: "user",
      key: "contract-k",
      status: 409,
    },
    { method: "POST", path: "/orders/12/cancel", token: "user", status: 202 },
    { method: "POST", path: "/orders/12/cancel", body: order, token: "user", status: 400 },
    { method: "POST", path: "/orders/abc/cancel", token: "user", status: 400 },
    {
      method: "POST",
      path: "/deposits",
      body: { userId: "5", assetId: "6", amount: "1" },
      token: "user",
      status: 403,
    },
    {
      method: "POST",
      path: "/deposits",
      body: { userId: "5", assetId: "6", amount: "1" },
      token: "admin",
      status: 202,
    },
    { method: "POST", path: "/deposits", body: { userId: "5", assetId: "6" }, token: "admin", status: 400 },
    {
      method: "POST",
      path: "/transfers",
      body: { fromUserId: "5", toUserId: "5", assetId: "6", amount: "1" },
      token: "admin",
      status: 400,
    },
  ];

  /** The document's operation for a concrete request path. */
  function operationFor(method: string, path: string): Operation | undefined {
    const bare = path.split("?")[0] ?? path;
    for (const [template, item] of Object.entries(spec.paths)) {
      const pattern = new RegExp(`^${template.replace(/\{[^}]+\}/g, "[^/]+")}$`);
      if (pattern.test(bare)) return item[method.toLowerCase()];
    }
    return undefined;
  }

  test("each probe's status is documented for its operation, and an error's code is listed for that status", async () => {
    const seen: string[] = [];
    for (const probe of probes) {
      const where = `${probe.method} ${probe.path}`;
      const token = probe.token ? tokens[probe.token] : undefined;
      const request =
        probe.body === undefined
          ? new Request(`http://localhost${probe.path}`, {
              method: probe.method,
              headers: {
                ...(token ? { authorization: `Bearer ${token}` } : {}),
                ...(probe.key ? { "idempotency-key": probe.key } : {}),
              },
            })
          : jsonRequest(probe.method, probe.path, probe.body, {
              ...(token ? { token } : {}),
              ...(probe.contentType ? { contentType: probe.contentType } : {}),
              ...(probe.raw ? { raw: true } : {}),
            });
      if (probe.key && probe.body !== undefined) request.headers.set("idempotency-key", probe.key);
      const res = await within(10_000, where, () => h.app.handle(request));
      const body = (await readJson(res)) as Json;
      expect({ where, status: res.status }).toEqual({ where, status: probe.status });
      const op = operationFor(probe.method, probe.path);
      const documented = op?.responses[String(res.status)];
      expect({ where, documented: documented !== undefined }).toEqual({ where, documented: true });
      if (res.status >= 400 && !(probe.path === "/readyz")) {
        const schema = (deref(documented as Json).content as Json)["application/json"] as { schema: Json };
        const codes = (
          (schema.schema.properties as Json).error as { properties: { code: { enum: string[] } } }
        ).properties.code.enum;
        const code = (body.error as Json).code;
        expect({ where, code, listed: codes.includes(String(code)) }).toEqual({ where, code, listed: true });
        seen.push(`${res.status} ${code}`);
      }
    }
    // The probes reach every kind of refusal a client can cause without a dependency failing.
    expect(new Set(seen)).toEqual(
      new Set([
        "400 INVALID_INPUT",
        "400 INVALID_JSON",
        "401 UNAUTHENTICATED",
        "403 FORBIDDEN",
        "404 NOT_FOUND",
        "409 CONFLICT",
        "413 PAYLOAD_TOO_LARGE",
        "415 UNSUPPORTED_MEDIA_TYPE",
      ]),
    );
  }, 30_000);
});

/** A client program as a user of the generated types writes it: place an order, a typed 400, the log read back. */
const CLIENT = `import createClient from "openapi-fetch";
import type { components, paths } from "./api";

type BadRequest = components["responses"]["BadRequest"]["content"]["application/json"];

const [baseUrl, user, reader] = Bun.argv.slice(2) as [string, string, string];
const client = createClient<paths>({ baseUrl });
const asUser = { authorization: \`Bearer \${user}\` };

const placed = await client.POST("/orders", {
  body: { direction: "BUY", price: "101.25", quantity: "2" },
  params: { header: { "idempotency-key": "client-program-1" } },
  headers: asUser,
});
if (!placed.data) throw new Error(\`order refused: \${placed.response.status}\`);
const referenceId: string = placed.data.referenceId;

const refused = await client.POST("/orders", {
  body: { direction: "SELL", price: "1.123456789", quantity: "1" },
  headers: asUser,
});
// openapi-fetch types \`error\` as any documented error body; a 400's code is one of BadRequest's.
const code = refused.error?.error.code;
const badRequestCodes: BadRequest["error"]["code"][] = ["INVALID_INPUT", "INVALID_JSON"];
if (code === undefined || !(badRequestCodes as string[]).includes(code)) throw new Error(\`not a 400 code: \${code}\`);

// Wait until the sequencer has numbered the order, then find it in the log.
let sequenceId: string | undefined;
for (let i = 0; i < 200 && sequenceId === undefined; i++) {
  const ref = await client.GET("/references/{referenceId}", { params: { path: { referenceId } }, headers: asUser });
  if (ref.data && "sequenceId" in ref.data) sequenceId = ref.data.sequenceId;
  else await Bun.sleep(50);
}
const log = await client.GET("/events", {
  params: { query: { after: "0", limit: "1000" } },
  headers: { authorization: \`Bearer \${reader}\` },
});
const event = log.data?.events.find((e) => e.referenceId === referenceId);
const price: string | undefined = event?.type === "CREATE_ORDER" ? event.price : undefined;

console.log(
  JSON.stringify({
    placed: { status: placed.response.status, referenceId, orderId: placed.data.orderId },
    refused: { status: refused.response.status, code, field: refused.error?.error.field },
    log: { status: log.response.status, sequenceId, type: event?.type, price, next: log.data?.next },
  }),
);
`;

/** The same calls with two mistakes the types must catch: a number for a decimal string, a missing field. */
const WRONG = `import createClient from "openapi-fetch";
import type { paths } from "./api";

const client = createClient<paths>({ baseUrl: "http://127.0.0.1:1" });
await client.POST("/orders", { body: { direction: "BUY", price: "1", quantity: 5 } });
await client.POST("/deposits", { body: { userId: "5", amount: "1" } });
`;

const TSC_FLAGS = [
  "--strict",
  "--noEmit",
  "--target",
  "es2022",
  "--module",
  "esnext",
  "--moduleResolution",
  "bundler",
  "--types",
  "bun",
  "--skipLibCheck",
];

describe("a client generated from the document", () => {
  test(
    "openapi-typescript → tsc --strict passes for the program and fails on a wrong body; bun runs it against the API",
    async () => {
      const gen = await run([join(BIN, "openapi-typescript"), "openapi.json", "-o", "api.ts"], {
        cwd: dir,
        timeoutMs: TOOL_TIMEOUT,
      });
      expect({ code: gen.code, err: gen.err.includes("✘") ? gen.err : "" }).toEqual({ code: 0, err: "" });
      writeFileSync(join(dir, "client.ts"), CLIENT);
      writeFileSync(join(dir, "wrong.ts"), WRONG);

      const good = await run([join(BIN, "tsc"), ...TSC_FLAGS, "client.ts"], {
        cwd: dir,
        timeoutMs: TOOL_TIMEOUT,
      });
      expect({ code: good.code, out: good.out }).toEqual({ code: 0, out: "" });

      const wrong = await run([join(BIN, "tsc"), ...TSC_FLAGS, "wrong.ts"], {
        cwd: dir,
        timeoutMs: TOOL_TIMEOUT,
      });
      expect(wrong.code).not.toBe(0);
      const errors = wrong.out.split("\n").filter((line) => line.startsWith("wrong.ts("));
      // Line 5: quantity is a number; line 6: assetId is missing.
      expect(errors.map((line) => line.slice(0, line.indexOf(")") + 1))).toEqual([
        expect.stringMatching(/^wrong\.ts\(5,/),
        expect.stringMatching(/^wrong\.ts\(6,/),
      ]);
      expect(wrong.out).toContain("'assetId'");

      const ran = await run([process.execPath, "client.ts", base, tokens.user, tokens.reader], {
        cwd: dir,
        timeoutMs: 30_000,
      });
      expect({ code: ran.code, err: ran.code === 0 ? "" : ran.err }).toEqual({ code: 0, err: "" });
      const result = JSON.parse(ran.out) as {
        placed: { status: number; referenceId: string; orderId: string };
        refused: { status: number; code: string; field: string };
        log: { status: number; sequenceId: string; type: string; price: string; next: string };
      };
      expect(result.placed.status).toBe(202);
      expect(result.placed.referenceId).toMatch(/^[1-9][0-9]{0,18}$/);
      expect(result.placed.orderId).toMatch(/^[1-9][0-9]{0,18}$/);
      expect(result.refused).toEqual({ status: 400, code: "INVALID_INPUT", field: "price" });
      expect(result.log).toMatchObject({ status: 200, type: "CREATE_ORDER", price: "101.25" });
      expect(result.log.sequenceId).toMatch(/^[1-9][0-9]*$/);
      // The order is in the database under the number the client read.
      await waitFor(
        "the order stored",
        async () => (await h.store.head()).sequenceId >= BigInt(result.log.sequenceId),
      );
      const stored = await h.store.find({ referenceId: BigInt(result.placed.referenceId) });
      expect(stored?.sequenceId.toString()).toBe(result.log.sequenceId);
    },
    TOOL_TIMEOUT * 2,
  );
});
