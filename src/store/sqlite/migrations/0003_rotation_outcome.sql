-- Gatehouse schema, version 3 (SQLite): the access token issued by a one-time-use rotation is
-- kept with the retired value, so a late request inside the grace period gets the same pair.
ALTER TABLE rotated_refresh_tokens ADD COLUMN access_token TEXT;
