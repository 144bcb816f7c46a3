/**
 * Hostile-input checks that sit between the wire and the route schemas, each answering a JSON 4xx:
 * - the body is read under a size limit (413, never buffering more than the limit and one chunk) and a
 *   deadline (408: a body trickled in a byte at a time holds a request slot for BODY_TIMEOUT at most);
 * - a body on a route that takes none is refused (400), and so is a query parameter a route does not declare
 *   or one given twice (400): what the service ignores, a client may believe was applied;
 * - JSON nested deeper than MAX_JSON_DEPTH or with a key twice in one object is refused before JSON.parse
 *   (400, see json-scan.ts).
 * Which routes take a body or which query parameters is read from the routes' own schemas, so a new route is
 * covered without being listed here.
 */
import { HttpError } from "./errors.ts";
import { MAX_JSON_DEPTH, scanJson } from "./json-scan.ts";

/** Answers that leave part of a body unread close the connection: it is not in a state to be reused. */
const CLOSE = { connection: "close" };

export function tooLarge(limit: number): HttpError {
  return new HttpError(413, "PAYLOAD_TOO_LARGE", `the body must be at most ${limit} bytes`, undefined, CLOSE);
}

function timedOut(timeoutMs: number): HttpError {
  return new HttpError(
    408,
    "REQUEST_TIMEOUT",
    `the body did not arrive within ${timeoutMs / 1000} s`,
    undefined,
    CLOSE,
  );
}

/** The body's bytes, at most `limit` of them, within `timeoutMs`; 413 or 408 otherwise. */
export async function readBody(
  request: Request,
  limit: number,
  timeoutMs: number,
): Promise<Uint8Array | ArrayBuffer> {
  const body = request.body;
  if (!body) return new Uint8Array(0);
  let timer: ReturnType<typeof setTimeout> | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(timedOut(timeoutMs)), timeoutMs);
  });
  try {
    // A declared length was checked against the limit before (guardBody): read it whole.
    if (request.headers.has("content-length")) {
      const bytes = await Promise.race([request.arrayBuffer(), deadline]);
      if (bytes.byteLength > limit) throw tooLarge(limit);
      return bytes;
    }
    // Chunked (no length): count as it comes, and stop reading at the first byte over the limit.
    const reader = body.getReader();
    const chunks: Uint8Array[] = [];
    let total = 0;
    try {
      for (;;) {
        const { done, value } = await Promise.race([reader.read(), deadline]);
        if (done) break;
        total += value.byteLength;
        if (total > limit) throw tooLarge(limit);
        chunks.push(value);
      }
    } catch (error) {
      reader.cancel().catch(() => {});
      throw error;
    }
    if (chunks.length === 1) return chunks[0] as Uint8Array;
    const all = new Uint8Array(total);
    let offset = 0;
    for (const chunk of chunks) {
      all.set(chunk, offset);
      offset += chunk.byteLength;
    }
    return all;
  } finally {
    clearTimeout(timer);
  }
}

/** JSON text → value, refusing deep nesting and duplicate keys first (400 naming the key). */
export function parseJsonText(text: string): unknown {
  const scan = scanJson(text, MAX_JSON_DEPTH);
  if (!scan.ok) {
    if (scan.problem === "depth") {
      throw new HttpError(
        400,
        "INVALID_JSON",
        `the request body is nested deeper than ${MAX_JSON_DEPTH} levels`,
      );
    }
    const where = scan.at ? `${scan.at}.${scan.key}` : scan.key;
    throw new HttpError(
      400,
      "INVALID_JSON",
      `the request body has the key ${JSON.stringify(scan.key)} more than once${scan.at ? ` (in ${scan.at})` : ""}`,
      where,
    );
  }
  try {
    return JSON.parse(text);
  } catch {
    throw new HttpError(400, "INVALID_JSON", "the request body is not valid JSON");
  }
}

/** What a route accepts besides its path: its query parameters (none when it declares no query) and a body. */
export type RouteShape = { query: ReadonlySet<string>; body: boolean };

type RouteLike = { method: string; path: string; hooks?: { query?: unknown; body?: unknown } };

export function routeShapes(routes: readonly RouteLike[]): Map<string, RouteShape> {
  const shapes = new Map<string, RouteShape>();
  for (const route of routes) {
    const query = route.hooks?.query as { properties?: Record<string, unknown> } | undefined;
    shapes.set(`${route.method} ${route.path}`, {
      query: new Set(Object.keys(query?.properties ?? {})),
      body: route.hooks?.body !== undefined && route.hooks.body !== null,
    });
  }
  return shapes;
}

/** 400 for a query parameter the route does not declare, or one given twice. */
export function checkQuery(url: string, shape: RouteShape): void {
  const start = url.indexOf("?");
  if (start === -1) return;
  const end = url.indexOf("#", start);
  const raw = url.slice(start + 1, end === -1 ? undefined : end);
  if (raw === "") return;
  const seen: string[] = [];
  for (const part of raw.split("&")) {
    if (part === "") continue;
    const eq = part.indexOf("=");
    let name: string;
    try {
      name = decodeURIComponent((eq === -1 ? part : part.slice(0, eq)).replaceAll("+", " "));
    } catch {
      throw new HttpError(400, "INVALID_INPUT", "the query string is not valid percent-encoding");
    }
    if (!shape.query.has(name)) {
      throw new HttpError(
        400,
        "INVALID_INPUT",
        shape.query.size === 0
          ? `this route takes no query parameters (got ${JSON.stringify(name)})`
          : `unknown query parameter ${JSON.stringify(name)}`,
        name,
      );
    }
    if (seen.includes(name)) {
      throw new HttpError(
        400,
        "INVALID_INPUT",
        `query parameter ${JSON.stringify(name)} given more than once`,
        name,
      );
    }
    seen.push(name);
  }
}

export function noBodyAllowed(): HttpError {
  return new HttpError(400, "INVALID_INPUT", "this route takes no request body");
}
