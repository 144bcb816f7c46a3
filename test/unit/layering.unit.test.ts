/**
 * The layers' import rules, checked on every import specifier (static imports, `export … from`, dynamic
 * `import()`, type-only ones included) of every .ts file under src/domain, src/app and src/client:
 * - src/domain is pure: decimal.js and its own files, nothing else;
 * - src/app (the use cases and their ports, app/ports.ts) depends on the domain and itself only — never on an
 *   adapter, the runtime, or a driver or framework. Adapters import ports from app, never the reverse;
 * - src/client (the TRADING consumer library, `exactly-once-sequencer/trading`) never pulls in the server side.
 */
import { describe, expect, test } from "bun:test";
import { readdirSync, readFileSync } from "node:fs";
import { join, relative, resolve } from "node:path";
import ts from "typescript";

const ROOT = resolve(import.meta.dir, "../..");

type Import = { specifier: string; line: number; typeOnly: boolean };
/** Why an import breaks the layer's rule, or null when it is allowed. `file` is relative to the repository. */
type Rule = (file: string, imported: Import) => string | null;

/** Every module specifier a TypeScript source imports or re-exports, with its line; comments and strings are not. */
function importsOf(file: string, text: string): Import[] {
  const source = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true, ts.ScriptKind.TS);
  const found: Import[] = [];
  const add = (literal: ts.Expression, typeOnly: boolean) => {
    if (!ts.isStringLiteralLike(literal)) return;
    const line = source.getLineAndCharacterOfPosition(literal.getStart(source)).line + 1;
    found.push({ specifier: literal.text, line, typeOnly });
  };
  const visit = (node: ts.Node): void => {
    if (ts.isImportDeclaration(node)) {
      const clause = node.importClause;
      const named = clause?.namedBindings;
      const allTypes =
        clause !== undefined &&
        (clause.isTypeOnly ||
          (clause.name === undefined &&
            named !== undefined &&
            ts.isNamedImports(named) &&
            named.elements.length > 0 &&
            named.elements.every((element) => element.isTypeOnly)));
      add(node.moduleSpecifier, allTypes);
    } else if (ts.isExportDeclaration(node) && node.moduleSpecifier) {
      add(node.moduleSpecifier, node.isTypeOnly);
    } else if (ts.isImportTypeNode(node) && ts.isLiteralTypeNode(node.argument)) {
      add(node.argument.literal as ts.Expression, true);
    } else if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword) {
      const [argument] = node.arguments;
      if (argument) add(argument, false);
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return found;
}

/** The repository-relative path a relative specifier names, or null for a package or built-in. */
function target(file: string, specifier: string): string | null {
  if (!specifier.startsWith(".")) return null;
  return relative(ROOT, resolve(ROOT, file, "..", specifier));
}

function under(path: string | null, folder: string): boolean {
  return path !== null && (path === folder || path.startsWith(`${folder}/`));
}

const domainRule: Rule = (file, { specifier }) => {
  if (specifier === "decimal.js" || under(target(file, specifier), "src/domain")) return null;
  return "src/domain imports only decimal.js and src/domain";
};

const appRule: Rule = (file, { specifier, typeOnly }) => {
  const path = target(file, specifier);
  if (under(path, "src/domain") || under(path, "src/app") || specifier.startsWith("node:")) return null;
  // The Logger interface only: logger.ts itself is built on pino.
  if (path === "src/logger.ts") return typeOnly ? null : "src/app imports src/logger.ts for its types only";
  // jose is a library here, not a driver: app/auth.ts uses it for pure signature and claim checks on the bytes it
  // is handed, and a key set that is fetched over the network (AUTH_JWKS) is built outside app and passed in as a
  // resolver. So it is allowed — in auth.ts only, the one place that verifies tokens.
  if (specifier === "jose" && file === "src/app/auth.ts") return null;
  if (under(path, "src/adapters"))
    return "src/app never imports an adapter (put the port in src/app/ports.ts)";
  if (under(path, "src/runtime")) return "src/app never imports the runtime";
  if (path === null) return "src/app imports no driver or framework package (only node: built-ins)";
  return "src/app imports only src/domain, src/app, node: built-ins and src/logger.ts's types";
};

/** What the client library may not reach for: the server's parts and the server's packages. */
const SERVER_FOLDERS = ["src/adapters/db", "src/adapters/http", "src/runtime"];
const SERVER_FILES = ["src/adapters/metrics.ts", "src/service.ts", "src/cli.ts", "src/logger.ts"];
const SERVER_PACKAGES = [
  "drizzle-orm",
  "postgres",
  "elysia",
  "@elysiajs/",
  "@electric-sql/pglite",
  "pino",
  "prom-client",
  "jose",
];

const clientRule: Rule = (file, { specifier }) => {
  const path = target(file, specifier);
  if (path === null) {
    const server = SERVER_PACKAGES.some((name) =>
      name.endsWith("/")
        ? specifier.startsWith(name)
        : specifier === name || specifier.startsWith(`${name}/`),
    );
    return server ? "src/client imports none of the server's packages" : null;
  }
  if (SERVER_FILES.includes(path) || SERVER_FOLDERS.some((folder) => under(path, folder))) {
    return "src/client imports nothing of the server (database, HTTP, runtime, metrics, logger, service)";
  }
  return null;
};

/** `file:line specifier — why`, for each import of this source that breaks the rule. */
function violations(file: string, text: string, rule: Rule): string[] {
  return importsOf(file, text).flatMap((imported) => {
    const why = rule(file, imported);
    return why === null ? [] : [`${file}:${imported.line} "${imported.specifier}" — ${why}`];
  });
}

function sourcesUnder(folder: string): string[] {
  return (readdirSync(join(ROOT, folder), { recursive: true, encoding: "utf8" }) as string[])
    .filter((name) => name.endsWith(".ts"))
    .map((name) => join(folder, name))
    .sort();
}

function layerViolations(folder: string, rule: Rule): { files: string[]; found: string[] } {
  const files = sourcesUnder(folder);
  const found = files.flatMap((file) => violations(file, readFileSync(join(ROOT, file), "utf8"), rule));
  return { files, found };
}

describe("layering", () => {
  test("src/domain imports only decimal.js and src/domain", () => {
    const { files, found } = layerViolations("src/domain", domainRule);
    expect(files).toContain("src/domain/sequencing.ts");
    expect(found).toEqual([]);
  });

  test("src/app imports no adapter, runtime, driver or framework", () => {
    const { files, found } = layerViolations("src/app", appRule);
    expect(files).toContain("src/app/ports.ts");
    expect(found).toEqual([]);
  });

  test("src/client imports nothing of the server", () => {
    const { files, found } = layerViolations("src/client", clientRule);
    expect(files).toContain("src/client/index.ts");
    expect(found).toEqual([]);
  });

  test("the scanner finds every kind of import, and each rule refuses what it should", () => {
    const app = [
      'import { sequenceBatch } from "../domain/sequencing.ts";',
      'import type { EventStore } from "../adapters/db/event-store.ts";',
      'export { sql } from "drizzle-orm";',
      'const embedded = await import("../runtime/nats-server.ts");',
      'import { createLogger } from "../logger.ts";',
      'import type { Logger } from "../logger.ts";',
      'import { type Sql, postgres } from "postgres";',
      'type Lease = import("../adapters/db/writer-lease.ts").PostgresWriterLease;',
      '// import { nothing } from "../adapters/in-a-comment.ts";',
      'const text = "import { nothing } from \\"elysia\\"";',
      'import { jwtVerify } from "jose";',
      'import { randomUUID } from "node:crypto";',
    ].join("\n");
    expect(violations("src/app/synthetic.ts", app, appRule).map((v) => v.split(" — ")[0])).toEqual([
      'src/app/synthetic.ts:2 "../adapters/db/event-store.ts"',
      'src/app/synthetic.ts:3 "drizzle-orm"',
      'src/app/synthetic.ts:4 "../runtime/nats-server.ts"',
      'src/app/synthetic.ts:5 "../logger.ts"',
      'src/app/synthetic.ts:7 "postgres"',
      'src/app/synthetic.ts:8 "../adapters/db/writer-lease.ts"',
      'src/app/synthetic.ts:11 "jose"',
    ]);
    // jose is allowed in app/auth.ts only.
    expect(violations("src/app/auth.ts", 'import { jwtVerify } from "jose";', appRule)).toEqual([]);

    const domain = [
      'import Decimal from "decimal.js";',
      'import { parsePositiveId } from "./ids.ts";',
      'import pino from "pino";',
      'import { sleep } from "../app/backoff.ts";',
    ].join("\n");
    expect(violations("src/domain/synthetic.ts", domain, domainRule).map((v) => v.split(" — ")[0])).toEqual([
      'src/domain/synthetic.ts:3 "pino"',
      'src/domain/synthetic.ts:4 "../app/backoff.ts"',
    ]);

    const client = [
      'import { jetstream } from "@nats-io/jetstream";',
      'import { openDatabase } from "../adapters/db/client.ts";',
      'import { Elysia } from "elysia";',
    ].join("\n");
    expect(violations("src/client/synthetic.ts", client, clientRule).map((v) => v.split(" — ")[0])).toEqual([
      'src/client/synthetic.ts:2 "../adapters/db/client.ts"',
      'src/client/synthetic.ts:3 "elysia"',
    ]);
  });
});
