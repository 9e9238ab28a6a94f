-- Gatehouse schema, version 1 (SQLite).
CREATE TABLE tenants (
    id TEXT PRIMARY KEY,
    body TEXT NOT NULL
);

CREATE TABLE applications (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    body TEXT NOT NULL
);

CREATE TABLE key_material (
    id TEXT PRIMARY KEY,
    algorithm TEXT NOT NULL,
    private_key TEXT,
    secret TEXT,
    insert_instant INTEGER NOT NULL
);

CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    key TEXT NOT NULL UNIQUE,
    tenant_id TEXT,
    description TEXT
);

CREATE TABLE users (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    email_lower TEXT,
    username_lower TEXT,
    body TEXT NOT NULL,
    UNIQUE (tenant_id, email_lower),
    UNIQUE (tenant_id, username_lower)
);

CREATE TABLE registrations (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    application_id TEXT NOT NULL,
    body TEXT NOT NULL,
    UNIQUE (user_id, application_id)
);

CREATE TABLE refresh_tokens (
    id TEXT PRIMARY KEY,
    token_hash TEXT NOT NULL UNIQUE,
    token TEXT NOT NULL,
    user_id TEXT NOT NULL,
    application_id TEXT,
    tenant_id TEXT NOT NULL,
    insert_instant INTEGER NOT NULL,
    start_instant INTEGER NOT NULL,
    first_issued_instant INTEGER NOT NULL,
    expiration_instant INTEGER NOT NULL,
    meta_data TEXT NOT NULL
);
CREATE INDEX refresh_tokens_user ON refresh_tokens (user_id);
CREATE INDEX refresh_tokens_application ON refresh_tokens (application_id);

-- Values replaced by one-time-use rotation, so a late request can be told what replaced it.
CREATE TABLE rotated_refresh_tokens (
    token_hash TEXT PRIMARY KEY,
    token_id TEXT NOT NULL,
    rotated_at INTEGER NOT NULL
);
CREATE INDEX rotated_refresh_tokens_token ON rotated_refresh_tokens (token_id);

CREATE TABLE identity_providers (
    id TEXT PRIMARY KEY,
    body TEXT NOT NULL
);

CREATE TABLE identity_provider_links (
    identity_provider_id TEXT NOT NULL REFERENCES identity_providers (id) ON DELETE CASCADE,
    identity_provider_user_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (identity_provider_id, identity_provider_user_id)
);
CREATE INDEX identity_provider_links_user ON identity_provider_links (user_id);

CREATE TABLE event_logs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    insert_instant INTEGER NOT NULL,
    type TEXT NOT NULL,
    message TEXT NOT NULL
);
