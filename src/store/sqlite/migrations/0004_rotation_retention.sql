-- Gatehouse schema, version 4 (SQLite): the access token of a rotation lives in a table of its
-- own until `until` (the race window or the grace period, and a margin), and is deleted then,
-- so its space is reused; retired values (small rows) are pruned in the background by age,
-- through an index, never by a scan on the request path.
CREATE TABLE rotation_outcomes (
    token_hash TEXT PRIMARY KEY,
    access_token TEXT NOT NULL,
    until INTEGER NOT NULL
);
CREATE INDEX rotation_outcomes_until ON rotation_outcomes (until);
CREATE INDEX rotated_refresh_tokens_rotated_at ON rotated_refresh_tokens (rotated_at);
UPDATE rotated_refresh_tokens SET access_token = NULL;
