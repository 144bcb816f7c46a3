/**
 * compose.yaml is not run here (no Docker engine), so its promises are checked as data: the services the README
 * names, distinct worker ids for the API replicas, a healthy Postgres before the apps start, and a NATS config
 * that fsyncs every write. (`docker-compose config -q` validates it against the Compose schema where installed.)
 */
import { expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { SERVICE_HEAP_ENV } from "../../src/runtime/heap-sizing.ts";

type Service = {
  image?: string;
  command?: string[];
  environment?: Record<string, string>;
  depends_on?: Record<string, { condition: string }> | string[];
  healthcheck?: unknown;
  volumes?: string[];
};

const root = join(import.meta.dir, "../..");
const compose = Bun.YAML.parse(readFileSync(join(root, "compose.yaml"), "utf8")) as {
  services: Record<string, Service>;
};

test("compose.yaml has nats, nats-box, postgres, a sequencer and two API replicas", () => {
  expect(Object.keys(compose.services).sort()).toEqual([
    "api-1",
    "api-2",
    "nats",
    "nats-box",
    "postgres",
    "sequencer",
  ]);
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
