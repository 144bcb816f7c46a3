/** Bits shared by the baseline processes: required env, a sample intake payload, and never outliving the bench. */
import { encodeIntakeEvent } from "../../../src/domain/events.ts";

export function requireEnv(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is required`);
  return value;
}

/** NATS_USER / NATS_PASSWORD when the bench's broker is authenticated (it passes the admin user's), else nothing. */
export function natsUserFromEnv(): { user: string; pass: string } | Record<string, never> {
  const user = process.env.NATS_USER;
  return user ? { user, pass: requireEnv("NATS_PASSWORD") } : {};
}

/** Exit if the bench that started us is gone (we were re-parented to init). */
export function exitWithParent(): void {
  setInterval(() => process.ppid === 1 && process.exit(3), 1_000).unref();
}

/** An intake event's JSON for position i: the same shape and size as what the API publishes. */
export function samplePayload(i: number): string {
  const base = 400_000_000_000_000_000n;
  return encodeIntakeEvent({
    referenceId: base + BigInt(i) * 2n,
    type: "CREATE_ORDER",
    createdAt: new Date().toISOString(),
    userId: BigInt(1 + (i % 1000)),
    orderId: base + BigInt(i) * 2n + 1n,
    direction: i % 2 ? "BUY" : "SELL",
    price: `${100 + (i % 50)}.25`,
    quantity: "1.5",
  });
}

export function fail(what: string, error: unknown): never {
  process.stderr.write(`${what}: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
}
