-- Authorization codes shared by the servers on this database: issued by one, redeemed at any,
-- exactly once (a conditional update sets `redeemed_jti`). Only SHA-256 digests of codes.
CREATE TABLE codes (
    code_hash BYTEA PRIMARY KEY NOT NULL,
    client_id TEXT NOT NULL,
    subject TEXT NOT NULL,
    redirect_uri TEXT NOT NULL,
    redirect_uri_named BIGINT NOT NULL,
    code_challenge TEXT NOT NULL,
    scope TEXT NOT NULL,
    resource TEXT NOT NULL,
    flow TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    redeemed_jti TEXT
);
CREATE INDEX codes_by_expiry ON codes (expires_at);
