/**
 * The brokers the bench starts, authenticated the way a deployment is: the service's per-role users and permissions
 * (renderAuthorization, the table deploy/nats-auth.conf is generated from) plus the `all` user a `serve --role all`
 * deployment needs (broker-auth.ts). Every phase measures against one of these, so the figures include the
 * security work (issue 17, target 7). One set of passwords per bench run, shared by every server it starts (the
 * growth phase starts a second one), so a child's credentials work on whichever server it is pointed at.
 *
 * Who connects as whom: the service's processes as their role (api, sequencer, all; replay and the raw ordered
 * consumer as reader); the bench itself and the baselines as admin, because they create and delete streams and
 * consumers, which the runtime roles may not.
 *
 * With NATS_URL the bench cannot add users: it runs there without authentication and says so in its header.
 */
import { randomBytes } from "node:crypto";
import { NATS_ROLES, passwordVariableOf } from "../../src/adapters/nats/permissions.ts";
import { type NatsServerHandle, startNats } from "../services/local-services.ts";
import { ALL_ROLE_PASSWORD_VARIABLE, ALL_ROLE_USER, renderBenchAuthorization } from "./broker-auth.ts";
import { childPids } from "./cpu.ts";

/** A user on the bench's brokers: a service role, or `all` (api ∪ sequencer). */
export type BenchUser = (typeof NATS_ROLES)[number] | typeof ALL_ROLE_USER;

export type BrokerAuth = {
  /** NATS_USER / NATS_PASSWORD for a user, as a child's environment takes them. */
  env(user: BenchUser): Record<string, string>;
  /** The admin user's name and password, for the bench's own connections. */
  admin: { user: string; pass: string };
  /** The password variables nats-server reads its config's `$NATS_<ROLE>_PASSWORD` from. */
  serverEnv: Record<string, string>;
};

function passwordVariable(user: BenchUser): string {
  return user === ALL_ROLE_USER ? ALL_ROLE_PASSWORD_VARIABLE : passwordVariableOf(user);
}

/** Fresh random passwords for every user. */
export function newBrokerAuth(): BrokerAuth {
  const users: BenchUser[] = [...NATS_ROLES, ALL_ROLE_USER];
  // A letter first, as embedded-nats.ts does: nats-server parses the variable's value as config, and hex that
  // starts with digits can be read as a number and refused ("variable reference … could not be parsed").
  const passwords = new Map(users.map((user) => [user, `p${randomBytes(24).toString("hex")}`]));
  const password = (user: BenchUser) => passwords.get(user) as string;
  return {
    env: (user) => ({ NATS_USER: user, NATS_PASSWORD: password(user) }),
    admin: { user: "admin", pass: password("admin") },
    serverEnv: Object.fromEntries(users.map((user) => [passwordVariable(user), password(user)])),
  };
}

export type StartedBroker = { handle: NatsServerHandle; url: string; pid: number | undefined };

/** A nats-server of this run (file store in a temp dir) with every user of `auth`. */
export async function startAuthenticatedNats(auth: BrokerAuth): Promise<StartedBroker> {
  const before = new Set(childPids(process.pid, "nats-server"));
  const handle = await startNats({ config: renderBenchAuthorization(), env: auth.serverEnv });
  const pid = childPids(process.pid, "nats-server").find((p) => !before.has(p));
  return { handle, url: handle.url, pid };
}
