/** A PostgreSQL table lock held by a test, in a transaction of its own, until released. */
import type postgres from "postgres";

export type HeldLock = { release(): Promise<void> };

/**
 * Locks `table` in `mode` and resolves once the lock is granted. SHARE blocks INSERT and lets SELECT through;
 * ACCESS EXCLUSIVE blocks both. release() ends the transaction (safe to call more than once).
 */
export async function holdTableLock(
  sql: postgres.Sql,
  table: string,
  mode: "share" | "access exclusive",
): Promise<HeldLock> {
  let release = () => {};
  const released = new Promise<void>((resolve) => {
    release = resolve;
  });
  let locked = () => {};
  const isLocked = new Promise<void>((resolve) => {
    locked = resolve;
  });
  const holder = sql.begin(async (tx) => {
    await tx.unsafe(`lock table ${table} in ${mode} mode`);
    locked();
    await released;
  });
  await Promise.race([isLocked, holder]);
  return {
    release: async () => {
      release();
      await holder;
    },
  };
}
