-- Failed logins per account, shared by the servers on this database (an HMAC of the typed name
-- under the shared session secret; never the name itself).
CREATE TABLE login_failures (
    account BYTEA PRIMARY KEY NOT NULL,
    failures BIGINT NOT NULL,
    window_ends BIGINT NOT NULL
);
