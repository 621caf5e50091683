-- Failed logins per account, counted in the store when several servers share it (PostgreSQL),
-- so that a lockout holds at every server: N servers do not give an attacker N times the guesses.
-- The account is an HMAC of the typed name (people type passwords into the name field), keyed by
-- the servers' shared session secret. The embedded store counts in memory and leaves this table
-- empty; it exists so that both backends have one schema.
CREATE TABLE login_failures (
    account BLOB PRIMARY KEY NOT NULL,
    failures INTEGER NOT NULL,
    window_ends INTEGER NOT NULL
) STRICT;
