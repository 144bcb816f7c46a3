/**
 * src/ holds what ships: no file under it imports from the tooling beside it (tools/: the bench and the local
 * services the tests start; scripts/; test/), so the service can be run and reviewed without them.
 */
import { expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";

const ROOT = join(import.meta.dir, "../..");
const NOT_SHIPPED = ["tools", "scripts", "test"];

/** Every module specifier in `source`: static and type imports, re-exports, side-effect and dynamic imports. */
function specifiers(source: string): string[] {
  return [...source.matchAll(/\b(?:from|import)\s*\(?\s*["']([^"']+)["']/g)].map((match) => match[1] ?? "");
}

/** The repo-relative path of each relative import in src/<file>. */
function importsOf(file: string): string[] {
  const path = join(ROOT, "src", file);
  return specifiers(readFileSync(path, "utf8"))
    .filter((spec) => spec.startsWith("."))
    .map((spec) => relative(ROOT, resolve(dirname(path), spec)));
}

const files = [...new Bun.Glob("**/*.{ts,tsx,js,mjs}").scanSync(join(ROOT, "src"))];

test("the scan sees src's imports (static, re-exported and dynamic)", () => {
  expect(files.length).toBeGreaterThan(20);
  const cli = importsOf("cli.ts");
  expect(cli).toContain("src/service.ts");
  expect(cli).toContain("src/inspect.ts"); // import("./inspect.ts")
  expect(specifiers('export { a } from "./a.ts";\nimport type { B } from "../b.ts";')).toEqual([
    "./a.ts",
    "../b.ts",
  ]);
});

test("no file under src/ imports from tools/, scripts/ or test/", () => {
  const offending = files.flatMap((file) =>
    importsOf(file)
      .filter((target) => NOT_SHIPPED.some((dir) => target === dir || target.startsWith(`${dir}/`)))
      .map((target) => `src/${file} → ${target}`),
  );
  expect(offending).toEqual([]);
});
