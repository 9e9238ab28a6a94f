-- Gatehouse schema, version 2 (SQLite): lambdas and edge revocations.
CREATE TABLE lambdas (
    id TEXT PRIMARY KEY,
    body TEXT NOT NULL
);

-- scope: user | application | user_application | session; subject ids as text.
CREATE TABLE revocations (
    scope TEXT NOT NULL,
    first_id TEXT NOT NULL,
    second_id TEXT NOT NULL DEFAULT '',
    instant INTEGER NOT NULL,
    PRIMARY KEY (scope, first_id, second_id)
);
CREATE INDEX revocations_instant ON revocations (instant);
