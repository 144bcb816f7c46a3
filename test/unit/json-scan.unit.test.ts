/**
 * The one-pass JSON scanner (src/adapters/http/json-scan.ts) that runs before JSON.parse on every body: nesting
 * depth and duplicate keys, checked against what the JSON texts are built from.
 */
import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { checkQuery, routeShapes } from "../../src/adapters/http/input.ts";
import { type JsonScan, MAX_JSON_DEPTH, scanJson } from "../../src/adapters/http/json-scan.ts";

/** Nesting depth of a parsed value: 0 for a scalar, 1 for [] or {}. */
function depthOf(value: unknown): number {
  if (typeof value !== "object" || value === null) return 0;
  const children = Array.isArray(value) ? value : Object.values(value);
  return 1 + children.reduce<number>((max, child) => Math.max(max, depthOf(child)), 0);
}

/** Text of an object from its entries, in order, duplicates kept (JSON.stringify cannot write those). */
function objectText(entries: [string, string][]): string {
  return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${v}`).join(",")}}`;
}

function firstRepeat(keys: string[]): string | undefined {
  const seen = new Set<string>();
  for (const key of keys) {
    if (seen.has(key)) return key;
    seen.add(key);
  }
  return undefined;
}

const keyArb = fc.oneof(
  fc.constantFrom("price", "quantity", "direction", "__proto__", "a", "", '"', "\\", "{", "}", "[", ":", ","),
  fc.string({ maxLength: 6 }),
  fc.string({ unit: "grapheme", maxLength: 4 }),
);

describe("scanJson", () => {
  test("every JSON.stringify output within the depth limit passes, whatever its strings hold", () => {
    fc.assert(
      fc.property(fc.jsonValue({ maxDepth: 6 }), (value) => {
        expect(scanJson(JSON.stringify(value))).toEqual({ ok: true });
        expect(scanJson(JSON.stringify(value, null, 2))).toEqual({ ok: true });
      }),
      { numRuns: 2_000 },
    );
  });

  test("depth: refused exactly when the nesting exceeds the limit", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 80 }),
        fc.constantFrom("[", '{"k":'),
        fc.integer({ min: 1, max: 40 }),
        (n, open, limit) => {
          const close = open === "[" ? "]" : "}";
          const text = `${open.repeat(n)}1${close.repeat(n)}`;
          const expected: JsonScan =
            n > limit ? { ok: false, problem: "depth", depth: limit + 1 } : { ok: true };
          expect(scanJson(text, limit)).toEqual(expected);
          if (n <= limit) expect(depthOf(JSON.parse(text))).toBe(n);
        },
      ),
    );
  });

  test("6 000 and 1 000 000 levels of [ are refused without recursion", () => {
    expect(scanJson("[".repeat(6_000))).toMatchObject({ ok: false, problem: "depth" });
    expect(scanJson(`${"[".repeat(1_000_000)}${"]".repeat(1_000_000)}`)).toMatchObject({
      ok: false,
      problem: "depth",
      depth: MAX_JSON_DEPTH + 1,
    });
  });

  test("duplicate keys: found iff a key repeats in one object, naming the first repeated key", () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(keyArb, fc.jsonValue({ maxDepth: 2 })), { maxLength: 30 }), (pairs) => {
        const text = objectText(pairs.map(([k, v]) => [k, JSON.stringify(v)]));
        const repeat = firstRepeat(pairs.map(([k]) => k));
        const result = scanJson(text);
        if (repeat === undefined) expect(result).toEqual({ ok: true });
        else expect(result).toEqual({ ok: false, problem: "duplicate", key: repeat, at: "" });
      }),
      { numRuns: 2_000 },
    );
  });

  test("the same key in different objects is fine; inside a nested object the path is named", () => {
    expect(scanJson('{"a":{"k":1},"b":{"k":2},"c":[{"k":1},{"k":2}]}')).toEqual({ ok: true });
    expect(scanJson('{"a":{"b":{"k":1,"k":2}}}')).toEqual({
      ok: false,
      problem: "duplicate",
      key: "k",
      at: "a.b",
    });
  });

  test("escaped spellings of one key are the same key; escapes inside strings do not end them", () => {
    expect(scanJson('{"price":"1","\\u0070rice":"2"}')).toMatchObject({ problem: "duplicate", key: "price" });
    expect(scanJson('{"a\\"b":1,"a\\"b":2}')).toMatchObject({ problem: "duplicate", key: 'a"b' });
    expect(scanJson('{"x":"\\"{[","y":"\\\\"}')).toEqual({ ok: true });
    expect(scanJson('{"k":"k","v":{"k":"k"}}')).toEqual({ ok: true });
  });

  test("values that look like keys are not keys", () => {
    expect(scanJson('{"a":"b","c":"b"}')).toEqual({ ok: true });
    expect(scanJson('["a","a",{"a":"a"}]')).toEqual({ ok: true });
  });

  test("never throws, on any text", () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 200 }), (text) => {
        scanJson(text);
      }),
      { numRuns: 5_000 },
    );
    fc.assert(
      fc.property(
        fc.array(fc.constantFrom("{", "}", "[", "]", '"', "\\", ":", ",", "a", "1", " ", '"a"'), {
          maxLength: 100,
        }),
        (parts) => {
          scanJson(parts.join(""));
        },
      ),
      { numRuns: 5_000 },
    );
  });
});

describe("checkQuery", () => {
  const events = { query: new Set(["after", "limit"]), body: false };
  const none = { query: new Set<string>(), body: true };

  test("declared parameters once each pass; an empty query passes", () => {
    for (const url of [
      "http://h/events",
      "http://h/events?",
      "http://h/events?after=1&limit=2",
      "http://h/events?limit=",
    ]) {
      expect(() => checkQuery(url, events)).not.toThrow();
    }
    expect(() => checkQuery("http://h/orders", none)).not.toThrow();
  });

  test("a repeated, unknown or undecodable parameter → 400 naming it", () => {
    const cases: [string, typeof events, string | undefined][] = [
      ["http://h/events?after=1&after=2", events, "after"],
      ["http://h/events?after=1&aft%65r=2", events, "after"],
      ["http://h/events?befor=1", events, "befor"],
      ["http://h/events?after[]=1", events, "after[]"],
      ["http://h/orders?x", none, "x"],
      ["http://h/events?%zz=1", events, undefined],
    ];
    for (const [url, shape, field] of cases) {
      let caught: unknown;
      try {
        checkQuery(url, shape);
      } catch (error) {
        caught = error;
      }
      expect(caught).toMatchObject({ status: 400, code: "INVALID_INPUT", field });
    }
  });

  test("routeShapes reads the routes' query and body schemas", () => {
    const shapes = routeShapes([
      { method: "GET", path: "/events", hooks: { query: { properties: { after: {}, limit: {} } } } },
      { method: "POST", path: "/orders", hooks: { body: {} } },
      { method: "POST", path: "/orders/:orderId/cancel", hooks: {} },
    ]);
    expect(shapes.get("GET /events")).toEqual({ query: new Set(["after", "limit"]), body: false });
    expect(shapes.get("POST /orders")).toEqual({ query: new Set(), body: true });
    expect(shapes.get("POST /orders/:orderId/cancel")).toEqual({ query: new Set(), body: false });
  });
});
