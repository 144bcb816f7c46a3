/**
 * How a process proves who it is to NATS. External brokers: from the environment (NATS_CREDS, NATS_USER +
 * NATS_PASSWORD, NATS_TOKEN or NATS_NKEY_SEED, read by config.ts). The embedded broker: a password per role that
 * the service generated under DATA_DIR (src/runtime/embedded-nats.ts). Secrets never leave this shape except
 * into the client library's authenticator; `describeCredentials` is what logs and errors may show.
 */
import { readFileSync } from "node:fs";
import {
  type Authenticator,
  credsAuthenticator,
  nkeyAuthenticator,
  nkeys,
  tokenAuthenticator,
  usernamePasswordAuthenticator,
} from "@nats-io/nats-core";

export type NatsCredentials =
  | { kind: "user"; user: string; password: string }
  | { kind: "token"; token: string }
  | { kind: "nkey"; seed: string }
  | { kind: "creds"; file: string };

/** Names the identity without its secret: for start-up errors and logs. */
export function describeCredentials(credentials: NatsCredentials | undefined): string {
  if (!credentials) {
    return "a connection without credentials (set NATS_USER + NATS_PASSWORD, NATS_TOKEN, NATS_NKEY_SEED or NATS_CREDS)";
  }
  switch (credentials.kind) {
    case "user":
      return `user "${credentials.user}" (NATS_USER/NATS_PASSWORD)`;
    case "token":
      return "a token (NATS_TOKEN)";
    case "nkey":
      return `nkey ${publicKeyOf(credentials.seed) ?? "(unreadable seed)"} (NATS_NKEY_SEED)`;
    case "creds":
      return `creds file ${credentials.file} (NATS_CREDS)`;
  }
}

/** The public key of an nkey seed, or null when the seed is not a valid user seed. */
export function publicKeyOf(seed: string): string | null {
  try {
    return nkeys.fromSeed(new TextEncoder().encode(seed.trim())).getPublicKey();
  } catch {
    return null;
  }
}

export function authenticatorOf(credentials: NatsCredentials): Authenticator {
  switch (credentials.kind) {
    case "user":
      return usernamePasswordAuthenticator(credentials.user, credentials.password);
    case "token":
      return tokenAuthenticator(credentials.token);
    case "nkey":
      return nkeyAuthenticator(new TextEncoder().encode(credentials.seed.trim()));
    case "creds":
      // Read at connect time (and on every reconnect), so a rotated file is picked up without a restart.
      return credsAuthenticator(() => readFileSync(credentials.file));
  }
}
