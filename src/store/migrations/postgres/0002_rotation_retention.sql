-- Gatehouse schema, version 2 (PostgreSQL): the access token of a rotation is kept only until
-- `outcome_until` (the grace period and a margin), then cleared in the background.
ALTER TABLE rotated_refresh_tokens ADD COLUMN outcome_until BIGINT;
CREATE INDEX rotated_refresh_tokens_outcome ON rotated_refresh_tokens (outcome_until)
    WHERE access_token IS NOT NULL;
