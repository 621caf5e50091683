-- Every token a family makes current is recorded among its tokens by the database itself, as the
-- family is inserted and as a rotation swaps it. A batch of new families, or of rotations, is then
-- one statement: atomic by itself, with no transaction around it.
CREATE TRIGGER refresh_families_record_first_token AFTER INSERT ON refresh_families
BEGIN
    INSERT INTO refresh_tokens (token_hash, family_id) VALUES (NEW.current, NEW.family_id);
END;

CREATE TRIGGER refresh_families_record_next_token AFTER UPDATE OF current ON refresh_families
BEGIN
    INSERT INTO refresh_tokens (token_hash, family_id) VALUES (NEW.current, NEW.family_id);
END;
