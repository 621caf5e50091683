-- The authorization server's durable state. Timestamps are Unix seconds; lists are JSON arrays.

CREATE TABLE clients (
    client_id TEXT PRIMARY KEY NOT NULL,
    secret_sha256 BLOB,
    client_name TEXT,
    redirect_uris TEXT NOT NULL,
    grant_types TEXT NOT NULL,
    response_types TEXT NOT NULL,
    token_endpoint_auth_method TEXT NOT NULL,
    scope TEXT,
    client_uri TEXT,
    issued_at INTEGER NOT NULL,
    used INTEGER NOT NULL DEFAULT 0
) STRICT;

CREATE TABLE consents (
    subject TEXT NOT NULL,
    client_id TEXT NOT NULL,
    scope TEXT NOT NULL,
    resources TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (subject, client_id)
) STRICT;
CREATE INDEX consents_by_expiry ON consents (expires_at);

CREATE TABLE revocations (
    jti TEXT PRIMARY KEY NOT NULL,
    expires_at INTEGER NOT NULL
) STRICT;
CREATE INDEX revocations_by_expiry ON revocations (expires_at);

CREATE TABLE users (
    username TEXT PRIMARY KEY NOT NULL,
    display_name TEXT NOT NULL,
    password_hash TEXT NOT NULL
) STRICT;

CREATE TABLE signing_keys (
    kid TEXT PRIMARY KEY NOT NULL,
    encrypted_key BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    activates_at INTEGER NOT NULL,
    retired_at INTEGER,
    removes_at INTEGER
) STRICT;
