/** freePort: one process never gets the same port twice (callers take several before binding any). */
import { expect, test } from "bun:test";
import { freePort } from "../../src/runtime/loopback.ts";

test("freePort hands out distinct ports within a process, even when none of them is bound yet", async () => {
  const ports: number[] = [];
  for (let i = 0; i < 200; i++) ports.push(await freePort());
  expect(new Set(ports).size).toBe(ports.length);
});
