import { describe, expect, test } from "bun:test";
import { Lifecycle } from "../../src/composition/lifecycle.ts";
import type { Logger } from "../../src/logger.ts";

function recordingLogger(): Logger & { warnings: string[] } {
  const warnings: string[] = [];
  const log: Logger & { warnings: string[] } = {
    warnings,
    info: () => {},
    warn: (msg) => warnings.push(msg),
    error: () => {},
    child: () => log,
  };
  return log;
}

describe("Lifecycle", () => {
  test("stops in reverse order of registration, once however often stop() is called", async () => {
    const log = recordingLogger();
    const lifecycle = new Lifecycle(log);
    const stopped: string[] = [];
    for (const name of ["broker", "database", "sequencer", "listener"]) {
      lifecycle.onStop(name, async () => {
        stopped.push(name);
      });
    }
    await Promise.all([lifecycle.stop(), lifecycle.stop()]);
    await lifecycle.stop();
    expect(stopped).toEqual(["listener", "sequencer", "database", "broker"]);
    expect(log.warnings).toEqual([]);
  });

  test("a stop that throws or hangs is logged and the ones before it still run", async () => {
    const log = recordingLogger();
    const lifecycle = new Lifecycle(log);
    const stopped: string[] = [];
    lifecycle.onStop("database", async () => {
      stopped.push("database");
    });
    lifecycle.onStop("hung", () => new Promise(() => {}), 50);
    lifecycle.onStop("broken", () => {
      throw new Error("boom");
    });
    const started = performance.now();
    await lifecycle.stop();
    expect(stopped).toEqual(["database"]);
    expect(performance.now() - started).toBeLessThan(2_000);
    expect(log.warnings).toEqual(["stopping broken failed", "stopping hung took too long; going on"]);
  });
});
