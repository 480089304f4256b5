-- The durable events the apps' streams (SPEC §9) are made of. Each row is written in the same
-- transaction as the chat transition that causes it, to one audience (the customers or the
-- mitras) and a list of recipients: a blast's `offer` is one row for every notified mitra.
--
-- `seq` is taken last in that transaction, under the transaction-scoped advisory lock
-- `app_events_order`, and the lock is released only after the commit is visible: so a reader
-- that sees `seq = n` sees every `seq < n` that will ever exist (no later commit can take a
-- smaller number). A reader remembering "last seq seen" therefore loses nothing and reads
-- nothing twice. Rolled-back transactions leave gaps, which never fill.
--
-- Typed columns, not jsonb: only the HTTP crate knows wire JSON; it renders each kind.
-- No foreign keys: the insert must not wait for row locks (it holds the order lock), and
-- events outlive nothing they point at (they are pruned after a retention period).
CREATE SEQUENCE app_events_seq AS bigint;

CREATE TABLE app_events (
    seq        bigint PRIMARY KEY,
    audience   text NOT NULL CHECK (audience IN ('customer', 'mitra')),
    recipients uuid[] NOT NULL,
    kind       text NOT NULL CHECK (kind IN ('offer', 'offer_withdrawn', 'session')),
    session_id uuid NOT NULL,
    status     text,
    mitra_id   uuid,
    minutes    integer,
    ends_at    timestamptz,
    expires_at timestamptz,
    reason     text,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Pruning finds rows past the retention period without scanning the retained ones.
CREATE INDEX app_events_created_at ON app_events (created_at);

-- A customer stream's first state (its open sessions), and the open-request limit's check.
CREATE INDEX chat_sessions_open_by_customer ON chat_sessions (customer_id)
    WHERE status IN ('searching', 'pending_payment', 'active');
