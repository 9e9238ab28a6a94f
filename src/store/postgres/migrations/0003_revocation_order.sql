-- Gatehouse schema, version 3 (PostgreSQL): each revocation row carries the id of the
-- transaction that (last) wrote it, so readers poll by transaction visibility (rows written by
-- transactions at or after their previous snapshot's xmin) instead of by the writer's clock:
-- a revocation whose commit was delayed is still read.
ALTER TABLE revocations ADD COLUMN xact xid8 NOT NULL DEFAULT pg_current_xact_id();
CREATE INDEX revocations_xact ON revocations (xact);
