/**
 * compose.yaml is not run here (no Docker engine), so its promises are checked as data: the services the README
 * names, distinct worker ids for the API replicas, a healthy Postgres before the apps start, and a NATS config
 * that fsyncs every write. (`docker-compose config -q` validates it against the Compose schema where installed.)
 */
import { expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import {
  inboxPrefixOf,
  NATS_ROLES,
  passwordVariableOf,
  renderAuthorization,
} from "../../src/adapters/nats/permissions.ts";
import { SERVICE_HEAP_ENV } from "../../src/runtime/heap-sizing.ts";

type Service = {
  image?: string;
  command?: string[];
  environment?: Record<string, string>;
  depends_on?: Record<string, { condition: string }> | string[];
  healthcheck?: unknown;
  volumes?: string[];
  profiles?: string[];
};

const root = join(import.meta.dir, "../..");
const compose = Bun.YAML.parse(readFileSync(join(root, "compose.yaml"), "utf8")) as {
  services: Record<string, Service>;
};

test("compose.yaml has nats, nats-box (reader; admin on request), postgres, a provisioning step, a sequencer and two API replicas", () => {
  expect(Object.keys(compose.services).sort()).toEqual([
    "api-1",
    "api-2",
    "nats",
    "nats-box",
    "nats-box-admin",
    "postgres",
    "provision",
    "sequencer",
  ]);
});

/** The one variable a `${VAR:?…}` reference names, or undefined for a literal (a committed secret). */
function variableOf(value: string | undefined): string | undefined {
  return /^\$\{([A-Z_]+):\?[^}]+\}$/.exec(value ?? "")?.[1];
}

test("each service gets only its own NATS role's credentials, from .env (no secret is committed)", () => {
  const expected: Record<string, string> = {
    "api-1": "api",
    "api-2": "api",
    sequencer: "sequencer",
    provision: "admin",
    "nats-box": "reader",
    "nats-box-admin": "admin",
  };
  for (const [name, role] of Object.entries(expected)) {
    const env = compose.services[name]?.environment ?? {};
    expect([name, env.NATS_USER]).toEqual([name, role]);
    expect([name, variableOf(env.NATS_PASSWORD)]).toEqual([name, `NATS_${role.toUpperCase()}_PASSWORD`]);
    // No other role's password reaches it.
    const passwords = Object.values(env)
      .map(variableOf)
      .filter((v) => v?.endsWith("_PASSWORD"));
    expect(passwords).toEqual([`NATS_${role.toUpperCase()}_PASSWORD`]);
  }
  for (const name of ["api-1", "api-2", "sequencer"]) {
    expect(variableOf(compose.services[name]?.environment?.AUTH_SECRET)).toBe("AUTH_SECRET");
  }
  // The broker gets every role's password, and nothing else secret.
  const natsEnv = compose.services.nats?.environment ?? {};
  expect(Object.keys(natsEnv).sort()).toEqual(NATS_ROLES.map(passwordVariableOf).sort());
  for (const [name, value] of Object.entries(natsEnv)) expect(variableOf(value)).toBe(name);
  // The apps start only after the topology was provisioned.
  for (const name of ["api-1", "api-2", "sequencer"]) {
    const dependsOn = (compose.services[name]?.depends_on ?? {}) as Record<string, { condition: string }>;
    expect(dependsOn.provision?.condition).toBe("service_completed_successfully");
  }
  expect(compose.services.provision?.command?.join(" ")).toContain("src/cli.ts provision");
  expect(readFileSync(join(root, ".gitignore"), "utf8").split("\n")).toContain(".env");
});

test("the apps expose their ops port only on the compose network, and are probed there", () => {
  for (const name of ["api-1", "api-2", "sequencer"]) {
    const service = compose.services[name] as Service & {
      ports?: string[];
      healthcheck?: { test: string[] };
    };
    expect(service.environment?.OPS_PORT).toBe("9464");
    expect((service.ports ?? []).some((p) => p.includes("9464"))).toBe(false);
    expect(service.healthcheck?.test.join(" ")).toContain("127.0.0.1:9464/readyz");
  }
});

test("the shipped NATS config requires the role users of permissions.ts and keeps monitoring inside", () => {
  const conf = readFileSync(join(root, "deploy/nats.conf"), "utf8");
  expect(conf).toMatch(/^include \.\/nats-auth\.conf$/m);
  expect(conf).toMatch(/^http: 127\.0\.0\.1:8222$/m);
  expect(conf).toMatch(/websocket\s*\{[^}]*same_origin:\s*true/);
  expect(compose.services.nats?.volumes).toContain("./deploy/nats-auth.conf:/etc/nats/nats-auth.conf:ro");
  // deploy/nats-auth.conf is generated: regenerate with `bun src/adapters/nats/permissions.ts > deploy/nats-auth.conf`.
  expect(readFileSync(join(root, "deploy/nats-auth.conf"), "utf8")).toBe(renderAuthorization());
});

test("the API replicas have distinct worker ids and every app waits for a healthy postgres", () => {
  const ids = ["api-1", "api-2"].map((name) => compose.services[name]?.environment?.WORKER_ID);
  expect(ids.every((id) => id !== undefined)).toBe(true);
  expect(new Set(ids).size).toBe(2);
  for (const name of ["api-1", "api-2", "sequencer"]) {
    const service = compose.services[name];
    expect(service?.environment?.NATS_URL).toBe("nats://nats:4222");
    expect(service?.environment?.DATABASE_URL).toStartWith("postgres://");
    const dependsOn = (service?.depends_on ?? {}) as Record<string, { condition: string }>;
    expect(dependsOn.postgres?.condition).toBe("service_healthy");
  }
  expect(compose.services.postgres?.healthcheck).toBeDefined();
});

test("nats runs JetStream on a volume with sync_interval: always", () => {
  const nats = compose.services.nats;
  expect(nats?.command).toEqual(["-c", "/etc/nats/nats.conf"]);
  expect(nats?.volumes).toContain("./deploy/nats.conf:/etc/nats/nats.conf:ro");
  const conf = readFileSync(join(root, "deploy/nats.conf"), "utf8");
  expect(conf).toMatch(/jetstream\s*\{[^}]*store_dir:\s*\/data/);
  expect(conf).toMatch(/sync_interval:\s*always/);
});

test("npm start and every compose app launch the service with the heap-sizing hint (read only at start-up)", () => {
  const [[name, value]] = Object.entries(SERVICE_HEAP_ENV) as [[string, string]];
  const scripts = (
    JSON.parse(readFileSync(join(root, "package.json"), "utf8")) as { scripts: Record<string, string> }
  ).scripts;
  expect(scripts.start).toStartWith(`${name}=${value} bun src/cli.ts serve`);
  for (const service of ["api-1", "api-2", "sequencer"]) {
    expect(compose.services[service]?.environment?.[name]).toBe(value);
  }
});

test("nats-box looks with the reader's rights and inbox; the admin box starts only when its profile is asked for", () => {
  // Without the reader's inbox prefix every JetStream request of the CLI would be refused (its answers could not
  // be received), so the box saves a context with it before anything else.
  const command = (compose.services["nats-box"]?.command ?? []).join(" ");
  expect(command).toContain(`--inbox-prefix ${inboxPrefixOf("reader")} --select`);
  expect(command).toContain('--user "$$NATS_USER" --password "$$NATS_PASSWORD"');
  expect(compose.services["nats-box"]?.profiles).toBeUndefined();
  expect(compose.services["nats-box-admin"]?.profiles).toEqual(["admin"]);
});
