-- Offer rounds, missed offers and the waiting line (SPEC §12.6–§12.8).
--
-- A blast now offers the session in rounds: each notification row is one mitra's offer of one
-- round, open until its `expires_at` (NULL on rows written before this migration: the blast's
-- own deadline). When a round ends unanswered its open offers are marked `expired`, the
-- session's `offer_round` goes up and the next candidates get new rows; `next_round_at` is
-- when the timer sweep starts the next round (NULL: the current round lasts until the blast
-- times out).
--
-- A request nobody can take may wait in line (`queued`, FIFO by `created_at`). When it leaves
-- the line its search starts: `searching_since` is set then, and the blast timeout counts from
-- it (NULL: the search started when the session was created). Only sessions that waited have
-- it, which also makes it the sample of recent waits the estimate is drawn from.
--
-- `mitras.missed_offers` counts the offers in a row a mitra let expire; any answer resets it.
--
-- The CHECK constraints are replaced NOT VALID and then validated. Inside this migration's
-- transaction the DROP's exclusive lock is held to the end anyway; the check of existing rows
-- is a single scan of each table.

ALTER TABLE chat_sessions DROP CONSTRAINT chat_sessions_status_check;
ALTER TABLE chat_sessions ADD CONSTRAINT chat_sessions_status_check CHECK (status IN
    ('queued', 'searching', 'pending_payment', 'active', 'ended', 'failed', 'cancelled')) NOT VALID;
ALTER TABLE chat_sessions VALIDATE CONSTRAINT chat_sessions_status_check;

ALTER TABLE chat_sessions
    ADD COLUMN searching_since timestamptz,
    ADD COLUMN offer_round integer NOT NULL DEFAULT 1,
    ADD COLUMN next_round_at timestamptz;

-- The timer sweep's next rounds.
CREATE INDEX chat_sessions_next_round ON chat_sessions (next_round_at)
    WHERE status = 'searching' AND next_round_at IS NOT NULL;
-- The line, oldest first (also its timeout's scan).
CREATE INDEX chat_sessions_queue ON chat_sessions (created_at, id) WHERE status = 'queued';
-- The recent waits the estimate averages.
CREATE INDEX chat_sessions_recent_waits ON chat_sessions (searching_since)
    WHERE searching_since IS NOT NULL;

ALTER TABLE chat_request_notifications DROP CONSTRAINT chat_request_notifications_response_check;
ALTER TABLE chat_request_notifications ADD CONSTRAINT chat_request_notifications_response_check
    CHECK (response IN ('accepted', 'rejected', 'expired')) NOT VALID;
ALTER TABLE chat_request_notifications VALIDATE CONSTRAINT chat_request_notifications_response_check;
ALTER TABLE chat_request_notifications ADD COLUMN expires_at timestamptz;

ALTER TABLE mitras ADD COLUMN missed_offers integer NOT NULL DEFAULT 0;

-- `away`: a mitra set offline by the system (reason `missed_offers`); `session` events of a
-- queued session carry its place in line and the estimate.
ALTER TABLE app_events DROP CONSTRAINT app_events_kind_check;
ALTER TABLE app_events ADD CONSTRAINT app_events_kind_check
    CHECK (kind IN ('offer', 'offer_withdrawn', 'session', 'away')) NOT VALID;
ALTER TABLE app_events VALIDATE CONSTRAINT app_events_kind_check;
ALTER TABLE app_events
    ADD COLUMN queue_position integer,
    ADD COLUMN estimated_wait_seconds integer;
-- `away` is about the mitra, not a session.
ALTER TABLE app_events ALTER COLUMN session_id DROP NOT NULL;
