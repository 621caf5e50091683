-- Authorization codes, kept in the store when several servers share it (PostgreSQL): a code
-- issued by one server is redeemed at another, exactly once. Only the SHA-256 digest of a code is
-- kept; `redeemed_jti` is set by the one redemption that consumed it (the access token it
-- produced), remembered until the code's expiry for replay detection. The embedded store does not
-- use the table (its codes live in the actor); it exists so that both backends have one schema.
CREATE TABLE codes (
    code_hash BLOB PRIMARY KEY NOT NULL,
    client_id TEXT NOT NULL,
    subject TEXT NOT NULL,
    redirect_uri TEXT NOT NULL,
    redirect_uri_named INTEGER NOT NULL,
    code_challenge TEXT NOT NULL,
    scope TEXT NOT NULL,
    resource TEXT NOT NULL,
    flow TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    redeemed_jti TEXT
) STRICT;
CREATE INDEX codes_by_expiry ON codes (expires_at);
