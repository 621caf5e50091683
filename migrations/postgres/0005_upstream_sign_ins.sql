-- Sign-ins in progress at upstream identity providers, shared by the servers on this database
-- (by the digest of their `state`, bound to a session's digest, taken once).
CREATE TABLE upstream_sign_ins (
    state_hash BYTEA PRIMARY KEY NOT NULL,
    provider TEXT NOT NULL,
    session_key BYTEA NOT NULL,
    request_id TEXT NOT NULL,
    nonce TEXT NOT NULL,
    verifier TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
