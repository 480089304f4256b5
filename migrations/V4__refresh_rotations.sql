-- Refresh-token reuse detection: every refresh token a rotation replaced is remembered with its
-- session. Presenting one again means it leaked (or a replay): the whole session is revoked.
CREATE TABLE auth_refresh_rotations (
    token_hash text PRIMARY KEY,
    session_id uuid NOT NULL REFERENCES auth_sessions (id) ON DELETE CASCADE,
    rotated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX auth_refresh_rotations_session ON auth_refresh_rotations (session_id);
