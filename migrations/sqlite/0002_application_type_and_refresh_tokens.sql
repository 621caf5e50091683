-- Registered clients keep their application type (OpenID DCR); clients stored before it existed
-- were accepted under the rules of native clients.
ALTER TABLE clients ADD COLUMN application_type TEXT NOT NULL DEFAULT 'native';

-- Refresh-token families (OAuth 2.1 section 4.3). Only SHA-256 digests of tokens are kept.
-- Times are Unix milliseconds.
CREATE TABLE refresh_families (
    family_id TEXT PRIMARY KEY NOT NULL,
    client_id TEXT NOT NULL,
    subject TEXT NOT NULL,
    scope TEXT NOT NULL,
    resource TEXT NOT NULL,
    flow TEXT NOT NULL,
    origin_jti TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    absolute_expires_at_ms INTEGER NOT NULL,
    idle_expires_at_ms INTEGER NOT NULL,
    generation INTEGER NOT NULL,
    current BLOB NOT NULL,
    previous BLOB,
    rotated_at_ms INTEGER,
    salt BLOB
) STRICT;

-- Every token a family ever issued, current and retired: a retired one presented again is reuse.
CREATE TABLE refresh_tokens (
    token_hash BLOB PRIMARY KEY NOT NULL,
    family_id TEXT NOT NULL REFERENCES refresh_families (family_id) ON DELETE CASCADE
) STRICT;
CREATE INDEX refresh_tokens_by_family ON refresh_tokens (family_id);
