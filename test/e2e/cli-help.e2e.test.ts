/**
 * `sequencer --help` and `sequencer <verb> --help` are answers (stdout, exit 0); a missing or unknown command is a
 * usage error (stderr, exit 64). Through the real CLI.
 */
import { describe, expect, test } from "bun:test";
import { runCli } from "../support/cli.ts";

const env = { PATH: process.env.PATH ?? "" };
const VERBS = ["serve", "migrate", "provision", "token", "replay", "inspect"];

describe("sequencer --help", () => {
  test("--help, -h and help print every verb on stdout and exit 0", async () => {
    for (const flag of ["--help", "-h", "help"]) {
      const { out, err, code } = await runCli(env, flag);
      expect({ code, err }).toEqual({ code: 0, err: "" });
      for (const verb of VERBS) expect(out).toContain(`sequencer ${verb}`);
    }
  });

  test.each(VERBS)("%s --help prints that verb's usage and exits 0, touching nothing", async (verb) => {
    const { out, err, code } = await runCli(env, verb, "--help");
    expect({ code, err }).toEqual({ code: 0, err: "" });
    expect(out.trimStart().startsWith(`sequencer ${verb}`)).toBe(true);
    for (const other of VERBS.filter((v) => v !== verb)) expect(out).not.toContain(`sequencer ${other} `);
  });

  test("no command, or an unknown one (with or without --help): usage on stderr, exit 64", async () => {
    for (const args of [[], ["nope"], ["nope", "--help"]]) {
      const { out, err, code } = await runCli(env, ...args);
      expect(code).toBe(64);
      expect(out).toBe("");
      expect(err).toContain("usage:");
    }
  });
});
