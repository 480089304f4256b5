//! The SQL behind `AuthStore`: OTP codes, account look-ups and refresh sessions, each named.

use crate::queries::NamedQuery;

/// A new code replaces the pending one. Wrong attempts count per 15-minute window that starts
/// with the first code, not per code: re-requesting a code must not buy more guesses.
pub const SAVE_OTP: NamedQuery = NamedQuery {
    name: "save_otp",
    sql: "INSERT INTO otp_codes (phone, role, code_hash, expires_at) VALUES ($1, $2, $3, $4)
          ON CONFLICT (phone, role) DO UPDATE
             SET code_hash = EXCLUDED.code_hash, expires_at = EXCLUDED.expires_at,
                 attempts = CASE WHEN otp_codes.created_at > now() - interval '15 minutes'
                                 THEN otp_codes.attempts ELSE 0 END,
                 created_at = CASE WHEN otp_codes.created_at > now() - interval '15 minutes'
                                   THEN otp_codes.created_at ELSE now() END",
};

/// Judges and applies in one statement. The row lock serializes concurrent checks of one code:
/// the second sees the first's attempt, or finds the row gone once a valid code was consumed.
/// `verdict` is one of `too_many`, `expired`, `valid`, `wrong`; no row = no pending code.
/// $1 phone, $2 role, $3 code hash, $4 max attempts, $5 now.
pub const CHECK_OTP: NamedQuery = NamedQuery {
    name: "check_otp",
    sql: "WITH pending AS (
              SELECT phone, role,
                     CASE WHEN attempts >= $4::int4 THEN 'too_many'
                          WHEN expires_at <= $5::timestamptz THEN 'expired'
                          WHEN code_hash = $3::text THEN 'valid'
                          ELSE 'wrong' END AS verdict
                FROM otp_codes WHERE phone = $1 AND role = $2
                 FOR UPDATE),
          consumed AS (
              DELETE FROM otp_codes o USING pending p
               WHERE o.phone = p.phone AND o.role = p.role AND p.verdict = 'valid'),
          counted AS (
              UPDATE otp_codes o SET attempts = o.attempts + 1 FROM pending p
               WHERE o.phone = p.phone AND o.role = p.role AND p.verdict = 'wrong')
          SELECT verdict FROM pending",
};

/// Creates the customer on first login; the no-op update makes `RETURNING` see an existing row.
pub const CUSTOMER_BY_PHONE_OR_CREATE: NamedQuery = NamedQuery {
    name: "customer_by_phone_or_create",
    sql: "INSERT INTO customers (phone) VALUES ($1)
          ON CONFLICT (phone) DO UPDATE SET phone = EXCLUDED.phone
          RETURNING id, display_name",
};

pub const MITRA_BY_PHONE: NamedQuery = NamedQuery {
    name: "mitra_by_phone",
    sql: "SELECT id, display_name, is_active FROM mitras WHERE phone = $1",
};

pub const OPERATOR_BY_EMAIL: NamedQuery = NamedQuery {
    name: "operator_by_email",
    sql: "SELECT id, password_hash FROM operators WHERE email = $1",
};

pub const CREATE_SESSION: NamedQuery = NamedQuery {
    name: "create_auth_session",
    sql: "INSERT INTO auth_sessions (user_id, role, refresh_token_hash, expires_at)
          VALUES ($1, $2, $3, $4)
          RETURNING id",
};

/// The old hash matches at most one row (unique) and stops matching once replaced, so a
/// refresh token works once even when two refreshes race. A mitra's session also needs the
/// account active: a login racing its deactivation cannot leave a session that refreshes on.
/// The replaced hash is remembered; a hash that was already replaced (reuse: the token leaked
/// or is replayed) revokes its whole session instead. One row: `reused` false with the session
/// rotated, or `reused` true with the session revoked; no row = unknown token.
pub const ROTATE_SESSION: NamedQuery = NamedQuery {
    name: "rotate_auth_session",
    sql: "WITH rotated AS (
              UPDATE auth_sessions s SET refresh_token_hash = $3, expires_at = $4
               WHERE s.refresh_token_hash = $1 AND s.role = $2
                 AND s.revoked_at IS NULL AND s.expires_at > now()
                 AND (s.role <> 'mitra'
                      OR EXISTS (SELECT 1 FROM mitras m WHERE m.id = s.user_id AND m.is_active))
              RETURNING s.id, s.user_id, s.role),
          remembered AS (
              INSERT INTO auth_refresh_rotations (token_hash, session_id)
              SELECT $1, id FROM rotated),
          reused AS (
              UPDATE auth_sessions s SET revoked_at = now()
                FROM auth_refresh_rotations r
               WHERE r.token_hash = $1 AND s.id = r.session_id AND s.revoked_at IS NULL
                 AND NOT EXISTS (SELECT 1 FROM rotated)
              RETURNING s.id, s.user_id, s.role)
          SELECT id, user_id, role, false AS reused FROM rotated
          UNION ALL
          SELECT id, user_id, role, true AS reused FROM reused",
};

pub const REVOKE_SESSION: NamedQuery = NamedQuery {
    name: "revoke_auth_session",
    sql: "UPDATE auth_sessions SET revoked_at = now()
           WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL
          RETURNING id",
};

pub const REVOKE_USER_SESSIONS: NamedQuery = NamedQuery {
    name: "revoke_auth_sessions",
    sql: "UPDATE auth_sessions SET revoked_at = now() WHERE user_id = $1 AND revoked_at IS NULL",
};
