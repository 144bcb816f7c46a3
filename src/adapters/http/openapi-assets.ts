/**
 * The script of the /openapi page, served by the service itself from the pinned @scalar/api-reference package
 * (its self-contained browser bundle), so the page needs no CDN: it works offline and runs only code that came
 * with this build. Read once, on first request, and kept in memory.
 */
import { readFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { Elysia } from "elysia";

export const OPENAPI_ASSET_PATH = "/openapi/assets/scalar-standalone.js";

function bundlePath(): string {
  // The package's exports map hides dist/browser; its main entry is dist/index.js, beside dist/browser.
  const main = createRequire(import.meta.url).resolve("@scalar/api-reference");
  return join(dirname(main), "browser", "standalone.js");
}

let bundle: Promise<Uint8Array> | undefined;

export function openapiAssets() {
  return new Elysia({ name: "openapi-assets" }).get(
    OPENAPI_ASSET_PATH,
    async () => {
      bundle ??= readFile(bundlePath()).then((bytes) => new Uint8Array(bytes));
      return new Response(await bundle, {
        headers: {
          "content-type": "text/javascript; charset=utf-8",
          "cache-control": "public, max-age=86400",
        },
      });
    },
    { detail: { hide: true } },
  );
}
