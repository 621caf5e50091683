-- A family's idle deadline is never later than its absolute one (the store clamps it as it writes
-- it), so the idle deadline alone says when a family dies: the sweep reads its index, and the
-- absolute deadline's index, one more entry to write for every family made (and, on PostgreSQL,
-- for every rotation), goes. Rows written before the clamp are clamped here.
UPDATE refresh_families SET idle_expires_at_ms = absolute_expires_at_ms
    WHERE idle_expires_at_ms > absolute_expires_at_ms;
DROP INDEX refresh_families_by_absolute_deadline;
