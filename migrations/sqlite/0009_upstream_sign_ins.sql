-- Sign-ins in progress at upstream identity providers, kept in the store when several servers
-- share it (PostgreSQL), so that the provider's redirect back may reach any server. Keyed by the
-- SHA-256 digest of the `state`; bound to the browser session (its id's digest) that started
-- it; taken once by a conditional delete. The embedded store keeps them in the actor.
CREATE TABLE upstream_sign_ins (
    state_hash BLOB PRIMARY KEY NOT NULL,
    provider TEXT NOT NULL,
    session_key BLOB NOT NULL,
    request_id TEXT NOT NULL,
    nonce TEXT NOT NULL,
    verifier TEXT NOT NULL,
    expires_at INTEGER NOT NULL
) STRICT;
