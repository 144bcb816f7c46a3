-- previous_id's own unique index is redundant: the check events_previous_id_is_predecessor holds previous_id to
-- sequence_id - 1, and sequence_id is the primary key, so two rows with one previous_id would have one sequence_id
-- and the primary key refuses the second. The index cost every insert a B-tree entry (and its WAL) and
-- 22.6 B/event on disk (docs/storage.md). Dropping it is a catalog change: no rewrite, no scan.
ALTER TABLE "events" DROP CONSTRAINT "events_previous_id_unique";
