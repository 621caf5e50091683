-- The refresh-token actor keeps only the families used lately and asks the store for the others:
-- by user (and client), by client, by the code's first access token, and by deadline.
CREATE INDEX refresh_families_by_subject ON refresh_families (subject, client_id);
CREATE INDEX refresh_families_by_client ON refresh_families (client_id);
CREATE INDEX refresh_families_by_origin ON refresh_families (origin_jti);
CREATE INDEX refresh_families_by_idle_deadline ON refresh_families (idle_expires_at_ms);
CREATE INDEX refresh_families_by_absolute_deadline ON refresh_families (absolute_expires_at_ms);
