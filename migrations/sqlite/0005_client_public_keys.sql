-- A client that authenticates with private_key_jwt registers its public keys (a JWKS, as JSON
-- text); its client assertions are verified with them. Other clients have none.
ALTER TABLE clients ADD COLUMN jwks TEXT;
