-- Gatehouse schema, version 6 (SQLite): the browser login's shared state. The key that signs
-- the login-state cookie (one row, created by the first gateway that needs it), and the login
-- states already completed (a digest each, until it expires), so that a callback is accepted
-- once, whichever gateway it reaches.
CREATE TABLE login_state_keys (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    secret TEXT NOT NULL,
    insert_instant INTEGER NOT NULL
);
CREATE TABLE login_states_used (
    state TEXT PRIMARY KEY,
    expires INTEGER NOT NULL
);
CREATE INDEX login_states_used_expires ON login_states_used (expires);
