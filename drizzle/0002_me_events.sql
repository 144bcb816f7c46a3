-- GET /me/events: whom an event concerns is its user_id (the sender of a transfer) and, for a transfer, its
-- recipient, now a column (filled in below for the transfers already stored) so both sides are index ranges.
ALTER TABLE "events" ADD COLUMN "counterparty_id" bigint;--> statement-breakpoint
UPDATE "events" SET "counterparty_id" = ("payload"::json->>'toUserId')::bigint WHERE "type" = 'TRANSFER';--> statement-breakpoint
CREATE INDEX "events_user_id_sequence_id_idx" ON "events" USING btree ("user_id","sequence_id");--> statement-breakpoint
CREATE INDEX "events_counterparty_id_sequence_id_idx" ON "events" USING btree ("counterparty_id","sequence_id") WHERE "events"."counterparty_id" is not null;