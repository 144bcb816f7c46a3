/**
 * Baseline (b), the "just Postgres" design a user might pick instead: an Elysia handler that INSERTs each order
 * into a table whose bigserial gives the order its number, and answers 202 with it. One statement (one implicit
 * transaction) per request over a pool of 10 connections (postgres.js default, the same size as the service's).
 * Env: PORT, DATABASE_URL (a fresh database: the table is created here).
 */
import { Elysia } from "elysia";
import postgres from "postgres";
import { exitWithParent, fail, requireEnv } from "./common.ts";

type Order = { direction: string; price: string; quantity: string };

async function main(): Promise<void> {
  exitWithParent();
  const sql = postgres(requireEnv("DATABASE_URL"), { max: 10, onnotice: () => {} });
  await sql`
    create table if not exists orders (
      id bigserial primary key,
      user_id bigint not null,
      direction text not null,
      price numeric not null,
      quantity numeric not null,
      created_at timestamptz not null default now()
    )`;

  const app = new Elysia()
    .get("/healthz", () => ({ status: "ok" }))
    .post("/orders", async ({ body, set }) => {
      const order = body as Order;
      const [row] = await sql<{ id: string }[]>`
        insert into orders (user_id, direction, price, quantity)
        values (1, ${order.direction}, ${order.price}, ${order.quantity})
        returning id::text as id`;
      set.status = 202;
      return { orderId: row?.id };
    })
    .listen({ port: Number(requireEnv("PORT")), hostname: "127.0.0.1" });

  const stop = async () => {
    await app.stop();
    await sql.end({ timeout: 5 });
    process.exit(0);
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

main().catch((error) => fail("just-postgres baseline", error));
