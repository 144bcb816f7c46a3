/**
 * One way to open the NATS connection for every role: TCP (nats://, tls://) through @nats-io/transport-node, or
 * WebSocket (ws://, wss://) through nats-core's wsconnect, for places where raw TCP is not allowed (edge
 * runtimes). Everything above this file gets a NatsConnection and does not care which.
 *
 * Credentials and the role's inbox prefix are applied here for both transports. A broker that refuses the
 * credentials is a `NatsAuthenticationError` (one line naming who was refused, never the secret), not a retry loop.
 */
import {
  AuthorizationError,
  type ConnectionOptions,
  type NatsConnection,
  UserAuthenticationExpiredError,
  wsconnect,
} from "@nats-io/nats-core";
import { connect } from "@nats-io/transport-node";
import { authenticatorOf, describeCredentials, type NatsCredentials } from "./credentials.ts";
import { inboxPrefixOf, type NatsRole } from "./permissions.ts";

export function isWebSocketUrl(url: string): boolean {
  return url.startsWith("ws://") || url.startsWith("wss://");
}

export class NatsAuthenticationError extends Error {
  override readonly name = "NatsAuthenticationError";
}

export type NatsIdentity = {
  credentials?: NatsCredentials | undefined;
  /** Picks the inbox prefix (`_INBOX_<role>`) that the role's permissions let it subscribe to. */
  role?: NatsRole | undefined;
};

export async function connectNats(
  url: string,
  options: Omit<ConnectionOptions, "servers" | "authenticator" | "inboxPrefix"> & NatsIdentity = {},
): Promise<NatsConnection> {
  const { credentials, role, ...rest } = options;
  const opts: ConnectionOptions = {
    ...rest,
    servers: url,
    ...(credentials ? { authenticator: authenticatorOf(credentials) } : {}),
    ...(role ? { inboxPrefix: inboxPrefixOf(role) } : {}),
  };
  try {
    return await (isWebSocketUrl(url) ? wsconnect(opts) : connect(opts));
  } catch (error) {
    if (error instanceof AuthorizationError || error instanceof UserAuthenticationExpiredError) {
      throw new NatsAuthenticationError(
        `NATS at ${url} refused ${describeCredentials(credentials)}: ${error.message}`,
        { cause: error },
      );
    }
    throw error;
  }
}
