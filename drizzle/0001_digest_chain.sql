-- The digest chain (src/app/log-digest.ts): digest_N = sha256(digest_{N-1} || convert_to(payload_N, 'UTF8')),
-- digest_0 = 32 zero bytes. Added nullable, filled in for the rows already stored (in sequence order, by a
-- recursive walk from sequence_id 1), then made NOT NULL. A log with a hole cannot be chained past it: the rows
-- after the hole keep a NULL digest and SET NOT NULL fails the migration, which is the right answer for a log
-- that breaks G3 (`sequencer inspect` names the hole).
ALTER TABLE "events" ADD COLUMN "digest" "bytea";--> statement-breakpoint
WITH RECURSIVE "chain" ("sequence_id", "digest") AS (
	SELECT "sequence_id", sha256(decode(repeat('00', 32), 'hex') || convert_to("payload", 'UTF8'))
	FROM "events" WHERE "sequence_id" = 1
	UNION ALL
	SELECT "e"."sequence_id", sha256("chain"."digest" || convert_to("e"."payload", 'UTF8'))
	FROM "chain" JOIN "events" AS "e" ON "e"."sequence_id" = "chain"."sequence_id" + 1
)
UPDATE "events" SET "digest" = "chain"."digest" FROM "chain" WHERE "events"."sequence_id" = "chain"."sequence_id";--> statement-breakpoint
ALTER TABLE "events" ALTER COLUMN "digest" SET NOT NULL;--> statement-breakpoint
ALTER TABLE "events" ADD CONSTRAINT "events_digest_is_sha256" CHECK (octet_length("events"."digest") = 32);
