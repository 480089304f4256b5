-- The customers' `availability` event (SPEC §12.9): one row, to every customer (empty
-- `recipients`), each time the number of available mitras goes from zero to non-zero or back.
-- `available_count` is the count the change was seen with. Only the newest such row matters
-- (to tell a change, and for a stream's first state): the partial index finds it at once.
ALTER TABLE app_events DROP CONSTRAINT app_events_kind_check;
ALTER TABLE app_events ADD CONSTRAINT app_events_kind_check
    CHECK (kind IN ('offer', 'offer_withdrawn', 'session', 'away', 'availability')) NOT VALID;
ALTER TABLE app_events VALIDATE CONSTRAINT app_events_kind_check;
ALTER TABLE app_events ADD COLUMN available_count integer;
CREATE INDEX app_events_availability ON app_events (seq DESC) WHERE kind = 'availability';
