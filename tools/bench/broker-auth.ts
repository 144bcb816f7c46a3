/**
 * The authorization block of the bench's own broker: the service's per-role users (renderAuthorization, the table
 * deploy/nats-auth.conf is generated from) plus one user for `serve --role all`. Against an external broker that
 * process authenticates once (NATS_*) for both its connections, so it "needs a user with both roles' rights"
 * (README, External broker): the union of the api and the sequencer users, nothing more — still no stream or
 * consumer control, still only the two roles' own inboxes.
 */
import {
  ROLE_PERMISSIONS,
  type RolePermissions,
  renderAuthorization,
} from "../../src/adapters/nats/permissions.ts";

/** The user `serve --role all` connects as on the bench's broker. */
export const ALL_ROLE_USER = "all";
/** Its password's variable, named the way the service's roles' are (NATS_<ROLE>_PASSWORD). */
export const ALL_ROLE_PASSWORD_VARIABLE = "NATS_ALL_PASSWORD";

const unique = (subjects: readonly string[]) => [...new Set(subjects)];

/**
 * What a process holding both roles may do: every subject either may publish or subscribe; a deny stays unless the
 * other role is allowed that exact subject (the api's deny of the sequencer consumer's pull and ack would otherwise
 * refuse the process's own sequencer, since nats-server applies a deny before any allow).
 */
export function unionPermissions(a: RolePermissions, b: RolePermissions): RolePermissions {
  const allow = unique([...a.publish.allow, ...b.publish.allow]);
  const deny = unique([...(a.publish.deny ?? []), ...(b.publish.deny ?? [])]).filter(
    (s) => !allow.includes(s),
  );
  return {
    publish: deny.length > 0 ? { allow, deny } : { allow },
    subscribe: { allow: unique([...a.subscribe.allow, ...b.subscribe.allow]) },
  };
}

export const ALL_ROLE_PERMISSIONS = unionPermissions(ROLE_PERMISSIONS.api, ROLE_PERMISSIONS.sequencer);

const list = (subjects: readonly string[]) => `[${subjects.map((s) => JSON.stringify(s)).join(", ")}]`;

/** One user entry, in the layout renderAuthorization uses. */
function userEntry(user: string, passwordVariable: string, p: RolePermissions): string {
  const deny = p.publish.deny ? `, deny: ${list(p.publish.deny)}` : "";
  return [
    `    {`,
    `      user: ${user}`,
    `      password: $${passwordVariable}`,
    `      permissions: {`,
    `        publish: { allow: ${list(p.publish.allow)}${deny} }`,
    `        subscribe: { allow: ${list(p.subscribe.allow)} }`,
    `      }`,
    `    }`,
  ].join("\n");
}

/** The end of renderAuthorization's users list; the extra user goes in front of it. */
const USERS_END = "\n  ]\n}\n";

/** renderAuthorization() with the `all` user appended to its users; throws if that layout ever changes. */
export function renderBenchAuthorization(base: string = renderAuthorization()): string {
  if (!base.endsWith(USERS_END)) {
    throw new Error(
      "renderAuthorization() no longer ends its users list with `  ]\\n}`: update broker-auth.ts",
    );
  }
  const entry = userEntry(ALL_ROLE_USER, ALL_ROLE_PASSWORD_VARIABLE, ALL_ROLE_PERMISSIONS);
  return `${base.slice(0, -USERS_END.length)},\n${entry}${USERS_END}`;
}
