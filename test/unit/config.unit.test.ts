import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { type Config, ConfigError, loadConfig, parseDuration } from "../../src/config.ts";

const SECRET = "x".repeat(32);

function configError(env: Record<string, string | undefined>): ConfigError {
  try {
    loadConfig(env);
  } catch (error) {
    if (error instanceof ConfigError) return error;
    throw new Error(`expected a ConfigError, got ${String(error)}`);
  }
  throw new Error(`expected loadConfig(${JSON.stringify(env)}) to throw`);
}

describe("loadConfig defaults", () => {
  test("an empty environment gives the documented defaults", () => {
    const expected: Config = {
      port: 3000,
      host: "127.0.0.1",
      natsUrl: undefined,
      databaseUrl: undefined,
      dataDir: "./data",
      authSecret: undefined,
      workerId: undefined,
      duplicateWindowMs: 120_000,
      idempotencyWindowMs: 86_400_000,
      streamReplicas: 1,
      publishTimeoutMs: 5_000,
      batchSize: 1000,
      maxBatchSize: 1000,
      fetchWaitMs: 1_000,
      ackWaitMs: 30_000,
      maxAckPending: 4_000,
      bodyLimitBytes: 16_384,
      logLevel: "info",
      failpoint: undefined,
      failpointAfter: 1,
    };
    expect(loadConfig({})).toEqual(expected);
  });

  test("empty strings fall back to the defaults", () => {
    const config = loadConfig({
      PORT: "",
      HOST: "",
      DATA_DIR: "",
      WORKER_ID: "",
      DUPLICATE_WINDOW: "",
      NATS_URL: "",
      DATABASE_URL: "",
      AUTH_SECRET: "",
      LOG_LEVEL: "",
    });
    expect(config).toEqual(loadConfig({}));
  });

  test("does not read unrelated variables", () => {
    expect(loadConfig({ PATH: "/bin", FOO: "bar" })).toEqual(loadConfig({}));
  });
});

describe("loadConfig valid values", () => {
  test("the backlog batch size defaults to the batch size", () => {
    expect(loadConfig({ SEQUENCER_BATCH_SIZE: "4000" }).maxBatchSize).toBe(4000);
    expect(loadConfig({ SEQUENCER_BATCH_SIZE: "10", SEQUENCER_MAX_BATCH_SIZE: "2500" }).maxBatchSize).toBe(
      2_500,
    );
    expect(loadConfig({ SEQUENCER_BATCH_SIZE: "10", SEQUENCER_MAX_BATCH_SIZE: "10" }).maxBatchSize).toBe(10);
  });

  test("reads every variable", () => {
    const config = loadConfig({
      PORT: "8080",
      HOST: "0.0.0.0",
      NATS_URL: "nats://nats.example:4222",
      DATABASE_URL: "postgres://u:p@db:5432/seq",
      DATA_DIR: "/var/lib/seq",
      AUTH_SECRET: SECRET,
      WORKER_ID: "1023",
      DUPLICATE_WINDOW: "5m",
      PUBLISH_TIMEOUT: "250ms",
      SEQUENCER_BATCH_SIZE: "5000",
      SEQUENCER_MAX_BATCH_SIZE: "8000",
      SEQUENCER_FETCH_WAIT: "10ms",
      SEQUENCER_ACK_WAIT: "1h",
      SEQUENCER_MAX_ACK_PENDING: "1",
      BODY_LIMIT_BYTES: "256",
      LOG_LEVEL: "silent",
    });
    expect(config).toEqual({
      port: 8080,
      host: "0.0.0.0",
      natsUrl: "nats://nats.example:4222",
      databaseUrl: "postgres://u:p@db:5432/seq",
      dataDir: "/var/lib/seq",
      authSecret: SECRET,
      workerId: 1023,
      duplicateWindowMs: 300_000,
      idempotencyWindowMs: 86_400_000,
      streamReplicas: 1,
      publishTimeoutMs: 250,
      batchSize: 5000,
      maxBatchSize: 8000,
      fetchWaitMs: 10,
      ackWaitMs: 3_600_000,
      maxAckPending: 1,
      bodyLimitBytes: 256,
      logLevel: "silent",
      failpoint: undefined,
      failpointAfter: 1,
    });
  });

  test.each([
    ["tls://nats.example:4222", "NATS_URL"],
    ["postgresql://db/seq", "DATABASE_URL"],
  ])("accepts %p for %p", (value, name) => {
    const config = loadConfig({ [name]: value });
    expect(name === "NATS_URL" ? config.natsUrl : config.databaseUrl).toBe(value);
  });

  test.each(["info", "warn", "error", "silent"] as const)("accepts LOG_LEVEL=%p", (level) => {
    expect(loadConfig({ LOG_LEVEL: level }).logLevel).toBe(level);
  });

  test("port and worker id bounds are inclusive", () => {
    expect(loadConfig({ PORT: "0" }).port).toBe(0);
    expect(loadConfig({ PORT: "65535" }).port).toBe(65535);
    expect(loadConfig({ WORKER_ID: "0" }).workerId).toBe(0);
    expect(loadConfig({ WORKER_ID: "1023" }).workerId).toBe(1023);
  });

  test("duplicate window bounds: 1s to 7 days", () => {
    expect(loadConfig({ DUPLICATE_WINDOW: "1s" }).duplicateWindowMs).toBe(1_000);
    expect(loadConfig({ DUPLICATE_WINDOW: "168h" }).duplicateWindowMs).toBe(7 * 24 * 3_600_000);
    expect(configError({ DUPLICATE_WINDOW: "999ms" }).message).toContain("DUPLICATE_WINDOW");
    expect(configError({ DUPLICATE_WINDOW: "169h" }).message).toContain("DUPLICATE_WINDOW");
  });

  test("AUTH_SECRET of exactly 32 characters is accepted", () => {
    expect(loadConfig({ AUTH_SECRET: SECRET }).authSecret).toBe(SECRET);
  });
});

describe("loadConfig rejects bad values with a ConfigError naming the variable", () => {
  test.each([
    ["PORT", "abc"],
    ["PORT", "70000"],
    ["PORT", "65536"],
    ["PORT", "-1"],
    ["PORT", "80.5"],
    ["PORT", " 80"],
    ["PORT", "1e3"],
    ["WORKER_ID", "1024"],
    ["WORKER_ID", "-1"],
    ["WORKER_ID", "one"],
    ["DUPLICATE_WINDOW", "2x"],
    ["DUPLICATE_WINDOW", "2"],
    ["DUPLICATE_WINDOW", "1.5m"],
    ["DUPLICATE_WINDOW", "-2m"],
    ["DUPLICATE_WINDOW", "2d"],
    ["PUBLISH_TIMEOUT", "10ms"],
    ["PUBLISH_TIMEOUT", "2m"],
    ["SEQUENCER_BATCH_SIZE", "0"],
    ["SEQUENCER_BATCH_SIZE", "5001"],
    ["SEQUENCER_MAX_BATCH_SIZE", "0"],
    ["SEQUENCER_MAX_BATCH_SIZE", "20001"],
    ["SEQUENCER_MAX_BATCH_SIZE", "999"],
    ["SEQUENCER_FETCH_WAIT", "5ms"],
    ["SEQUENCER_ACK_WAIT", "2h"],
    ["SEQUENCER_MAX_ACK_PENDING", "0"],
    ["BODY_LIMIT_BYTES", "255"],
    ["NATS_URL", "http://x"],
    ["STREAM_REPLICAS", "0"],
    ["STREAM_REPLICAS", "7"],
    ["NATS_URL", "not a url"],
    ["NATS_URL", "nats.example:4222"],
    ["DATABASE_URL", "mysql://x"],
    ["DATABASE_URL", "::"],
    ["AUTH_SECRET", "short"],
    ["AUTH_SECRET", "x".repeat(31)],
    ["LOG_LEVEL", "loud"],
    ["LOG_LEVEL", "INFO"],
    ["LOG_LEVEL", "debug"],
    ["FAILPOINT", "before-commit"],
    ["FAILPOINT_AFTER", "0"],
  ])("%s=%p", (name, value) => {
    const error = configError({ [name]: value });
    expect(error).toBeInstanceOf(ConfigError);
    expect(error).toBeInstanceOf(Error);
    expect(error.name).toBe("ConfigError");
    expect(error.message).toContain(name);
  });

  test("the bad value is quoted in the message for numbers and durations", () => {
    expect(configError({ PORT: "abc" }).message).toContain('"abc"');
    expect(configError({ DUPLICATE_WINDOW: "2x" }).message).toContain('"2x"');
  });

  test("the secret itself is never echoed in the message", () => {
    expect(configError({ AUTH_SECRET: "hunter2-very-secret" }).message).not.toContain("hunter2");
  });

  test("property: any PORT outside 0..65535 or not all digits is rejected naming PORT", () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.integer({ min: 65536, max: Number.MAX_SAFE_INTEGER }).map(String),
          fc.string({ minLength: 1 }).filter((s) => !/^\d+$/.test(s)),
        ),
        (raw) => {
          expect(configError({ PORT: raw }).message).toContain("PORT");
        },
      ),
    );
  });

  test("property: any integer PORT in range is read back exactly", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 65535 }), (port) => {
        expect(loadConfig({ PORT: String(port) }).port).toBe(port);
      }),
    );
  });
});

describe("parseDuration", () => {
  test.each([
    ["0ms", 0],
    ["500ms", 500],
    ["30s", 30_000],
    ["2m", 120_000],
    ["1h", 3_600_000],
    ["24h", 86_400_000],
    [" 2m ", 120_000],
  ])("%p → %p", (raw, ms) => {
    expect(parseDuration(raw)).toBe(ms);
  });

  test.each(["", "2", "2x", "m", "1.5s", "-1s", "+1s", "1 s", "1S", "1d", "1sec", "2m30s", "ms", "0x10s"])(
    "rejects %p",
    (raw) => {
      expect(parseDuration(raw)).toBeNull();
    },
  );

  test("property: n<unit> is n times the unit", () => {
    const units = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000 } as const;
    fc.assert(
      fc.property(
        fc.nat({ max: 1_000_000 }),
        fc.constantFrom("ms", "s", "m", "h") as fc.Arbitrary<keyof typeof units>,
        (n, unit) => {
          expect(parseDuration(`${n}${unit}`)).toBe(n * units[unit]);
        },
      ),
    );
  });

  test("property: never throws and returns null or a non-negative number", () => {
    fc.assert(
      fc.property(fc.string(), (raw) => {
        const ms = parseDuration(raw);
        if (ms !== null) expect(ms).toBeGreaterThanOrEqual(0);
      }),
    );
  });
});
