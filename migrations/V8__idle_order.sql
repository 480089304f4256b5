-- The offer order (SPEC §12.5): longest idle first. `idle_rank` is when the mitra last became
-- idle — came online (offline -> online), or a session of its started (accepted or paid) or
-- ended — in whole milliseconds since the epoch, plus a random fraction below 0.99 drawn at
-- that moment (the tie-break). The online toggle and every capacity recount write it, in the
-- recount's order (capacity_seq); the mirror keeps the same number as the score of
-- `mitras:idle_order`, so both stores order alike.
--
-- Additive and safe on a live database:
-- * the column comes with a non-volatile default, so adding it rewrites nothing (the value is
--   kept in the catalogue): every existing row ranks as idle since this migration, ties broken
--   by mitra id, until its next toggle or session;
-- * the waits for locks are bounded (a long transaction makes the migration fail and be retried
--   rather than queue every write behind it);
-- * both indexes are built inside the migration's transaction, which holds off writes to their
--   table while it runs (a few hundred milliseconds for 100k mitras). On a large chat_sessions
--   table create the second one first, without blocking writes, under the same name:
--     CREATE INDEX CONCURRENTLY IF NOT EXISTS chat_sessions_activity_by_mitra
--         ON chat_sessions (mitra_id, (coalesce(ended_at, accepted_at)))
--         WHERE accepted_at IS NOT NULL;
--   then this migration finds it and goes on.
SET LOCAL lock_timeout = '5s';

ALTER TABLE mitra_online_status
    ADD COLUMN idle_rank double precision NOT NULL
        DEFAULT floor(extract(epoch FROM now()) * 1000)::float8;

-- The Postgres fallback of an offer round walks the online mitras in this order and stops
-- after the first that pass the rules: its cost follows the round's size, not the fleet's.
CREATE INDEX IF NOT EXISTS mitra_online_status_idle_order
    ON mitra_online_status (idle_rank, mitra_id) WHERE is_online;

-- The recount's "latest start or end of the mitra's sessions": one index probe, however long
-- its history (the newest of the two is the end when there is one).
CREATE INDEX IF NOT EXISTS chat_sessions_activity_by_mitra
    ON chat_sessions (mitra_id, (coalesce(ended_at, accepted_at)))
    WHERE accepted_at IS NOT NULL;
