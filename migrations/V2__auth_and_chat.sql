-- Phone OTP login and the chat-session timers: pending one-time codes (one per phone and role),
-- and the partial indexes the timer sweep scans so it never reads closed sessions.

CREATE TABLE otp_codes (
    phone      text NOT NULL,
    role       text NOT NULL CHECK (role IN ('customer', 'mitra')),
    code_hash  text NOT NULL,
    expires_at timestamptz NOT NULL,
    attempts   integer NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (phone, role)
);

-- Timer sweep: active sessions end at ends_at.
CREATE INDEX chat_sessions_active_ends_at ON chat_sessions (ends_at)
    WHERE status = 'active';

-- Timer sweep: blasts fail and unpaid targeted requests cancel some time after creation.
CREATE INDEX chat_sessions_waiting_created_at ON chat_sessions (created_at)
    WHERE status IN ('searching', 'pending_payment');
