-- Gatehouse schema, version 2 (PostgreSQL): the access token of a rotation lives in a table of
-- its own until `until` (the race window or the grace period, and a margin), then is deleted.
CREATE TABLE rotation_outcomes (
    token_hash text PRIMARY KEY,
    access_token text NOT NULL,
    until bigint NOT NULL
);
CREATE INDEX rotation_outcomes_until ON rotation_outcomes (until);
UPDATE rotated_refresh_tokens SET access_token = NULL;
