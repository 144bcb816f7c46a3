/**
 * Runs once before any test file (bunfig.toml `preload`, so `npm test` and a bare `bun test` behave alike): makes
 * sure the real services the tests start can be had, installing them through the package manager where it may
 * (src/runtime/provision-tools.ts), and says in one line when the Postgres-backed tests fall back to PGlite.
 */
import { delimiter, dirname } from "node:path";
import { ensureNatsServer } from "../../src/runtime/provision-tools.ts";
import { postgresAvailability } from "../../tools/services/local-services.ts";

// `npm run test:unit` sets TEST_TIER=unit: unit tests start no services, so none is looked for or installed, and the
// fast loop also runs where nats-server and PostgreSQL cannot be had.
if (process.env.TEST_TIER !== "unit") provideServices();

function provideServices(): void {
  // Throws one line naming the ways to get nats-server when it cannot be installed: no test could run without it.
  const natsServer = ensureNatsServer();
  // Tests and the processes they spawn find it by name, also when it was just installed outside PATH.
  process.env.PATH = `${dirname(natsServer)}${delimiter}${process.env.PATH ?? ""}`;

  const postgres = postgresAvailability();
  if ("unavailable" in postgres) {
    process.stderr.write(
      `PostgreSQL is not available (${postgres.unavailable}); the Postgres-backed tests run on PGlite served over ` +
        "the wire, and the few that need a real server (killed sessions, restarts under load, two writers) are " +
        "skipped, each saying so.\n",
    );
  }
}
