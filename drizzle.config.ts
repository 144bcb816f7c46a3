import { defineConfig } from "drizzle-kit";

// drizzle-kit generate only reads the schema; it never connects. Migrations are applied by the service itself
// at start-up (Database.migrate in src/adapters/db/client.ts), under an advisory lock.
export default defineConfig({
  dialect: "postgresql",
  schema: "./src/adapters/db/schema.ts",
  out: "./drizzle",
});
