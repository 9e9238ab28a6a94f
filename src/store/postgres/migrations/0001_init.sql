-- Gatehouse schema, version 1 (PostgreSQL): the tables, keys and uniqueness rules of the SQLite
-- schema at its version 3 (sqlite/migrations/0001..0003), in PostgreSQL types. Ids are `uuid`,
-- instants `bigint` milliseconds (revocations: seconds), JSON documents `text` holding the
-- serde_json encoding byte for byte (as in SQLite; `jsonb` would reject \u0000 and reorder keys).
-- identity_provider_links.identity_provider_user_id, the one free-text column results are sorted
-- by, uses the "C" collation: bytewise order as in SQLite, whatever the database's locale.
-- Emails and usernames are lowercased by the gateway (Unicode rules, not the database locale's)
-- into the *_lower columns, as in SQLite, where the per-tenant uniqueness rules apply.

CREATE TABLE tenants (
    id uuid PRIMARY KEY,
    body text NOT NULL
);

CREATE TABLE applications (
    id uuid PRIMARY KEY,
    tenant_id uuid NOT NULL,
    body text NOT NULL
);

CREATE TABLE key_material (
    id uuid PRIMARY KEY,
    algorithm text NOT NULL,
    private_key text,
    secret text,
    insert_instant bigint NOT NULL
);

CREATE TABLE api_keys (
    id uuid PRIMARY KEY,
    key text NOT NULL UNIQUE,
    tenant_id uuid,
    description text
);

-- NULLs are distinct in both UNIQUE constraints: users without email (or username) never clash.
CREATE TABLE users (
    id uuid PRIMARY KEY,
    tenant_id uuid NOT NULL,
    email_lower text,
    username_lower text,
    body text NOT NULL,
    UNIQUE (tenant_id, email_lower),
    UNIQUE (tenant_id, username_lower)
);
CREATE INDEX users_email ON users (email_lower);

CREATE TABLE registrations (
    id uuid PRIMARY KEY,
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    application_id uuid NOT NULL,
    body text NOT NULL,
    UNIQUE (user_id, application_id)
);

-- Looked up by token_hash (SHA-256 of the value, hex); the value is compared in constant time.
CREATE TABLE refresh_tokens (
    id uuid PRIMARY KEY,
    token_hash text NOT NULL UNIQUE,
    token text NOT NULL,
    user_id uuid NOT NULL,
    application_id uuid,
    tenant_id uuid NOT NULL,
    insert_instant bigint NOT NULL,
    start_instant bigint NOT NULL,
    first_issued_instant bigint NOT NULL,
    expiration_instant bigint NOT NULL,
    meta_data text NOT NULL
);
CREATE INDEX refresh_tokens_user ON refresh_tokens (user_id);
CREATE INDEX refresh_tokens_application ON refresh_tokens (application_id);

-- Values replaced by one-time-use rotation, so a late request (on any node) can be told what
-- replaced it, with the access token the rotation issued.
CREATE TABLE rotated_refresh_tokens (
    token_hash text PRIMARY KEY,
    token_id uuid NOT NULL,
    rotated_at bigint NOT NULL,
    access_token text
);
CREATE INDEX rotated_refresh_tokens_token ON rotated_refresh_tokens (token_id);
CREATE INDEX rotated_refresh_tokens_rotated_at ON rotated_refresh_tokens (rotated_at);

CREATE TABLE identity_providers (
    id uuid PRIMARY KEY,
    body text NOT NULL
);

CREATE TABLE identity_provider_links (
    identity_provider_id uuid NOT NULL REFERENCES identity_providers (id) ON DELETE CASCADE,
    identity_provider_user_id text COLLATE "C" NOT NULL,
    user_id uuid NOT NULL,
    body text NOT NULL,
    PRIMARY KEY (identity_provider_id, identity_provider_user_id)
);
CREATE INDEX identity_provider_links_user ON identity_provider_links (user_id);

CREATE TABLE lambdas (
    id uuid PRIMARY KEY,
    body text NOT NULL
);

-- scope: user | application | user_application | session; subject ids as text.
CREATE TABLE revocations (
    scope text NOT NULL,
    first_id text NOT NULL,
    second_id text NOT NULL DEFAULT '',
    instant bigint NOT NULL,
    PRIMARY KEY (scope, first_id, second_id)
);
CREATE INDEX revocations_instant ON revocations (instant);

CREATE TABLE event_logs (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    insert_instant bigint NOT NULL,
    type text NOT NULL,
    message text NOT NULL
);
