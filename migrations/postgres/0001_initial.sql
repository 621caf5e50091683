-- The authorization server's durable state on PostgreSQL: the same tables as the SQLite store
-- (migrations/sqlite/, 0001 to 0005, in one step). Timestamps are Unix seconds, refresh-family
-- times Unix milliseconds; lists are JSON arrays in text columns, digests and sealed keys bytea.

CREATE TABLE clients (
    client_id TEXT PRIMARY KEY NOT NULL,
    secret_sha256 BYTEA,
    client_name TEXT,
    redirect_uris TEXT NOT NULL,
    grant_types TEXT NOT NULL,
    response_types TEXT NOT NULL,
    token_endpoint_auth_method TEXT NOT NULL,
    scope TEXT,
    client_uri TEXT,
    issued_at BIGINT NOT NULL,
    used BIGINT NOT NULL DEFAULT 0,
    application_type TEXT NOT NULL DEFAULT 'native',
    jwks TEXT
);

CREATE TABLE consents (
    subject TEXT NOT NULL,
    client_id TEXT NOT NULL,
    scope TEXT NOT NULL,
    resources TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    approvals TEXT NOT NULL DEFAULT '[]',
    PRIMARY KEY (subject, client_id)
);
CREATE INDEX consents_by_expiry ON consents (expires_at);

CREATE TABLE revocations (
    jti TEXT PRIMARY KEY NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX revocations_by_expiry ON revocations (expires_at);

CREATE TABLE users (
    username TEXT PRIMARY KEY NOT NULL,
    display_name TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    disabled BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE signing_keys (
    kid TEXT PRIMARY KEY NOT NULL,
    encrypted_key BYTEA NOT NULL,
    created_at BIGINT NOT NULL,
    activates_at BIGINT NOT NULL,
    retired_at BIGINT,
    removes_at BIGINT
);

CREATE TABLE refresh_families (
    family_id TEXT PRIMARY KEY NOT NULL,
    client_id TEXT NOT NULL,
    subject TEXT NOT NULL,
    scope TEXT NOT NULL,
    resource TEXT NOT NULL,
    flow TEXT NOT NULL,
    origin_jti TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    absolute_expires_at_ms BIGINT NOT NULL,
    idle_expires_at_ms BIGINT NOT NULL,
    generation BIGINT NOT NULL,
    current BYTEA NOT NULL,
    previous BYTEA,
    rotated_at_ms BIGINT,
    salt BYTEA
);

CREATE TABLE refresh_tokens (
    token_hash BYTEA PRIMARY KEY NOT NULL,
    family_id TEXT NOT NULL REFERENCES refresh_families (family_id) ON DELETE CASCADE
);
CREATE INDEX refresh_tokens_by_family ON refresh_tokens (family_id);

CREATE TABLE changes (
    id BIGSERIAL PRIMARY KEY,
    kind TEXT NOT NULL,
    subject TEXT,
    client_id TEXT,
    at BIGINT NOT NULL
);
