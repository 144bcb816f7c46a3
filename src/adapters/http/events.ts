/** GET /events: replay of the sequenced log in order, by keyset (after = last sequenceId seen). */
import { Elysia, t } from "elysia";
import type { EventStore } from "../db/event-store.ts";
import { HttpError } from "./errors.ts";

export const MAX_PAGE = 1000;
const MAX_SEQUENCE_ID = (1n << 63n) - 1n;

export function eventsModule(store: Pick<EventStore, "readAfter">) {
  return new Elysia({ name: "events" }).get(
    "/events",
    async ({ query }) => {
      const after = BigInt(query.after ?? "0");
      if (after > MAX_SEQUENCE_ID)
        throw new HttpError(400, "INVALID_INPUT", "after must fit a signed 64-bit integer", "after");
      const limit = query.limit === undefined ? 100 : Number(query.limit);
      const records = await store.readAfter(after, limit);
      // The stored payloads are already the JSON of each event: splice them instead of parsing and re-encoding.
      const last = records[records.length - 1];
      const next = last ? `"${last.sequenceId}"` : "null";
      const body = `{"events":[${records.map((r) => r.payload).join(",")}],"next":${next}}`;
      return new Response(body, { headers: { "content-type": "application/json" } });
    },
    {
      query: t.Object(
        {
          after: t.Optional(
            t.String({ pattern: "^(0|[1-9][0-9]{0,18})$", description: "last sequenceId seen" }),
          ),
          limit: t.Optional(t.String({ pattern: "^([1-9][0-9]{0,2}|1000)$", description: `1-${MAX_PAGE}` })),
        },
        { additionalProperties: false },
      ),
    },
  );
}
