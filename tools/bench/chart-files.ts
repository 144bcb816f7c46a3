/**
 * Writes a bench result's SVG charts (charts.ts) next to its JSON: at the end of every `npm run bench`, and on
 * demand from a saved result, without re-running anything:
 *
 *   bun tools/bench/chart-files.ts <results.json> [<out dir>]     (out dir: the JSON's own directory)
 *
 * Local files only, written by whoever runs the bench with their own permissions; it reads nothing but the JSON
 * named, and refuses one that is not a bench result (exit 1) rather than draw a misleading chart.
 */
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { ChartInputError, chartSource, renderCharts } from "./charts.ts";

/** Renders the charts of `result` (the bench's JSON object) into `dir`; returns the paths written. */
export function writeCharts(result: unknown, dir: string): string[] {
  const charts = renderCharts(chartSource(result));
  mkdirSync(dir, { recursive: true });
  return Object.entries(charts).map(([name, svg]) => {
    const path = join(dir, name);
    writeFileSync(path, svg);
    return path;
  });
}

export const CHART_FILES_USAGE = "usage: bun tools/bench/chart-files.ts <results.json> [<out dir>]";

/** The command line: exit 0 with the paths, 64 on bad usage, 1 when the file cannot be read or is not a result. */
export function chartFilesMain(argv: string[]): number {
  const [input, outDir, ...rest] = argv;
  if (!input || rest.length > 0 || input.startsWith("-")) {
    process.stderr.write(`${CHART_FILES_USAGE}\n`);
    return 64;
  }
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(input, "utf8"));
  } catch (error) {
    process.stderr.write(`${input}: cannot read a JSON result (${(error as Error).message})\n`);
    return 1;
  }
  try {
    for (const path of writeCharts(json, resolve(outDir ?? dirname(input))))
      process.stdout.write(`${path}\n`);
    return 0;
  } catch (error) {
    if (!(error instanceof ChartInputError)) throw error;
    process.stderr.write(`${input}: ${error.message}\n`);
    return 1;
  }
}

if (import.meta.main) process.exit(chartFilesMain(process.argv.slice(2)));
