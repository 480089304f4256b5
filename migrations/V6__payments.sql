-- Money is never lost: a payment row is written before the provider is asked to charge (the
-- outbox), and settled in the same transaction that starts the session (captured) or after a
-- refund (refunded). A row left `charging` (the process died, or Postgres failed between the
-- charge and the session's start) is found by the timer sweep and refunded or captured.
-- `attempt` makes the provider's idempotency key: a retried pay reuses the attempt (one charge);
-- a pay after a refund starts the next one.
CREATE TABLE payments (
    session_id  uuid PRIMARY KEY REFERENCES chat_sessions (id),
    customer_id uuid NOT NULL,
    attempt     integer NOT NULL DEFAULT 1,
    status      text NOT NULL CHECK (status IN ('charging', 'captured', 'refunded')),
    reference   text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX payments_unsettled ON payments (updated_at) WHERE status = 'charging';
