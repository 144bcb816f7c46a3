CREATE TABLE "events" (
	"sequence_id" bigint PRIMARY KEY NOT NULL,
	"previous_id" bigint NOT NULL,
	"reference_id" bigint NOT NULL,
	"type" text NOT NULL,
	"user_id" bigint NOT NULL,
	"payload" text NOT NULL,
	"idempotency_key" text,
	"created_at" timestamp with time zone NOT NULL,
	"sequenced_at" timestamp with time zone NOT NULL,
	CONSTRAINT "events_previous_id_unique" UNIQUE("previous_id"),
	CONSTRAINT "events_reference_id_unique" UNIQUE("reference_id"),
	CONSTRAINT "events_idempotency_key_unique" UNIQUE("idempotency_key"),
	CONSTRAINT "events_sequence_id_positive" CHECK ("events"."sequence_id" > 0),
	CONSTRAINT "events_previous_id_is_predecessor" CHECK ("events"."previous_id" = "events"."sequence_id" - 1)
);
--> statement-breakpoint
CREATE TABLE "rejected_messages" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"stream_seq" bigint NOT NULL,
	"subject" text NOT NULL,
	"reason" text NOT NULL,
	"data" text NOT NULL,
	"received_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "rejected_messages_stream_seq_unique" UNIQUE("stream_seq")
);
--> statement-breakpoint
CREATE INDEX "rejected_messages_received_at_idx" ON "rejected_messages" USING btree ("received_at");