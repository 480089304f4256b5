-- The open-request limit (§9.2) and a customer stream's first state (§12.4) now count queued
-- requests too (§12.8): V7's partial index on the customer's open sessions no longer covers
-- their predicate, and both would scan the table. The same index with `queued` in it replaces
-- it.
CREATE INDEX chat_sessions_open_or_queued_by_customer ON chat_sessions (customer_id)
    WHERE status IN ('queued', 'searching', 'pending_payment', 'active');
DROP INDEX chat_sessions_open_by_customer;
