-- A user can be disabled without being deleted (`mcp-oauth admin users disable`): a disabled user
-- cannot sign in. Users imported from a users file are enabled.
ALTER TABLE users ADD COLUMN disabled INTEGER NOT NULL DEFAULT 0;

-- Changes another process made to the store (`mcp-oauth admin`), in order. A running server reads
-- the ones after its cursor about every quarter second and applies each to its actors (forget a
-- deleted client, end a revoked grant's refresh families and access tokens, reload the users or
-- the signing keys), so that an operator's change takes effect within a second. Rows older than
-- a day are pruned: a server that was down then reloads everything at its start anyway.
CREATE TABLE changes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    subject TEXT,
    client_id TEXT,
    at INTEGER NOT NULL
) STRICT;
