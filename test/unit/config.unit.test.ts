import { describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { nkeys } from "@nats-io/nats-core";
import fc from "fast-check";
import {
  type Config,
  ConfigError,
  EXAMPLE_AUTH_SECRETS,
  loadConfig,
  parseDuration,
} from "../../src/config.ts";
import { resolveAuthSecret } from "../../src/runtime/auth-secret.ts";

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
      opsPort: 9464,
      opsHost: "127.0.0.1",
      natsUrl: undefined,
      natsCredentials: undefined,
      databaseUrl: undefined,
      dataDir: "./data",
      authSecret: undefined,
      authMaxTtlMs: 86_400_000,
      authIssuer: undefined,
      authAudience: undefined,
      authJwks: undefined,
      workerId: undefined,
      duplicateWindowMs: 30_000,
      tradingDuplicateWindowMs: 10_000,
      idempotencyWindowMs: 86_400_000,
      streamReplicas: 1,
      publishTimeoutMs: 5_000,
      batchSize: 1000,
      maxBatchSize: 1000,
      fetchWaitMs: 1_000,
      ackWaitMs: 10_000,
      maxAckPending: 4_000,
      intakePrefetch: 2_000,
      pullExpiresMs: 5_000,
      catchUpPageSize: 1_000,
      keepAliveMs: 3_333,
      bodyLimitBytes: 16_384,
      opsBodyLimitBytes: 65_536,
      rateLimit: { count: 50, perMs: 1_000 },
      authFailureLimit: { count: 20, perMs: 60_000 },
      bodyTimeoutMs: 10_000,
      maxInFlight: 4_096,
      auditIntervalMs: 10_000,
      logLevel: "info",
      failpoint: undefined,
      failpointAfter: 1,
      failpointStallMs: undefined,
      writerLeaseTtlMs: 10_000,
      writerLeasePollMs: 500,
      writerLeaseHeartbeatMs: 1_000,
      natsReconnectWaitMs: 500,
      statementTimeoutMs: 30_000,
      queryTimeoutMs: 10_000,
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
      TRADING_DUPLICATE_WINDOW: "",
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
      OPS_PORT: "9999",
      OPS_HOST: "10.0.0.1",
      NATS_URL: "nats://nats.example:4222",
      DATABASE_URL: "postgres://u:p@db:5432/seq",
      DATA_DIR: "/var/lib/seq",
      AUTH_SECRET: SECRET,
      WORKER_ID: "1023",
      DUPLICATE_WINDOW: "5m",
      TRADING_DUPLICATE_WINDOW: "30s",
      PUBLISH_TIMEOUT: "250ms",
      SEQUENCER_BATCH_SIZE: "5000",
      SEQUENCER_MAX_BATCH_SIZE: "8000",
      SEQUENCER_FETCH_WAIT: "10ms",
      SEQUENCER_ACK_WAIT: "1h",
      SEQUENCER_MAX_ACK_PENDING: "1",
      BODY_LIMIT_BYTES: "256",
      RATE_LIMIT: "5/2m",
      AUTH_FAILURE_LIMIT: "off",
      BODY_TIMEOUT: "3s",
      MAX_IN_FLIGHT: "0",
      AUDIT_INTERVAL: "1m",
      LOG_LEVEL: "silent",
      WRITER_LEASE_TTL: "4s",
      STATEMENT_TIMEOUT: "45s",
      QUERY_TIMEOUT: "2s",
      FAILPOINT_STALL: "15s",
      SEQUENCER_PREFETCH: "7",
      SEQUENCER_PULL_EXPIRES: "2s",
      SEQUENCER_CATCH_UP_PAGE: "20",
      SEQUENCER_KEEP_ALIVE: "59m",
      WRITER_LEASE_POLL: "50ms",
      WRITER_LEASE_HEARTBEAT: "2s",
      NATS_RECONNECT_WAIT: "3s",
      OPS_BODY_LIMIT_BYTES: "2048",
    });
    expect(config).toEqual({
      port: 8080,
      host: "0.0.0.0",
      opsPort: 9999,
      opsHost: "10.0.0.1",
      natsUrl: "nats://nats.example:4222",
      natsCredentials: undefined,
      databaseUrl: "postgres://u:p@db:5432/seq",
      dataDir: "/var/lib/seq",
      authSecret: SECRET,
      authMaxTtlMs: 86_400_000,
      authIssuer: undefined,
      authAudience: undefined,
      authJwks: undefined,
      workerId: 1023,
      duplicateWindowMs: 300_000,
      tradingDuplicateWindowMs: 30_000,
      idempotencyWindowMs: 86_400_000,
      streamReplicas: 1,
      publishTimeoutMs: 250,
      batchSize: 5000,
      maxBatchSize: 8000,
      fetchWaitMs: 10,
      ackWaitMs: 3_600_000,
      maxAckPending: 1,
      intakePrefetch: 7,
      pullExpiresMs: 2_000,
      catchUpPageSize: 20,
      keepAliveMs: 3_540_000,
      bodyLimitBytes: 256,
      opsBodyLimitBytes: 2_048,
      rateLimit: { count: 5, perMs: 120_000 },
      authFailureLimit: null,
      bodyTimeoutMs: 3_000,
      maxInFlight: 0,
      auditIntervalMs: 60_000,
      logLevel: "silent",
      failpoint: undefined,
      failpointAfter: 1,
      failpointStallMs: 15_000,
      writerLeaseTtlMs: 4_000,
      writerLeasePollMs: 50,
      writerLeaseHeartbeatMs: 2_000,
      natsReconnectWaitMs: 3_000,
      statementTimeoutMs: 45_000,
      queryTimeoutMs: 2_000,
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

  test("TRADING's duplicate window is its own: 10s by default, 1s to 7 days, not following DUPLICATE_WINDOW", () => {
    expect(loadConfig({ DUPLICATE_WINDOW: "5m" }).tradingDuplicateWindowMs).toBe(10_000);
    expect(loadConfig({ TRADING_DUPLICATE_WINDOW: "1s" }).tradingDuplicateWindowMs).toBe(1_000);
    expect(loadConfig({ TRADING_DUPLICATE_WINDOW: "168h" }).tradingDuplicateWindowMs).toBe(
      7 * 24 * 3_600_000,
    );
    expect(configError({ TRADING_DUPLICATE_WINDOW: "999ms" }).message).toStartWith(
      "TRADING_DUPLICATE_WINDOW must be a duration",
    );
    expect(configError({ TRADING_DUPLICATE_WINDOW: "169h" }).message).toContain("TRADING_DUPLICATE_WINDOW");
    expect(configError({ TRADING_DUPLICATE_WINDOW: "2" }).message).toContain('(got "2")');
  });

  test("AUTH_SECRET of exactly 32 characters is accepted", () => {
    expect(loadConfig({ AUTH_SECRET: SECRET }).authSecret).toBe(SECRET);
  });
});

describe("sequencer and lease tunables", () => {
  test("their defaults follow the settings they were derived from", () => {
    const config = loadConfig({
      SEQUENCER_BATCH_SIZE: "300",
      SEQUENCER_ACK_WAIT: "30s",
      WRITER_LEASE_TTL: "3s",
    });
    expect({
      intakePrefetch: config.intakePrefetch,
      keepAliveMs: config.keepAliveMs,
      writerLeaseHeartbeatMs: config.writerLeaseHeartbeatMs,
    }).toEqual({ intakePrefetch: 600, keepAliveMs: 10_000, writerLeaseHeartbeatMs: 600 });
    // A third of the shortest ack_wait allowed (1s), rounded down.
    expect(loadConfig({ SEQUENCER_ACK_WAIT: "1s" }).keepAliveMs).toBe(333);
  });

  test("a keep-alive not under ack_wait, or a heartbeat over half the lease, is refused naming both", () => {
    expect(configError({ SEQUENCER_ACK_WAIT: "5s", SEQUENCER_KEEP_ALIVE: "5s" }).message).toBe(
      "SEQUENCER_KEEP_ALIVE (5000 ms) must be less than SEQUENCER_ACK_WAIT (5000 ms)",
    );
    expect(configError({ WRITER_LEASE_TTL: "4s", WRITER_LEASE_HEARTBEAT: "2001ms" }).message).toBe(
      "WRITER_LEASE_HEARTBEAT (2001 ms) must be at most half of WRITER_LEASE_TTL (4000 ms)",
    );
    expect(loadConfig({ WRITER_LEASE_TTL: "4s", WRITER_LEASE_HEARTBEAT: "2s" }).writerLeaseHeartbeatMs).toBe(
      2_000,
    );
  });

  test.each([
    ["SEQUENCER_PREFETCH", "0"],
    ["SEQUENCER_CATCH_UP_PAGE", "100001"],
    ["SEQUENCER_PULL_EXPIRES", "999ms"],
    ["SEQUENCER_KEEP_ALIVE", "soon"],
    ["WRITER_LEASE_POLL", "2m"],
    ["NATS_RECONNECT_WAIT", "5ms"],
    ["OPS_BODY_LIMIT_BYTES", "1023"],
  ])("%s=%p is refused naming it", (name, value) => {
    expect(configError({ [name]: value }).message).toStartWith(`${name} must be`);
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
    ["WRITER_LEASE_TTL", "1s"],
    ["WRITER_LEASE_TTL", "2s"], // the default SEQUENCER_FETCH_WAIT (1 s) is more than a third of it
    ["STATEMENT_TIMEOUT", "10ms"],
    ["QUERY_TIMEOUT", "1ms"],
    ["FAILPOINT_STALL", "soon"],
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

describe("NATS credentials from the environment", () => {
  const URL = { NATS_URL: "nats://nats.example:4222" };
  test("user + password, token, nkey seed and creds file", () => {
    expect(loadConfig({ ...URL, NATS_USER: "api", NATS_PASSWORD: "pw1" }).natsCredentials).toEqual({
      kind: "user",
      user: "api",
      password: "pw1",
    });
    expect(loadConfig({ ...URL, NATS_TOKEN: "t0k" }).natsCredentials).toEqual({
      kind: "token",
      token: "t0k",
    });
    const seed = new TextDecoder().decode(nkeys.createUser().getSeed());
    expect(loadConfig({ ...URL, NATS_NKEY_SEED: seed }).natsCredentials).toEqual({ kind: "nkey", seed });
    const file = join(mkdtempSync(join(tmpdir(), "creds-")), "svc.creds");
    writeFileSync(file, "not checked until connect");
    expect(loadConfig({ ...URL, NATS_CREDS: file }).natsCredentials).toEqual({ kind: "creds", file });
  });

  test.each([
    [{ ...URL, NATS_USER: "api" }, "NATS_USER is set but NATS_PASSWORD is not"],
    [{ ...URL, NATS_PASSWORD: "x" }, "NATS_PASSWORD is set but NATS_USER is not"],
    [{ ...URL, NATS_USER: "a", NATS_PASSWORD: "b", NATS_TOKEN: "t" }, "not NATS_USER and NATS_TOKEN"],
    [{ ...URL, NATS_NKEY_SEED: "SUXXXX" }, "NATS_NKEY_SEED must be a user nkey seed"],
    [{ ...URL, NATS_CREDS: "/nonexistent/x.creds" }, "NATS_CREDS names a file that does not exist"],
    [{ NATS_TOKEN: "t" }, "NATS_TOKEN is set but NATS_URL is not"],
  ])("%o is refused with one line", (env, message) => {
    expect(configError(env as Record<string, string>).message).toContain(message);
  });

  test("a secret never appears in the error", () => {
    expect(configError({ ...URL, NATS_PASSWORD: "hunter2-secret" }).message).not.toContain("hunter2");
  });
});

describe("token policy variables and refused secrets (issue 13)", () => {
  test("AUTH_MAX_TTL is a duration (default 24h) from 1m to 720h", () => {
    expect(loadConfig({}).authMaxTtlMs).toBe(86_400_000);
    expect(loadConfig({ AUTH_MAX_TTL: "1h" }).authMaxTtlMs).toBe(3_600_000);
    for (const raw of ["1000000h", "721h", "59s", "1d", "soon"]) {
      expect(configError({ AUTH_MAX_TTL: raw }).message).toContain("AUTH_MAX_TTL");
    }
  });

  test("AUTH_ISSUER and AUTH_AUDIENCE are read as given", () => {
    const config = loadConfig({ AUTH_ISSUER: "https://issuer.example", AUTH_AUDIENCE: "sequencer-api" });
    expect([config.authIssuer, config.authAudience]).toEqual(["https://issuer.example", "sequencer-api"]);
  });

  test("AUTH_JWKS: an existing file or an https URL (http only on loopback); anything else is refused", () => {
    const file = join(mkdtempSync(join(tmpdir(), "jwks-")), "keys.json");
    writeFileSync(file, '{"keys":[]}');
    expect(loadConfig({ AUTH_JWKS: file }).authJwks).toBe(file);
    expect(loadConfig({ AUTH_JWKS: "https://issuer.example/jwks.json" }).authJwks).toBe(
      "https://issuer.example/jwks.json",
    );
    expect(loadConfig({ AUTH_JWKS: "http://127.0.0.1:8080/jwks" }).authJwks).toBe(
      "http://127.0.0.1:8080/jwks",
    );
    for (const raw of ["/nonexistent/jwks.json", "http://issuer.example/jwks", "ftp://issuer.example/jwks"]) {
      expect(configError({ AUTH_JWKS: raw }).message).toContain("AUTH_JWKS");
    }
  });

  test("the documented example secrets and anything under 32 bytes are refused, naming AUTH_SECRET only", () => {
    expect(EXAMPLE_AUTH_SECRETS).toContain("change-me-change-me-change-me-change-me");
    for (const secret of [...EXAMPLE_AUTH_SECRETS, "x".repeat(31), "hunter2"]) {
      const message = configError({ AUTH_SECRET: secret }).message;
      expect(message).toStartWith("AUTH_SECRET");
      expect(message).not.toContain(secret);
    }
    expect(loadConfig({ AUTH_SECRET: "é".repeat(16) }).authSecret).toBe("é".repeat(16)); // 32 bytes
  });

  test("the secrets the tests use are still accepted", () => {
    const used = [
      "x".repeat(32),
      "x".repeat(40),
      "worker-lease-test-secret-0123456789abcdef",
      "websocket-test-secret-0123456789-abcdef",
      "credentials-test-secret-0123456789-abcdef",
      "nats-permissions-test-secret-0123456789",
      "fault-injection-secret-0123456789-abcdefghijklmnop",
      "deno-e2e-secret-0123456789-0123456789",
      "e2e-secret-0123456789-0123456789-0123456789",
    ];
    for (const secret of used) expect(loadConfig({ AUTH_SECRET: secret }).authSecret).toBe(secret);
  });

  describe("resolveAuthSecret with the embedded defaults", () => {
    const dataDir = () => mkdtempSync(join(tmpdir(), "auth-secret-"));

    test("an empty or short $DATA_DIR/auth-secret file is refused, naming AUTH_SECRET and the file", () => {
      for (const content of ["", "\n", "x\n"]) {
        const dir = dataDir();
        writeFileSync(join(dir, "auth-secret"), content);
        try {
          resolveAuthSecret(loadConfig({ DATA_DIR: dir }));
          throw new Error("expected a ConfigError");
        } catch (error) {
          expect(error).toBeInstanceOf(ConfigError);
          expect((error as Error).message).toStartWith("AUTH_SECRET");
          expect((error as Error).message).toContain(join(dir, "auth-secret"));
        }
      }
    });

    test("none is generated (or read) when AUTH_JWKS alone is configured; otherwise one is generated once", () => {
      const jwks = join(dataDir(), "keys.json");
      writeFileSync(jwks, '{"keys":[]}');
      const dir = dataDir();
      expect(resolveAuthSecret(loadConfig({ DATA_DIR: dir, AUTH_JWKS: jwks }))).toBeUndefined();
      expect(existsSync(join(dir, "auth-secret"))).toBe(false);
      const generated = resolveAuthSecret(loadConfig({ DATA_DIR: dir }));
      expect(new TextEncoder().encode(generated).length).toBeGreaterThanOrEqual(32);
      expect(resolveAuthSecret(loadConfig({ DATA_DIR: dir }))).toBe(generated);
      // An old file is ignored once AUTH_JWKS is set: HS256 stays off.
      expect(resolveAuthSecret(loadConfig({ DATA_DIR: dir, AUTH_JWKS: jwks }))).toBeUndefined();
    });

    test("with NATS_URL or DATABASE_URL, AUTH_SECRET or AUTH_JWKS must be given", () => {
      const config = loadConfig({ DATA_DIR: dataDir(), DATABASE_URL: "postgres://db/seq" });
      expect(() => resolveAuthSecret(config)).toThrow("AUTH_SECRET");
    });
  });
});

describe("storage limits: TRADING_MAX_AGE, TRADING_MAX_BYTES, INTAKE_MAX_BYTES", () => {
  test("unset or empty: no limits (TRADING kept forever, both streams unlimited)", () => {
    for (const env of [{}, { TRADING_MAX_AGE: "", TRADING_MAX_BYTES: "", INTAKE_MAX_BYTES: "" }]) {
      const config = loadConfig(env);
      expect(config.tradingMaxAgeMs).toBeUndefined();
      expect(config.tradingMaxBytes).toBeUndefined();
      expect(config.intakeMaxBytes).toBeUndefined();
    }
  });

  test("read as a duration and plain byte counts", () => {
    const config = loadConfig({
      TRADING_MAX_AGE: "720h",
      TRADING_MAX_BYTES: "10737418240",
      INTAKE_MAX_BYTES: "1048576",
    });
    expect(config.tradingMaxAgeMs).toBe(720 * 3_600_000);
    expect(config.tradingMaxBytes).toBe(10_737_418_240);
    expect(config.intakeMaxBytes).toBe(1_048_576);
    // The bounds: a minute (and the duplicate window) to 10 years.
    expect(loadConfig({ TRADING_MAX_AGE: "2m" }).tradingMaxAgeMs).toBe(120_000);
    expect(loadConfig({ TRADING_MAX_AGE: "87600h" }).tradingMaxAgeMs).toBe(87_600 * 3_600_000);
    expect(loadConfig({ TRADING_MAX_AGE: "1m", DUPLICATE_WINDOW: "30s" }).tradingMaxAgeMs).toBe(60_000);
    expect(loadConfig({ INTAKE_MAX_BYTES: String(Number.MAX_SAFE_INTEGER) }).intakeMaxBytes).toBe(
      Number.MAX_SAFE_INTEGER,
    );
  });

  test.each([
    ["TRADING_MAX_BYTES", "10GB"],
    ["TRADING_MAX_BYTES", "512MB"],
    ["TRADING_MAX_BYTES", "1e9"],
    ["TRADING_MAX_BYTES", "-1"],
    ["TRADING_MAX_BYTES", "0"],
    ["TRADING_MAX_BYTES", "1048575"],
    ["INTAKE_MAX_BYTES", "1.5"],
    ["INTAKE_MAX_BYTES", " 2000000"],
    ["INTAKE_MAX_BYTES", "99999999999999999999"],
  ])("%s=%p is refused with one line naming it and the value", (name, raw) => {
    const message = configError({ [name]: raw }).message;
    expect(message).toStartWith(`${name} must be a whole number of bytes, at least 1048576`);
    expect(message).toContain(JSON.stringify(raw));
    expect(message).not.toContain("\n");
  });

  test.each(["30d", "1y", "forever", "0s", "59s", "87601h"])("TRADING_MAX_AGE=%p is refused", (raw) => {
    const message = configError({ TRADING_MAX_AGE: raw }).message;
    expect(message).toStartWith("TRADING_MAX_AGE must be a duration");
    expect(message).toContain(JSON.stringify(raw));
  });

  test("TRADING_MAX_AGE below TRADING_DUPLICATE_WINDOW is refused (JetStream would refuse the stream)", () => {
    expect(configError({ TRADING_MAX_AGE: "1m", TRADING_DUPLICATE_WINDOW: "2m" }).message).toBe(
      "TRADING_MAX_AGE (60000 ms) must be at least TRADING_DUPLICATE_WINDOW (120000 ms)",
    );
    expect(configError({ TRADING_MAX_AGE: "5m", TRADING_DUPLICATE_WINDOW: "1h" }).message).toContain(
      "must be at least TRADING_DUPLICATE_WINDOW",
    );
    // SEQUENCE's window is not TRADING's: a long one does not bound TRADING's age.
    expect(loadConfig({ TRADING_MAX_AGE: "1m", DUPLICATE_WINDOW: "1h" }).tradingMaxAgeMs).toBe(60_000);
  });
});
