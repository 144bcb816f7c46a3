#!/usr/bin/env bun
/**
 * The service's command line. The verbs, their usage and what each does: VERBS below (`sequencer --help`,
 * `sequencer <verb> --help`). Exit codes: 0 ok, 1 fatal, 2 configuration error, 3 inspect found a mismatch,
 * 64 usage, 69 a missing tool that cannot be installed, 77 NATS refused the credentials.
 *
 * Each verb imports what it needs when it runs: `replay` and `inspect` do not load the service (Drizzle, Elysia,
 * PGlite, prom-client, pino), which was 0.15 s of a replay's start.
 */
import { parseArgs } from "node:util";
import { NatsAuthenticationError, type NatsIdentity } from "./adapters/nats/connection.ts";
import type { TokenRole, TokenService } from "./app/auth.ts";
import { type Config, ConfigError, loadConfig, parseDuration, type Role } from "./config.ts";
import { parsePositiveId } from "./domain/ids.ts";
import { privateUmask, secureDataDir } from "./runtime/data-dir.ts";
import { embeddedCredentials, embeddedEndpoint } from "./runtime/embedded-nats.ts";
import { ProvisionError } from "./runtime/provision-tools.ts";

/** Each verb's usage and what it does: `sequencer --help` prints them all, `sequencer <verb> --help` its own. */
const VERBS: Record<string, string> = {
  serve: `sequencer serve [--role all|api|sequencer]
    run the API and/or the sequencer (default: all) on NATS_URL and DATABASE_URL, or on an embedded nats-server
    and PGlite under DATA_DIR when those are unset; configuration from the environment (README: Configuration)`,
  migrate: `sequencer migrate
    apply the database migrations and exit (serve also applies them at start, under an advisory lock)`,
  provision: `sequencer provision
    create or update the JetStream streams, consumer and buckets on NATS_URL as the admin role (NATS_* credentials
    of the admin user), and exit`,
  token: `sequencer token --user <id> [--role reader|admin] [--admin] [--ttl <duration ≤ AUTH_MAX_TTL, e.g. 1h>]
                [--key <private JWK or PKCS#8 PEM file> [--kid <kid>] [--alg ES256|EdDSA|RS256]]
    print a signed bearer token (only the token, on stdout)`,
  replay: `sequencer replay --after <sequenceId> [--follow] [--nats <url>]
    the sequenced events from TRADING as NDJSON on stdout, from the one after <sequenceId>, as the reader role`,
  inspect: `sequencer inspect [--json] [--nats <url>]
    streams, consumer, database head and a verdict on one screen (exit 3 on a mismatch)
  sequencer inspect --verify [--from <sequenceId>] [--nats <url>]   (needs DATABASE_URL)
    recompute the digest chain over events, compare it with TRADING, name the first sequenceId that differs`,
};

const USAGE = `usage:\n${Object.values(VERBS)
  .map((text) => `  ${text.split("\n")[0]}`)
  .join("\n")}\n  sequencer <command> --help`;

const HELP = `sequencer: an exactly-once order sequencer (HTTP → NATS JetStream → PostgreSQL → TRADING)

${Object.values(VERBS)
  .map((text) => `  ${text}`)
  .join("\n\n")}

  sequencer --help, sequencer <command> --help   this text, or one command's`;

class UsageError extends Error {}

/** The start banner's token ends up in container and CI logs: it lives at most this long. */
const BANNER_TOKEN_TTL_SECONDS = 3600;

/** 86_400_000 → "24h", 1_800_000 → "30m", 90_000 → "90s". */
function formatDuration(ms: number): string {
  if (ms % 3_600_000 === 0) return `${ms / 3_600_000}h`;
  if (ms % 60_000 === 0) return `${ms / 60_000}m`;
  return ms % 1000 === 0 ? `${ms / 1000}s` : `${ms}ms`;
}

/**
 * Where the read-only commands (replay, inspect) reach NATS, as the reader role: `--nats` or NATS_URL with the
 * NATS_* credentials, or else the embedded broker that `serve` started from DATA_DIR, with the reader password
 * it generated there.
 */
function readerTarget(
  config: Config,
  flagUrl: string | undefined,
): { natsUrl: string; identity: NatsIdentity } {
  const natsUrl = flagUrl ?? config.natsUrl;
  if (natsUrl) return { natsUrl, identity: { role: "reader", credentials: config.natsCredentials } };
  const endpoint = embeddedEndpoint(config.dataDir);
  const credentials = embeddedCredentials(config.dataDir, "reader");
  if (!endpoint || !credentials) {
    throw new UsageError(
      `no embedded broker has run from DATA_DIR=${config.dataDir}: start \`sequencer serve\` there, or set NATS_URL`,
    );
  }
  return { natsUrl: endpoint.url, identity: { role: "reader", credentials } };
}

async function serve(args: string[]): Promise<void> {
  const { values } = parseArgs({ args, options: { role: { type: "string", default: "all" } } });
  const role = values.role;
  if (role !== "all" && role !== "api" && role !== "sequencer")
    throw new UsageError("--role must be all, api or sequencer");
  const config = loadConfig();
  const [{ createLogger }, { startService }] = await Promise.all([
    import("./logger.ts"),
    import("./service.ts"),
  ]);
  const log = createLogger({ service: "sequencer", role }, config.logLevel);
  const service = await startService(config, role as Role, log);

  let shuttingDown = false;
  const shutdown = (signal: string) => {
    if (shuttingDown) return;
    shuttingDown = true;
    log.info("shutting down", { signal });
    const force = setTimeout(() => {
      log.error("shutdown took too long; exiting");
      process.exit(1);
    }, 15_000);
    service.stop().then(
      () => {
        clearTimeout(force);
        process.exit(0);
      },
      (error) => {
        log.error("shutdown failed", { error });
        process.exit(1);
      },
    );
  };
  process.on("SIGTERM", () => shutdown("SIGTERM"));
  process.on("SIGINT", () => shutdown("SIGINT"));

  const db = config.databaseUrl ? "PostgreSQL (DATABASE_URL)" : `PGlite in ${config.dataDir}/pg`;
  const ws = service.natsWsUrl ? ` (WebSocket ${service.natsWsUrl})` : "";
  const lines = [`sequencer (${role}) up: NATS ${service.natsUrl}${ws}, database ${db}`];
  if (!config.natsUrl) {
    lines.push(
      `NATS users api, sequencer, reader, admin; passwords in ${config.dataDir}/nats-credentials/<user>.password (README: Security)`,
    );
  }
  if (service.url && service.tokens) {
    // Short-lived (the banner lands in logs), and only where this API holds a secret: with AUTH_JWKS alone the
    // private keys are elsewhere, so the banner says how to mint one instead.
    const ttlSeconds = Math.min(BANNER_TOKEN_TTL_SECONDS, service.tokens.maxTtlSeconds);
    const token = service.tokens.canMint ? await service.tokens.mint(1n, { ttlSeconds }) : `'"$TOKEN"'`;
    const valid = ttlSeconds % 3600 === 0 ? `${ttlSeconds / 3600} h` : `${Math.floor(ttlSeconds / 60)} min`;
    lines.push(
      `API on ${service.url}  (docs: ${service.url}/openapi; metrics and readiness details: ${service.opsUrl}/metrics, ${service.opsUrl}/readyz)`,
      service.tokens.canMint
        ? `Place an order as user 1 (token valid ${valid}; mint more with \`sequencer token --user 1\`):`
        : "Place an order as user 1, with TOKEN=$(sequencer token --user 1 --key <private key file>) (AUTH_JWKS only: this API cannot mint tokens):",
      `  curl -sS -X POST ${service.url}/orders -H 'authorization: Bearer ${token}' -H 'content-type: application/json' -d '{"direction":"BUY","price":"100.5","quantity":"2"}'`,
      "Then read your own events (the whole log needs a reader token: sequencer token --user 1 --role reader):",
      `  curl -sS '${service.url}/me/events?after=0&limit=10' -H 'authorization: Bearer ${token}'`,
    );
  }
  process.stdout.write(`${lines.join("\n")}\n`);
  log.info("started", { url: service.url, ops: service.opsUrl, nats: service.natsUrl });
}

async function migrate(): Promise<void> {
  const config = loadConfig();
  // PGlite lives under DATA_DIR, which is its owner's alone (as `serve` keeps it).
  if (!config.databaseUrl) {
    privateUmask();
    secureDataDir(config.dataDir);
  }
  const { openDatabase } = await import("./adapters/db/client.ts");
  const database = await openDatabase({ url: config.databaseUrl, pgliteDir: `${config.dataDir}/pg` });
  try {
    await database.migrate();
  } finally {
    await database.close();
  }
  if (!config.databaseUrl) secureDataDir(config.dataDir);
  process.stderr.write("migrations applied\n");
}

async function token(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      user: { type: "string" },
      role: { type: "string" },
      admin: { type: "boolean", default: false },
      ttl: { type: "string" },
      key: { type: "string" },
      kid: { type: "string" },
      alg: { type: "string" },
    },
  });
  const { TOKEN_ROLES, TokenService } = await import("./app/auth.ts");
  const userId = parsePositiveId(values.user);
  if (userId === null) throw new UsageError("--user must be a positive 64-bit user id (digits)");
  if (values.role !== undefined && !TOKEN_ROLES.includes(values.role as TokenRole)) {
    throw new UsageError(`--role must be ${TOKEN_ROLES.join(" or ")} (none: a user token)`);
  }
  if (values.admin && values.role !== undefined && values.role !== "admin") {
    throw new UsageError("--admin means --role admin: give one role");
  }
  const role = (values.role ?? (values.admin ? "admin" : undefined)) as TokenRole | undefined;
  if (values.key === undefined && (values.kid !== undefined || values.alg !== undefined)) {
    throw new UsageError("--kid and --alg go with --key");
  }
  const config = loadConfig();
  const ttlMs =
    values.ttl === undefined ? Math.min(24 * 3_600_000, config.authMaxTtlMs) : parseDuration(values.ttl);
  if (ttlMs === null || ttlMs < 1000) throw new UsageError("--ttl must be a duration like 30m or 24h");
  if (ttlMs > config.authMaxTtlMs) {
    throw new UsageError(
      `--ttl must be at most AUTH_MAX_TTL (${formatDuration(config.authMaxTtlMs)}): the API refuses longer-lived tokens`,
    );
  }
  const [{ loadSigningKey, SigningKeyError, tokenPolicy }, { resolveAuthSecret }] = await Promise.all([
    import("./runtime/auth-keys.ts"),
    import("./runtime/auth-secret.ts"),
  ]);
  let service: TokenService;
  if (values.key !== undefined) {
    try {
      const signingKey = await loadSigningKey(values.key, { kid: values.kid, alg: values.alg });
      service = new TokenService({ signingKey, ...tokenPolicy(config) });
    } catch (error) {
      throw error instanceof SigningKeyError ? new UsageError(error.message) : error;
    }
  } else {
    const secret = resolveAuthSecret(config);
    if (secret === undefined) {
      throw new UsageError(
        "AUTH_JWKS is set and AUTH_SECRET is not: sign with --key <private JWK or PKCS#8 PEM file>",
      );
    }
    service = new TokenService({ secret, ...tokenPolicy(config) });
  }
  process.stdout.write(`${await service.mint(userId, { role, ttlSeconds: Math.floor(ttlMs / 1000) })}\n`);
}

async function replayCommand(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      after: { type: "string", default: "0" },
      follow: { type: "boolean", default: false },
      nats: { type: "string" },
    },
  });
  const after = values.after === "0" ? 0n : parsePositiveId(values.after);
  if (after === null) throw new UsageError("--after must be a sequenceId (0 or a positive 64-bit integer)");
  const { natsUrl, identity } = readerTarget(loadConfig(), values.nats);
  const { replay } = await import("./replay.ts");
  await replay({ natsUrl, after, follow: values.follow ?? false, identity });
}

async function inspectCommand(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      json: { type: "boolean", default: false },
      nats: { type: "string" },
      verify: { type: "boolean", default: false },
      from: { type: "string" },
    },
  });
  const config = loadConfig();
  if (values.from !== undefined && !values.verify) throw new UsageError("--from goes with --verify");
  const from = values.from === undefined ? 1n : parsePositiveId(values.from);
  if (from === null) throw new UsageError("--from must be a sequenceId (a positive 64-bit integer)");
  if (values.verify && !config.databaseUrl) {
    throw new UsageError(
      "inspect --verify reads the events table: set DATABASE_URL (PGlite belongs to the running service and cannot be opened beside it)",
    );
  }
  const { natsUrl, identity } = readerTarget(config, values.nats);
  if (values.verify) {
    const { formatVerification, verifyLog } = await import("./inspect.ts");
    const verification = await verifyLog(natsUrl, config.databaseUrl, from, identity);
    process.stdout.write(
      `${values.json ? JSON.stringify(verification) : formatVerification(verification)}\n`,
    );
    if (verification.state === "MISMATCH") process.exitCode = 3;
    return;
  }
  const { formatInspection, inspect } = await import("./inspect.ts");
  const result = await inspect(natsUrl, config.databaseUrl, identity);
  process.stdout.write(`${values.json ? JSON.stringify(result) : formatInspection(result)}\n`);
  if (result.verdict.state === "MISMATCH") process.exitCode = 3;
}

async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  // Help is an answer, not an error: on stdout, exit 0.
  if (command === undefined || command === "--help" || command === "-h" || command === "help") {
    if (command === undefined) throw new UsageError("missing command");
    process.stdout.write(`${HELP}\n`);
    return;
  }
  if (rest.includes("--help") || rest.includes("-h")) {
    const verb = VERBS[command];
    if (verb === undefined) throw new UsageError(`unknown command ${command}`);
    process.stdout.write(`  ${verb}\n`);
    return;
  }
  switch (command) {
    case "serve":
      return serve(rest);
    case "migrate":
      return migrate();
    case "provision": {
      const config = loadConfig();
      const [{ createLogger }, { provisionBroker }] = await Promise.all([
        import("./logger.ts"),
        import("./service.ts"),
      ]);
      await provisionBroker(
        config,
        createLogger({ service: "sequencer", role: "provision" }, config.logLevel),
      );
      process.stderr.write("JetStream topology provisioned\n");
      return;
    }
    case "token":
      return token(rest);
    case "replay":
      return replayCommand(rest);
    case "inspect":
      return inspectCommand(rest);
    default:
      throw new UsageError(command ? `unknown command ${command}` : "missing command");
  }
}

main(process.argv.slice(2)).catch((error: unknown) => {
  if (error instanceof ProvisionError) {
    // One line that says what is missing and the ways to get it; nothing has been started.
    process.stderr.write(`${error.message}\n`);
    process.exit(69); // EX_UNAVAILABLE
  }
  if (error instanceof NatsAuthenticationError) {
    // One line naming who was refused (never the secret); retrying would only be refused again.
    process.stderr.write(`${error.message}\n`);
    process.exit(77); // EX_NOPERM
  }
  if (error instanceof ConfigError) {
    process.stderr.write(`configuration error: ${error.message}\n`);
    process.exit(2);
  }
  if (
    error instanceof UsageError ||
    (error instanceof TypeError && "code" in error && String(error.code).startsWith("ERR_PARSE_ARGS"))
  ) {
    process.stderr.write(`${error.message}\n${USAGE}\n`);
    process.exit(64);
  }
  process.stderr.write(`fatal: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
