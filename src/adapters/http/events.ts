/**
 * Replay and lookup of the sequenced log, each read by whom it belongs to:
 * - GET /events (keyset pages) and GET /events/:sequenceId: the whole log, for `admin` and `reader` tokens only
 *   (a user token → 403);
 * - GET /me/events: the caller's own events (their orders and cancels, deposits to them, transfers from or to
 *   them), the same keyset paging, served by indexes;
 * - GET /references/:referenceId (sequenced, pending on the intake stream, or unknown): for the user it concerns
 *   or admin/reader; anyone else gets the same 404 as an unknown id, also while it is pending, so an id (a
 *   predictable snowflake) tells a stranger nothing.
 */
import { Elysia, t } from "elysia";
import type { Principal, TokenService } from "../../app/auth.ts";
import { ForbiddenError, NotFoundError, UnavailableError } from "../../app/errors.ts";
import type { EventStore, IntakeLookup, UserEventReader } from "../../app/ports.ts";
import { partiesOfJson } from "../../domain/events.ts";
import { parsePositiveId } from "../../domain/ids.ts";
import { type AuthenticationGuard, authentication } from "./auth.ts";
import { HttpError } from "./errors.ts";
import { documented, schemaRef } from "./openapi-responses.ts";
import { idString } from "./schemas.ts";

export const MAX_PAGE = 1000;

/** The stored payloads are already each event's JSON: answers splice them instead of parsing and re-encoding. */
function json(body: string): Response {
  return new Response(body, { headers: { "content-type": "application/json" } });
}

function idParam(name: string, value: string): bigint {
  const id = parsePositiveId(value);
  if (id === null)
    throw new HttpError(400, "INVALID_INPUT", `${name} must be a positive 64-bit integer`, name);
  return id;
}

/** The whole log is for downstream services and auditors, not for users. */
function requireLogReader(principal: Principal): void {
  if (!principal.admin && !principal.reader) {
    throw new ForbiddenError(
      "this route needs a reader or admin token; GET /me/events lists your own events",
    );
  }
}

/** Whether the principal may see an event (its JSON): admin and reader see all, a user what concerns them. */
function mayRead(principal: Principal, parties: readonly string[]): boolean {
  return principal.admin || principal.reader || parties.includes(principal.userId.toString());
}

const PageQuery = t.Object(
  {
    after: t.Optional(t.String({ pattern: "^(0|[1-9][0-9]{0,18})$", description: "last sequenceId seen" })),
    limit: t.Optional(t.String({ pattern: "^([1-9][0-9]{0,2}|1000)$", description: `1-${MAX_PAGE}` })),
  },
  { additionalProperties: false },
);

function page(query: { after?: string | undefined; limit?: string | undefined }) {
  return {
    after: query.after === undefined || query.after === "0" ? 0n : idParam("after", query.after),
    limit: query.limit === undefined ? 100 : Number(query.limit),
  };
}

function pageOf(records: readonly { sequenceId: bigint; payload: string }[]): Response {
  const last = records[records.length - 1];
  const next = last ? `"${last.sequenceId}"` : "null";
  return json(`{"events":[${records.map((r) => r.payload).join(",")}],"next":${next}}`);
}

export function eventsModule(
  store: Pick<EventStore, "readAfter" | "find"> & UserEventReader,
  pending: IntakeLookup,
  tokens: TokenService,
  guard?: AuthenticationGuard,
) {
  return new Elysia({ name: "events" })
    .use(authentication(tokens, guard))
    .get(
      "/events",
      async ({ principal, query }) => {
        requireLogReader(principal);
        const { after, limit } = page(query);
        return pageOf(await store.readAfter(after, limit));
      },
      {
        query: PageQuery,
        detail: documented({
          summary: "Replay the whole sequenced log after a sequenceId (keyset paging); reader or admin token",
          description:
            "Up to `limit` events (default 100) with sequenceId greater than `after` (default 0), in order.",
          tags: ["events"],
          access: "reader-or-admin",
          answers: {
            200: {
              description: "A page of the log; `next` is the `after` of the next page.",
              schema: schemaRef.eventPage,
            },
          },
          errors: [401, 403, 503],
        }),
      },
    )
    .get(
      "/me/events",
      async ({ principal, query }) => {
        const { after, limit } = page(query);
        return pageOf(await store.readConcerning(principal.userId, after, limit));
      },
      {
        query: PageQuery,
        detail: documented({
          summary: "The caller's own events after a sequenceId (keyset paging)",
          description:
            "The token user's orders and cancels, deposits to them, transfers from or to them; paged like GET /events.",
          tags: ["events"],
          access: "any-token",
          answers: { 200: { description: "A page of the caller's events.", schema: schemaRef.eventPage } },
          errors: [401, 503],
        }),
      },
    )
    .get(
      "/events/:sequenceId",
      async ({ principal, params }) => {
        requireLogReader(principal);
        const record = await store.find({ sequenceId: idParam("sequenceId", params.sequenceId) });
        if (!record) throw new NotFoundError(`no event ${params.sequenceId}`);
        return json(record.payload);
      },
      {
        params: t.Object({ sequenceId: idString("sequenceId") }),
        detail: documented({
          summary: "One sequenced event; reader or admin token",
          tags: ["events"],
          access: "reader-or-admin",
          answers: {
            200: { description: "The event, as stored and published on TRADING.", schema: schemaRef.event },
          },
          errors: [401, 403, 404, 503],
        }),
      },
    )
    .get(
      "/references/:referenceId",
      async ({ principal, params }) => {
        const referenceId = idParam("referenceId", params.referenceId);
        const record = await store.find({ referenceId });
        if (record) {
          if (mayRead(principal, partiesOfJson(record.payload))) return json(record.payload);
          throw new NotFoundError(`no accepted request ${params.referenceId}`);
        }
        const state = await pending.find(referenceId);
        if (state.state === "pending" && mayRead(principal, state.parties)) return { status: "pending" };
        if (state.state === "unknown") {
          throw new UnavailableError(
            "the sequencer is far behind; cannot tell whether this reference is pending",
            5,
          );
        }
        throw new NotFoundError(`no accepted request ${params.referenceId}`);
      },
      {
        params: t.Object({ referenceId: idString("referenceId") }),
        detail: documented({
          summary:
            "The sequenced event of a referenceId, or {status:'pending'} while it waits to be sequenced",
          description:
            "A user sees only the requests that concern them; anyone else gets the same 404 as for an unknown id, " +
            "also while the request is pending. 503 when the sequencer is so far behind that pending cannot be told.",
          tags: ["events"],
          access: "any-token",
          answers: {
            200: {
              description:
                'The sequenced event, or `{"status":"pending"}` while it waits on the intake stream.',
              schema: { oneOf: [schemaRef.event, schemaRef.pending] },
            },
          },
          errors: [401, 404, 503],
        }),
      },
    );
}
