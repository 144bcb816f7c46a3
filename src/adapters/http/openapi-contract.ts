/**
 * The API contract at /openapi/json (and its page at /openapi), complete enough to generate a client from.
 *
 * @elysiajs/openapi builds the document from the routes' schemas: parameters, headers and the validated 2xx
 * answers. Two things it cannot see are added here, after it, from the same routes:
 * - request bodies: the app parses bodies itself (app.ts onParse), and the plugin lists no media type for a route
 *   parsed by a function, so each body is described as application/json with the very schema that validates it;
 * - the answers the routes declare with documented() (openapi-responses.ts), which the plugin drops where a route
 *   also has a `response` schema, and the error answers of the app-wide hooks, which can reach every route.
 */
import { openapi } from "@elysiajs/openapi";
import { Elysia } from "elysia";
import type { ErrorStatus } from "./errors.ts";
import { OPENAPI_ASSET_PATH } from "./openapi-assets.ts";
import { type Access, accessOf, contractComponents, errorResponseRef } from "./openapi-responses.ts";

type OpenapiScalar = NonNullable<Parameters<typeof openapi>[0]>["scalar"];

/** What the contract reads of a route (Elysia's `app.routes`). */
export type DocumentedRoute = {
  method: string;
  path: string;
  hooks?: { body?: unknown; detail?: unknown };
};

type Json = Record<string, unknown>;
type Document = Json & { paths?: Record<string, Record<string, Json>>; components?: Json };

export const SPEC_PATH = "/openapi/json";

const TAGS = [
  { name: "orders", description: "Orders and cancels, for the token's own user." },
  { name: "funds", description: "Deposits and transfers: admin tokens only." },
  { name: "events", description: "The sequenced log: replay, lookup by sequenceId or referenceId." },
  { name: "ops", description: "Liveness and readiness, without a token." },
];

/**
 * What the app-wide hooks (app.ts) can answer on any route, whatever the route's own code does: a query
 * parameter it does not declare (400), a body declared too large or not JSON (413, 415: checked from the
 * headers on every request), a bug (500), and, on routes that need a token, an address refused for its failed
 * authentications (429; the health routes are exempt). Bodies are read only for other methods than GET: there,
 * also a body the route does not take or that is malformed (400), too large once read (413) or late (408).
 */
function appWideErrors(method: string, access: Access): ErrorStatus[] {
  const read: ErrorStatus[] = method === "GET" || method === "HEAD" ? [] : [408];
  return [400, ...read, 413, 415, 500, ...(access === "none" ? [] : [429 as const])];
}

/** "/orders/:orderId/cancel" → "/orders/{orderId}/cancel". */
function openapiPath(path: string): string {
  return path.replace(/:([^/]+)/g, "{$1}");
}

/** A plain-JSON copy: TypeBox schemas are JSON Schema plus symbol-keyed metadata that JSON leaves out. */
function plain<T>(value: T): T {
  return JSON.parse(JSON.stringify(value)) as T;
}

function byStatus(responses: Json): Json {
  return Object.fromEntries(Object.entries(responses).sort(([a], [b]) => a.localeCompare(b)));
}

/** The plugin's document with request bodies, every response, servers, tags and shared components filled in. */
export function completeContract(generated: unknown, routes: readonly DocumentedRoute[]): Document {
  const doc = plain(generated) as Document;
  const components = contractComponents();
  doc.servers = [{ url: "/", description: "This service: the document is served by the API it describes." }];
  doc.tags = TAGS;
  doc.components = {
    ...doc.components,
    schemas: { ...(doc.components?.schemas as Json | undefined), ...components.schemas },
    responses: components.responses,
  };
  for (const route of routes) {
    const operation = doc.paths?.[openapiPath(route.path)]?.[route.method.toLowerCase()];
    if (!operation) continue; // hidden or excluded
    const hooks = route.hooks ?? {};
    if (hooks.body) {
      operation.requestBody = {
        required: true,
        content: { "application/json": { schema: plain(hooks.body) } },
      };
    }
    const access = accessOf(hooks.detail);
    const responses: Json = {};
    for (const status of appWideErrors(route.method, access ?? "any-token"))
      responses[status] = errorResponseRef(status);
    const declared = plain((hooks.detail as { responses?: Json } | undefined)?.responses ?? {});
    Object.assign(responses, declared);
    // Where the route validates an answer, its schema is the plugin's (from that validation); the declared
    // description, when there is one, is kept.
    for (const [status, fromSchema] of Object.entries((operation.responses ?? {}) as Json)) {
      const ours = declared[status] as Json | undefined;
      responses[status] = ours?.description
        ? { ...(fromSchema as Json), description: ours.description }
        : fromSchema;
    }
    operation.responses = byStatus(responses);
  }
  return doc;
}

/**
 * The /openapi page and /openapi/json, completed by completeContract once per change of the route table (the
 * plugin caches its document and rebuilds it only when routes were added).
 */
export function apiReference(routes: () => readonly DocumentedRoute[]) {
  let generated: unknown;
  let complete: Document | undefined;
  return new Elysia({ name: "api-reference" })
    .onAfterHandle(({ route, responseValue }) => {
      if (route !== SPEC_PATH) return undefined;
      if (responseValue !== generated || !complete) {
        complete = completeContract(responseValue, routes());
        generated = responseValue;
      }
      return complete;
    })
    .use(
      openapi({
        path: "/openapi",
        specPath: SPEC_PATH,
        documentation: {
          info: {
            title: "Exactly-once order sequencer",
            version: "0.1.0",
            description:
              "Orders, cancels, deposits and transfers are accepted (202 after the JetStream PubAck), given a " +
              "gap-free sequenceId, stored and republished on TRADING. Ids and decimals are strings. " +
              'Errors: {"error":{"code","message","field"?}}. Tokens are JWTs (`Authorization: Bearer`); ' +
              "each operation names the role it needs (`x-required-role`: none, any-token, reader-or-admin, admin).",
          },
          components: {
            securitySchemes: { bearer: { type: "http", scheme: "bearer", bearerFormat: "JWT" } },
          },
          security: [{ bearer: [] }],
        },
        // The page's script comes from this service (the pinned @scalar/api-reference package), not a CDN, and
        // Scalar's default fonts (another host) are off: the page works offline and loads nothing unpinned.
        // (The plugin's type wants every Scalar option; the page's defaults fill in the rest.)
        scalar: { cdn: OPENAPI_ASSET_PATH, withDefaultFonts: false } as unknown as OpenapiScalar,
        exclude: { paths: ["/metrics", OPENAPI_ASSET_PATH] },
      }),
    );
}
