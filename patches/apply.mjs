#!/usr/bin/env node
/**
 * Applies patches/<package>@<version>.patch to node_modules/<package> (npm's `postinstall`, so `npm ci` and
 * `npm install` apply them; bun install runs it too). Plain Node, no dependency: a unified diff whose hunks must
 * match the installed files exactly. Idempotent: a hunk already applied is skipped. Anything else fails the
 * install loudly: a patch for another version than the one installed, or a hunk that matches neither way.
 *
 *   node patches/apply.mjs            apply every patch
 *   node patches/apply.mjs --check    exit 1 unless every patch is applied (changes nothing)
 */
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const patchesDir = dirname(fileURLToPath(import.meta.url));
const root = dirname(patchesDir);
const checkOnly = process.argv.includes("--check");

/** The files of a unified diff, each with its hunks as the lines before and after (counted from the @@ line). */
function parse(text) {
  const files = [];
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    if (!lines[i].startsWith("--- ") || !lines[i + 1]?.startsWith("+++ ")) continue;
    const file = { path: lines[i + 1].slice(4).split("\t")[0].replace(/^b\//, ""), hunks: [] };
    files.push(file);
    for (i += 2; lines[i]?.startsWith("@@ "); ) {
      const [, beforeCount = "1", afterCount = "1"] =
        /^@@ -\d+(?:,(\d+))? \+\d+(?:,(\d+))? @@/.exec(lines[i]) ?? [];
      const hunk = { before: [], after: [] };
      file.hunks.push(hunk);
      for (i++; hunk.before.length < +beforeCount || hunk.after.length < +afterCount; i++) {
        const line = lines[i];
        if (line === undefined) throw new Error(`patch ends inside a hunk of ${file.path}`);
        if (line.startsWith("\\")) continue; // "\ No newline at end of file"
        if (line[0] !== "+") hunk.before.push(line.slice(1));
        if (line[0] !== "-") hunk.after.push(line.slice(1));
      }
    }
    i--;
  }
  return files;
}

/** Index of `block` in `lines` at or after `from`, or -1. */
function find(lines, block, from = 0) {
  outer: for (let at = from; at + block.length <= lines.length; at++) {
    for (let k = 0; k < block.length; k++) if (lines[at + k] !== block[k]) continue outer;
    return at;
  }
  return -1;
}

let failed = false;
for (const name of readdirSync(patchesDir).filter((n) => n.endsWith(".patch"))) {
  const at = name.lastIndexOf("@");
  const pkg = name.slice(0, at).replace("+", "/");
  const version = name.slice(at + 1, -".patch".length);
  const pkgDir = join(root, "node_modules", pkg);
  let installed;
  try {
    installed = JSON.parse(readFileSync(join(pkgDir, "package.json"), "utf8")).version;
  } catch {
    console.error(`patches: ${name}: ${pkg} is not installed`);
    failed = true;
    continue;
  }
  if (installed !== version) {
    console.error(
      `patches: ${name} is for ${pkg} ${version}, but ${installed} is installed: check whether the new version ` +
        "still needs it, then rebase the patch or delete it",
    );
    failed = true;
    continue;
  }
  let applied = 0;
  let already = 0;
  let mismatched = false;
  const writes = [];
  for (const file of parse(readFileSync(join(patchesDir, name), "utf8"))) {
    const path = join(pkgDir, file.path);
    const lines = readFileSync(path, "utf8").split("\n");
    let from = 0;
    for (const hunk of file.hunks) {
      const done = find(lines, hunk.after, from);
      const todo = find(lines, hunk.before, from);
      if (done !== -1 && (todo === -1 || done <= todo)) {
        already++;
        from = done + hunk.after.length;
      } else if (todo !== -1) {
        applied++;
        lines.splice(todo, hunk.before.length, ...hunk.after);
        from = todo + hunk.after.length;
      } else {
        const first = hunk.after.find((l, k) => l !== hunk.before[k]) ?? hunk.before[0];
        console.error(
          `patches: ${name}: ${file.path}: a hunk matches neither the original nor the patched file (near: ` +
            `${first?.trim()}); an older version of the patch? Reinstall the package (npm ci) and run this again`,
        );
        mismatched = true;
      }
    }
    writes.push([path, lines.join("\n")]);
  }
  // All or nothing: a package is written only when every hunk of its patch matched.
  if (mismatched) failed = true;
  else if (!checkOnly) for (const [path, text] of writes) writeFileSync(path, text);
  if (checkOnly && applied > 0) {
    console.error(`patches: ${name}: ${applied} hunk(s) not applied (run: node patches/apply.mjs)`);
    failed = true;
  } else if (!mismatched && !checkOnly) {
    console.log(`patches: ${pkg}@${version}: ${applied} hunk(s) applied, ${already} already in place`);
  }
}
process.exit(failed ? 1 : 0);
