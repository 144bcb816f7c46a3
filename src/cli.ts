#!/usr/bin/env bun
/**
 * sequencer serve [--role all|api|sequencer]   run the API and/or the sequencer (default: all)
 * sequencer migrate                            apply database migrations and exit
 * sequencer token --user <id> [--admin] [--ttl 24h]   print a signed JWT (only the token, on stdout)
 * sequencer replay --after <seq> [--follow]   the sequenced events from TRADING as NDJSON on stdout
 * sequencer inspect [--json]                  streams, consumer, database head and a verdict on one screen
 * sequencer bench [--quick] [--json <path>]   measure against baselines in one run (docs/performance.md)
 */
import { parseArgs } from "node:util";
import { openDatabase } from "./adapters/db/client.ts";
import { TokenService } from "./app/auth.ts";
import { ConfigError, loadConfig, parseDuration, type Role } from "./config.ts";
import { parsePositiveId } from "./domain/ids.ts";
import { createLogger } from "./logger.ts";
import { replay } from "./replay.ts";
import { resolveAuthSecret } from "./runtime/auth-secret.ts";
import { ProvisionError } from "./runtime/provision-tools.ts";
import { startService } from "./service.ts";

const USAGE = `usage:
  sequencer serve [--role all|api|sequencer]
  sequencer migrate
  sequencer token --user <id> [--admin] [--ttl <duration, e.g. 24h>]
  sequencer replay --after <sequenceId> [--follow] [--nats <url>]
  sequencer inspect [--json] [--nats <url>]
  sequencer bench [--quick] [--json <path>]  (all options: docs/performance.md)`;

class UsageError extends Error {}

async function serve(args: string[]): Promise<void> {
  const { values } = parseArgs({ args, options: { role: { type: "string", default: "all" } } });
  const role = values.role;
  if (role !== "all" && role !== "api" && role !== "sequencer")
    throw new UsageError("--role must be all, api or sequencer");
  const config = loadConfig();
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
  if (service.url && service.tokens) {
    const token = await service.tokens.mint(1n);
    lines.push(
      `API on ${service.url}  (docs: ${service.url}/openapi, metrics: ${service.url}/metrics)`,
      "Place an order as user 1:",
      `  curl -sS -X POST ${service.url}/orders -H 'authorization: Bearer ${token}' -H 'content-type: application/json' -d '{"direction":"BUY","price":"100.5","quantity":"2"}'`,
      "Then read the sequenced log:",
      `  curl -sS '${service.url}/events?after=0&limit=10'`,
    );
  }
  process.stdout.write(`${lines.join("\n")}\n`);
  log.info("started", { url: service.url, nats: service.natsUrl });
}

async function migrate(): Promise<void> {
  const config = loadConfig();
  const database = await openDatabase({ url: config.databaseUrl, pgliteDir: `${config.dataDir}/pg` });
  try {
    await database.migrate();
  } finally {
    await database.close();
  }
  process.stderr.write("migrations applied\n");
}

async function token(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      user: { type: "string" },
      admin: { type: "boolean", default: false },
      ttl: { type: "string", default: "24h" },
    },
  });
  const userId = parsePositiveId(values.user);
  if (userId === null) throw new UsageError("--user must be a positive 64-bit user id (digits)");
  const ttlMs = parseDuration(values.ttl ?? "24h");
  if (ttlMs === null || ttlMs < 1000) throw new UsageError("--ttl must be a duration like 30m or 24h");
  const service = new TokenService(resolveAuthSecret(loadConfig()));
  process.stdout.write(
    `${await service.mint(userId, { admin: values.admin, ttlSeconds: Math.floor(ttlMs / 1000) })}\n`,
  );
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
  const natsUrl = values.nats ?? loadConfig().natsUrl;
  if (!natsUrl) {
    throw new UsageError(
      "replay reads TRADING from NATS: set NATS_URL or pass --nats (the serve banner prints the URL)",
    );
  }
  await replay({ natsUrl, after, follow: values.follow ?? false });
}

async function inspectCommand(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: { json: { type: "boolean", default: false }, nats: { type: "string" } },
  });
  const config = loadConfig();
  const natsUrl = values.nats ?? config.natsUrl;
  if (!natsUrl) throw new UsageError("inspect needs NATS_URL or --nats (the serve banner prints the URL)");
  const { formatInspection, inspect } = await import("./inspect.ts");
  const result = await inspect(natsUrl, config.databaseUrl);
  process.stdout.write(`${values.json ? JSON.stringify(result) : formatInspection(result)}\n`);
  if (result.verdict.state === "MISMATCH") process.exitCode = 3;
}

async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  switch (command) {
    case "serve":
      return serve(rest);
    case "migrate":
      return migrate();
    case "token":
      return token(rest);
    case "replay":
      return replayCommand(rest);
    case "bench":
      return (await import("./bench/index.ts")).runBench(rest);
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
