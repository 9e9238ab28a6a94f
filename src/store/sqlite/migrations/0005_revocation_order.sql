-- Gatehouse schema, version 5 (SQLite): each revocation row carries the order in which it was
-- (last) written, so readers poll by that order instead of by the writer's clock: a
-- revocation whose commit was delayed is still read.
ALTER TABLE revocations ADD COLUMN seq INTEGER NOT NULL DEFAULT 0;
UPDATE revocations SET seq = rowid;
CREATE INDEX revocations_seq ON revocations (seq);
