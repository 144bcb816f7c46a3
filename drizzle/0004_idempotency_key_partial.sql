-- idempotency_key: a partial unique index over the rows that carry a key, instead of the UNIQUE constraint's full
-- index, which held an entry for every row although most have no key (docs/storage.md). Uniqueness among non-NULL
-- keys is unchanged (NULLs never conflicted), the name stays, and every lookup by key (= $1, = any($1)) implies
-- NOT NULL, so the planner uses it. Dropped and created in the migration's one transaction: the build reads the
-- table once and blocks writes to it meanwhile.
ALTER TABLE "events" DROP CONSTRAINT "events_idempotency_key_unique";--> statement-breakpoint
CREATE UNIQUE INDEX "events_idempotency_key_unique" ON "events" USING btree ("idempotency_key") WHERE "events"."idempotency_key" is not null;