-- The minimum schema of CONTRACT §2: identities, auth sessions, online status with its audit log,
-- chat sessions with blast notifications, and operator settings with their defaults.

CREATE TABLE mitras (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    phone        text NOT NULL UNIQUE,
    display_name text NOT NULL,
    is_active    boolean NOT NULL DEFAULT true,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE customers (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    phone        text NOT NULL UNIQUE,
    display_name text,
    created_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE operators (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    email         text NOT NULL UNIQUE,
    password_hash text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE auth_sessions (
    id                 uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id            uuid NOT NULL,
    role               text NOT NULL CHECK (role IN ('customer', 'mitra', 'cc')),
    refresh_token_hash text NOT NULL UNIQUE,
    created_at         timestamptz NOT NULL DEFAULT now(),
    expires_at         timestamptz NOT NULL,
    revoked_at         timestamptz
);
CREATE INDEX auth_sessions_live_by_user ON auth_sessions (user_id) WHERE revoked_at IS NULL;

-- One row per mitra, created with the mitra (trigger below), so every read is an inner join.
CREATE TABLE mitra_online_status (
    mitra_id          uuid PRIMARY KEY REFERENCES mitras (id) ON DELETE CASCADE,
    is_online         boolean NOT NULL DEFAULT false,
    last_heartbeat_at timestamptz,
    updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX mitra_online_status_online ON mitra_online_status (mitra_id) WHERE is_online;

CREATE FUNCTION mitras_create_online_status() RETURNS trigger AS $$
BEGIN
    INSERT INTO mitra_online_status (mitra_id) VALUES (NEW.id) ON CONFLICT DO NOTHING;
    RETURN NEW;
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER mitras_online_status_row AFTER INSERT ON mitras
    FOR EACH ROW EXECUTE FUNCTION mitras_create_online_status();

CREATE TABLE mitra_online_logs (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    mitra_id   uuid NOT NULL REFERENCES mitras (id) ON DELETE CASCADE,
    status     text NOT NULL CHECK (status IN ('online', 'offline')),
    reason     text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX mitra_online_logs_by_mitra ON mitra_online_logs (mitra_id, created_at);

CREATE TABLE chat_sessions (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    customer_id uuid NOT NULL REFERENCES customers (id),
    mitra_id    uuid REFERENCES mitras (id),
    status      text NOT NULL CHECK (status IN ('searching', 'pending_payment', 'active', 'ended', 'failed', 'cancelled')),
    minutes     integer NOT NULL CHECK (minutes > 0),
    created_at  timestamptz NOT NULL DEFAULT now(),
    accepted_at timestamptz,
    ends_at     timestamptz,
    ended_at    timestamptz,
    end_reason  text
);
-- Capacity is a count over exactly this predicate; keep it index-only.
CREATE INDEX chat_sessions_open_by_mitra ON chat_sessions (mitra_id)
    WHERE status IN ('active', 'pending_payment');

CREATE TABLE chat_request_notifications (
    session_id   uuid NOT NULL REFERENCES chat_sessions (id) ON DELETE CASCADE,
    mitra_id     uuid NOT NULL REFERENCES mitras (id) ON DELETE CASCADE,
    created_at   timestamptz NOT NULL DEFAULT now(),
    response     text CHECK (response IN ('accepted', 'rejected')),
    responded_at timestamptz,
    PRIMARY KEY (session_id, mitra_id)
);
CREATE INDEX chat_request_notifications_by_mitra ON chat_request_notifications (mitra_id, created_at);

CREATE TABLE app_config (
    key        text PRIMARY KEY,
    value      jsonb NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    updated_by uuid
);

INSERT INTO app_config (key, value) VALUES
    ('max_customers_per_mitra', '3'),
    ('stale_after_seconds', '90'),
    ('beacon_cache_ttl_seconds', '10'),
    ('blast_timeout_seconds', '60'),
    ('payment_timeout_seconds', '300'),
    ('heartbeat_interval_seconds', '30');
