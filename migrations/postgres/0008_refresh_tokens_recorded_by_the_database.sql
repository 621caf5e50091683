-- Every token a family makes current is recorded among its tokens by the database itself, as the
-- family is inserted and as a rotation swaps it. A batch of new families, or a single rotation, is
-- then one statement: atomic by itself, with no transaction around it (one round trip).
CREATE FUNCTION refresh_families_record_current() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO refresh_tokens (token_hash, family_id) VALUES (NEW.current, NEW.family_id);
    RETURN NULL;
END
$$;

CREATE TRIGGER refresh_families_record_first_token AFTER INSERT ON refresh_families
    FOR EACH ROW EXECUTE FUNCTION refresh_families_record_current();

CREATE TRIGGER refresh_families_record_next_token AFTER UPDATE OF current ON refresh_families
    FOR EACH ROW EXECUTE FUNCTION refresh_families_record_current();
