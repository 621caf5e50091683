-- Browser sessions of the pages and the authorization requests parked in them, kept in the store
-- when several servers share it (PostgreSQL), so that any server can go on with a browser's
-- sign-in. Session ids are kept only as SHA-256 digests. A replaced session id leads to its
-- successor for a few seconds (a double-clicked "Sign in"): the successor is an HMAC of the old
-- id under `salt`, so it is never stored either. The embedded store keeps these in the actor and
-- leaves the tables empty; they exist so that both backends have one schema.
CREATE TABLE sessions (
    session_key BLOB PRIMARY KEY NOT NULL,
    csrf TEXT NOT NULL,
    subject TEXT,
    display_name TEXT,
    expires_at INTEGER NOT NULL
) STRICT;
CREATE INDEX sessions_by_subject ON sessions (subject);

CREATE TABLE parked_requests (
    request_id TEXT PRIMARY KEY NOT NULL,
    session_key BLOB NOT NULL,
    request TEXT NOT NULL,
    expires_at INTEGER NOT NULL
) STRICT;
CREATE INDEX parked_requests_by_session ON parked_requests (session_key);

CREATE TABLE renewed_sessions (
    old_key BLOB PRIMARY KEY NOT NULL,
    salt BLOB NOT NULL,
    subject TEXT NOT NULL,
    until INTEGER NOT NULL
) STRICT;
