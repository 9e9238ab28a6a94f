-- Gatehouse schema, version 4 (SQLite): the access token of a rotation is kept only until
-- `outcome_until` (the grace period and a margin), then cleared in the background; retired
-- values are pruned in the background by age, through an index, never by a scan on the
-- request path.
ALTER TABLE rotated_refresh_tokens ADD COLUMN outcome_until INTEGER;
CREATE INDEX rotated_refresh_tokens_rotated_at ON rotated_refresh_tokens (rotated_at);
CREATE INDEX rotated_refresh_tokens_outcome ON rotated_refresh_tokens (outcome_until)
    WHERE access_token IS NOT NULL;
