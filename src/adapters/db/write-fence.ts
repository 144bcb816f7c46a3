/**
 * A condition the write itself checks: `holds` is a SQL boolean evaluated inside the same statement as the
 * inserts, and when it is false nothing is written and `refused()` gives the error to throw. The writer lease
 * (writer-lease.ts) makes one; the event store (event-store.ts) runs it inside each append. Here so that neither
 * of the two depends on the other.
 */
import type { SQL } from "drizzle-orm";

export type WriteFence = { holds: SQL; refused(): Error };
