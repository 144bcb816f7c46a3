/**
 * One way to open the NATS connection for every role: TCP (nats://, tls://) through @nats-io/transport-node, or
 * WebSocket (ws://, wss://) through nats-core's wsconnect, for places where raw TCP is not allowed (edge
 * runtimes). Everything above this file gets a NatsConnection and does not care which.
 */
import { type ConnectionOptions, type NatsConnection, wsconnect } from "@nats-io/nats-core";
import { connect } from "@nats-io/transport-node";

export function isWebSocketUrl(url: string): boolean {
  return url.startsWith("ws://") || url.startsWith("wss://");
}

export function connectNats(
  url: string,
  options: Omit<ConnectionOptions, "servers"> = {},
): Promise<NatsConnection> {
  return isWebSocketUrl(url)
    ? wsconnect({ ...options, servers: url })
    : connect({ ...options, servers: url });
}
