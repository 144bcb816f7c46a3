/**
 * One pass over a JSON text, before JSON.parse, for the two things JSON.parse does not refuse: nesting deeper
 * than a small limit (a deep body makes every recursive walk after it — validation, our own checks — overflow the
 * stack), and an object with the same key twice (JSON.parse keeps the last one silently, so `{"price":"-5",
 * "price":"1"}` would be read differently by different parsers). Iterative (no recursion, whatever the input),
 * allocation-free for objects with few keys, and it does not validate: a text that is not JSON is left for
 * JSON.parse to refuse, so the answer here only matters for texts that are JSON.
 */

export const MAX_JSON_DEPTH = 32;

export type JsonScan =
  | { ok: true }
  | { ok: false; problem: "depth"; depth: number }
  | {
      ok: false;
      problem: "duplicate";
      key: string /** Dotted path of the object holding it ("" = the body). */;
      at: string;
    };

const QUOTE = 34; // "
const BACKSLASH = 92; // \
const OPEN_OBJECT = 123; // {
const CLOSE_OBJECT = 125; // }
const OPEN_ARRAY = 91; // [
const CLOSE_ARRAY = 93; // ]
const COMMA = 44; // ,
const COLON = 58; // :

/** Keys seen in one open object: a short array (the common case), a Set once it grows. */
type Frame = { object: boolean; keys: string[] | Set<string>; name: string; expectKey: boolean };

function decodeKey(text: string, start: number, end: number): string | null {
  const raw = text.slice(start + 1, end);
  if (!raw.includes("\\")) return raw;
  try {
    return JSON.parse(text.slice(start, end + 1)) as string;
  } catch {
    return null; // not a valid string literal: JSON.parse will refuse the whole text
  }
}

function remember(frame: Frame, key: string): boolean {
  const keys = frame.keys;
  if (Array.isArray(keys)) {
    for (let i = 0; i < keys.length; i++) if (keys[i] === key) return false;
    keys.push(key);
    if (keys.length > 16) frame.keys = new Set(keys);
    return true;
  }
  if (keys.has(key)) return false;
  keys.add(key);
  return true;
}

export function scanJson(text: string, maxDepth: number = MAX_JSON_DEPTH): JsonScan {
  const stack: Frame[] = [];
  let lastKey = "";
  const length = text.length;
  for (let i = 0; i < length; i++) {
    const c = text.charCodeAt(i);
    if (c === QUOTE) {
      // The string's end: the next quote not escaped by an odd run of backslashes (indexOf: native speed).
      const start = i;
      let end = text.indexOf('"', start + 1);
      while (end !== -1) {
        let slashes = 0;
        while (text.charCodeAt(end - 1 - slashes) === BACKSLASH) slashes++;
        if (slashes % 2 === 0) break;
        end = text.indexOf('"', end + 1);
      }
      i = end === -1 ? length : end;
      const top = stack[stack.length - 1];
      if (top?.object && top.expectKey) {
        const key = decodeKey(text, start, i);
        if (key === null) return { ok: true };
        if (!remember(top, key)) {
          return { ok: false, problem: "duplicate", key, at: pathOf(stack) };
        }
        lastKey = key;
        top.expectKey = false;
      }
    } else if (c === OPEN_OBJECT || c === OPEN_ARRAY) {
      if (stack.length >= maxDepth) return { ok: false, problem: "depth", depth: stack.length + 1 };
      const parent = stack[stack.length - 1];
      stack.push({
        object: c === OPEN_OBJECT,
        keys: [],
        name: parent?.object ? lastKey : "[]",
        expectKey: c === OPEN_OBJECT,
      });
    } else if (c === CLOSE_OBJECT || c === CLOSE_ARRAY) {
      stack.pop();
    } else if (c === COMMA) {
      const top = stack[stack.length - 1];
      if (top?.object) top.expectKey = true;
    } else if (c === COLON) {
      const top = stack[stack.length - 1];
      if (top) top.expectKey = false;
    }
  }
  return { ok: true };
}

/** "a.b" for a duplicate inside {"a":{"b":{…}}}; "" at the top level. */
function pathOf(stack: Frame[]): string {
  if (stack.length <= 1) return "";
  return stack
    .slice(1)
    .map((frame) => frame.name)
    .join(".");
}
