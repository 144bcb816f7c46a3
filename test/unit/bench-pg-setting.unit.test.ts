/**
 * `npm run bench -- --pg-setting NAME=VALUE` (tools/bench/options.ts): extra postgresql.conf lines for the bench's
 * own throwaway cluster (tools/services/local-services.ts `confLine`). A value is quoted and cannot start a line of
 * its own, and the durability settings are refused by name: `--pg-fast` is the one way to turn durability off, so
 * the report's "durable defaults" stays true.
 */
import { expect, test } from "bun:test";
import { BenchUsageError, parseBenchOptions } from "../../tools/bench/options.ts";
import { confLine } from "../../tools/services/local-services.ts";

test("--pg-setting collects NAME=VALUE pairs; the last of a name wins; none by default", () => {
  expect(parseBenchOptions([]).pgSettings).toEqual({});
  const opts = parseBenchOptions([
    "--pg-setting",
    "shared_buffers=512MB",
    "--pg-setting",
    "work_mem=8MB",
    "--pg-setting",
    "shared_buffers=1GB",
  ]);
  expect(opts.pgSettings).toEqual({ shared_buffers: "1GB", work_mem: "8MB" });
});

test("--pg-setting refuses the durability settings, whatever their case: --pg-fast is the one way", () => {
  for (const name of ["fsync", "synchronous_commit", "full_page_writes", "wal_sync_method", "FSYNC"]) {
    expect(() => parseBenchOptions(["--pg-setting", `${name}=off`])).toThrow(/--pg-fast/);
  }
});

test("--pg-setting without NAME= is a usage error", () => {
  expect(() => parseBenchOptions(["--pg-setting", "shared_buffers"])).toThrow(BenchUsageError);
  expect(() => parseBenchOptions(["--pg-setting", "=1GB"])).toThrow(BenchUsageError);
});

test("a conf line quotes its value, doubling quotes and backslashes", () => {
  expect(confLine("shared_buffers", "1GB")).toBe("shared_buffers = '1GB'");
  expect(confLine("log_line_prefix", "it's \\t")).toBe("log_line_prefix = 'it''s \\\\t'");
  expect(confLine("auto_explain.log_min_duration", "20ms")).toBe("auto_explain.log_min_duration = '20ms'");
});

test("a conf line refuses a name that is not a setting's and a value that would add a line", () => {
  for (const name of ["", "Shared_Buffers", "fsync = off\nx", "a b", "1x", "x;y"]) {
    expect(() => confLine(name, "1")).toThrow(/not a PostgreSQL setting name/);
  }
  for (const value of ["1GB\nfsync = off", "1GB\rfsync = off", "1\u0000"]) {
    expect(() => confLine("shared_buffers", value)).toThrow(/spans lines/);
  }
});
