-- A consent is bound to the redirect URIs the user saw on the consent page (RFC 8252 section 8.6):
-- a remembered consent is used again only for one of them. Consents stored before this column
-- existed name none, so their users are asked once more.
ALTER TABLE consents ADD COLUMN redirect_uris TEXT NOT NULL DEFAULT '[]';
