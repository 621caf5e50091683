-- A consent is bound to the redirect URIs the user saw on the consent page (RFC 8252 section 8.6):
-- a JSON list of {"redirect_uri", "scope", "resources"}, one per approved redirect URI, each with
-- what was approved for it. A remembered consent is used again only for one of them, within what
-- was approved for it. Consents stored before this column existed name none, so their users are
-- asked once more.
ALTER TABLE consents ADD COLUMN approvals TEXT NOT NULL DEFAULT '[]';
