/**
 * Where the HS256 secret comes from: AUTH_SECRET, or — in embedded mode only — a random secret generated on the
 * first run and kept in DATA_DIR so tokens survive restarts. With an external NATS or database the secret must be
 * given explicitly: several replicas must share one, and a silently generated one would split them.
 */
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { type Config, ConfigError } from "../config.ts";

export function resolveAuthSecret(config: Config): string {
  if (config.authSecret) return config.authSecret;
  if (config.natsUrl || config.databaseUrl) {
    throw new ConfigError(
      "AUTH_SECRET is required when NATS_URL or DATABASE_URL is set (at least 32 characters)",
    );
  }
  const file = join(config.dataDir, "auth-secret");
  if (existsSync(file)) return readFileSync(file, "utf8").trim();
  mkdirSync(config.dataDir, { recursive: true });
  const secret = randomBytes(32).toString("base64url");
  writeFileSync(file, `${secret}\n`, { mode: 0o600 });
  return secret;
}
