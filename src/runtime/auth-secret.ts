/**
 * Where the HS256 secret comes from: AUTH_SECRET, or — in embedded mode only — a random secret generated on the
 * first run and kept in DATA_DIR so tokens survive restarts. With an external NATS or database the secret must be
 * given explicitly: several replicas must share one, and a silently generated one would split them. With AUTH_JWKS
 * and no AUTH_SECRET there is no secret at all (see resolveAuthSecret). A weak secret, from the environment or
 * the file, stops start-up (checkAuthSecret).
 */
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { type Config, ConfigError, checkAuthSecret } from "../config.ts";

/** The HS256 secret, or undefined when this process verifies only public-key tokens (AUTH_JWKS alone). */
export function resolveAuthSecret(config: Config): string | undefined {
  if (config.authSecret) return config.authSecret;
  // Public keys only: tokens are signed elsewhere with the private keys. A secret generated here would be one no
  // token issuer knows, and it would quietly accept HS256 tokens again, which an AUTH_JWKS-only setup refuses.
  // An auth-secret file left from an earlier run is ignored for the same reason.
  if (config.authJwks) return undefined;
  if (config.natsUrl || config.databaseUrl) {
    throw new ConfigError(
      "AUTH_SECRET (at least 32 bytes) or AUTH_JWKS is required when NATS_URL or DATABASE_URL is set",
    );
  }
  const file = join(config.dataDir, "auth-secret");
  if (existsSync(file)) {
    const secret = readFileSync(file, "utf8").trim();
    checkAuthSecret(secret, file);
    return secret;
  }
  mkdirSync(config.dataDir, { recursive: true });
  const secret = randomBytes(32).toString("base64url");
  writeFileSync(file, `${secret}\n`, { mode: 0o600 });
  return secret;
}
