-- Browser sessions and parked authorization requests shared by the servers on this database
-- (digests of session ids only; a renewed id's successor is an HMAC of the old id under `salt`).
CREATE TABLE sessions (
    session_key BYTEA PRIMARY KEY NOT NULL,
    csrf TEXT NOT NULL,
    subject TEXT,
    display_name TEXT,
    expires_at BIGINT NOT NULL
);
CREATE INDEX sessions_by_subject ON sessions (subject);

CREATE TABLE parked_requests (
    request_id TEXT PRIMARY KEY NOT NULL,
    session_key BYTEA NOT NULL,
    request TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX parked_requests_by_session ON parked_requests (session_key);

CREATE TABLE renewed_sessions (
    old_key BYTEA PRIMARY KEY NOT NULL,
    salt BYTEA NOT NULL,
    subject TEXT NOT NULL,
    until BIGINT NOT NULL
);
