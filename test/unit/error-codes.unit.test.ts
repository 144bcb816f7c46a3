/**
 * The contract's error schema (ERROR_CODES, rendered by openapi-responses.ts) against the code: every
 * (status, code) pair the HTTP adapter answers with is listed, and every listed pair is answered somewhere.
 * The pairs are read from the adapter's source, where each refusal is written as `errorResponse(status, "CODE"`
 * or `new HttpError(status, "CODE"`.
 */
import { describe, expect, test } from "bun:test";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { ERROR_CODES } from "../../src/adapters/http/errors.ts";

const HTTP_DIR = join(import.meta.dir, "../../src/adapters/http");
const ANSWER = /(?:errorResponse|new HttpError)\(\s*(\d{3}),\s*"([A-Z_]+)"/g;

function answered(): Set<string> {
  const pairs = new Set<string>();
  for (const file of readdirSync(HTTP_DIR).filter((name) => name.endsWith(".ts"))) {
    for (const match of readFileSync(join(HTTP_DIR, file), "utf8").matchAll(ANSWER)) {
      pairs.add(`${match[1]} ${match[2]}`);
    }
  }
  return pairs;
}

describe("ERROR_CODES", () => {
  test("lists exactly the (status, code) pairs the HTTP adapter answers with", () => {
    const listed = Object.entries(ERROR_CODES).flatMap(([status, codes]) =>
      codes.map((code) => `${status} ${code}`),
    );
    const found = answered();
    // The scan itself must see the adapter's refusals, or the comparison below proves nothing.
    expect(found.size).toBeGreaterThan(10);
    expect([...found].sort()).toEqual([...listed].sort());
  });
});
