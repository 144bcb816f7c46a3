CREATE TABLE "writer_lease" (
	"name" text PRIMARY KEY NOT NULL,
	"holder" text NOT NULL,
	"backend_pid" integer NOT NULL,
	"term" bigint NOT NULL,
	"renewed_at" timestamp with time zone NOT NULL,
	"expires_at" timestamp with time zone NOT NULL
);
