/**
 * Replay and lookup of the sequenced log: GET /events (keyset pages), GET /events/:sequenceId, and
 * GET /references/:referenceId (sequenced, pending on the intake stream, or unknown).
 */
import { Elysia, t } from "elysia";
import { NotFoundError, UnavailableError } from "../../app/errors.ts";
import { parsePositiveId } from "../../domain/ids.ts";
import type { EventStore } from "../db/event-store.ts";
import type { IntakeLookup } from "../nats/intake-lookup.ts";
import { HttpError } from "./errors.ts";
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

export function eventsModule(store: Pick<EventStore, "readAfter" | "find">, pending: IntakeLookup) {
  return new Elysia({ name: "events" })
    .get(
      "/events",
      async ({ query }) => {
        const after = query.after === undefined || query.after === "0" ? 0n : idParam("after", query.after);
        const limit = query.limit === undefined ? 100 : Number(query.limit);
        const records = await store.readAfter(after, limit);
        const last = records[records.length - 1];
        const next = last ? `"${last.sequenceId}"` : "null";
        return json(`{"events":[${records.map((r) => r.payload).join(",")}],"next":${next}}`);
      },
      {
        query: t.Object(
          {
            after: t.Optional(
              t.String({ pattern: "^(0|[1-9][0-9]{0,18})$", description: "last sequenceId seen" }),
            ),
            limit: t.Optional(
              t.String({ pattern: "^([1-9][0-9]{0,2}|1000)$", description: `1-${MAX_PAGE}` }),
            ),
          },
          { additionalProperties: false },
        ),
        detail: { summary: "Replay the sequenced log after a sequenceId (keyset paging)", tags: ["events"] },
      },
    )
    .get(
      "/events/:sequenceId",
      async ({ params }) => {
        const record = await store.find({ sequenceId: idParam("sequenceId", params.sequenceId) });
        if (!record) throw new NotFoundError(`no event ${params.sequenceId}`);
        return json(record.payload);
      },
      {
        params: t.Object({ sequenceId: idString("sequenceId") }),
        detail: { summary: "One sequenced event", tags: ["events"] },
      },
    )
    .get(
      "/references/:referenceId",
      async ({ params }) => {
        const referenceId = idParam("referenceId", params.referenceId);
        const record = await store.find({ referenceId });
        if (record) return json(record.payload);
        const state = await pending.find(referenceId);
        if (state === "pending") return { status: "pending" };
        if (state === "unknown") {
          throw new UnavailableError(
            "the sequencer is far behind; cannot tell whether this reference is pending",
            5,
          );
        }
        throw new NotFoundError(`no accepted request ${params.referenceId}`);
      },
      {
        params: t.Object({ referenceId: idString("referenceId") }),
        detail: {
          summary: "The sequenced event of a referenceId, {status:'pending'} while it waits to be sequenced",
          tags: ["events"],
        },
      },
    );
}
