//! The SQL behind the app-event log (`EventLog`) and the events the chat transitions append.
//! See migration V7 for why `seq` is taken under `LOCK_EVENT_ORDER`.

use crate::queries::NamedQuery;

/// The columns every read returns, read by name into a `LoggedEvent`.
macro_rules! event_columns {
    () => {
        "seq, audience, kind, session_id, status, mitra_id, minutes, ends_at, expires_at, reason"
    };
}

/// Taken last in every transaction that appends events, and held until its commit is visible
/// (transaction-scoped): `seq` is then assigned in commit order. Two-key form, so it cannot
/// collide with the one-key customer locks.
pub const LOCK_EVENT_ORDER: NamedQuery = NamedQuery {
    name: "lock_event_order",
    sql: "SELECT pg_advisory_xact_lock(hashtext('halo.app_events'), 0)::text",
};

/// The events of the transitions of sessions $1, derived from their state as this transaction
/// left it (after `LOCK_EVENT_ORDER`):
/// - `session` to the customer, to the session's mitra, and (`reassigned`) to $3, the mitra a
///   reroute took it from;
/// - `offer` to every notified mitra while the session is searching (a blast), expiring $4
///   seconds after it was created;
/// - `offer_withdrawn` to the notified mitras that did not answer, when the blast ended:
///   failed → `expired`, cancelled → `cancelled`, active → $2 (`taken`, passed by the accept
///   only: a later transition of an active session withdraws nothing again).
///
/// $1 sessions, $2 withdraw reason of an accept, $3 previous mitra, $4 blast timeout (s).
pub const APPEND_TRANSITION_EVENTS: NamedQuery = NamedQuery {
    name: "append_transition_events",
    sql: "WITH s AS (
              SELECT id, customer_id, mitra_id, status, minutes, created_at, ends_at
                FROM chat_sessions WHERE id = ANY($1::uuid[])),
          unanswered AS (
              SELECT n.session_id, array_agg(n.mitra_id ORDER BY n.mitra_id) AS mitras
                FROM chat_request_notifications n JOIN s ON s.id = n.session_id
               WHERE n.response IS NULL
               GROUP BY n.session_id),
          e AS (
              SELECT s.id, 1 AS ord, 'customer' AS audience, ARRAY[s.customer_id] AS recipients,
                     'session' AS kind, s.status, s.mitra_id, s.minutes, s.ends_at,
                     NULL::timestamptz AS expires_at, NULL::text AS reason
                FROM s
              UNION ALL
              SELECT s.id, 2, 'mitra', ARRAY[s.mitra_id], 'session', s.status, s.mitra_id,
                     s.minutes, s.ends_at, NULL, NULL
                FROM s WHERE s.mitra_id IS NOT NULL
              UNION ALL
              SELECT s.id, 3, 'mitra', ARRAY[$3::uuid], 'session', 'reassigned', s.mitra_id,
                     s.minutes, s.ends_at, NULL, NULL
                FROM s WHERE $3::uuid IS NOT NULL
              UNION ALL
              SELECT s.id, 4, 'mitra', u.mitras, 'offer', NULL, NULL, s.minutes, NULL,
                     s.created_at + make_interval(secs => $4::float8), NULL
                FROM s JOIN unanswered u ON u.session_id = s.id
               WHERE s.status = 'searching'
              UNION ALL
              SELECT s.id, 5, 'mitra', u.mitras, 'offer_withdrawn', NULL, NULL, NULL, NULL, NULL,
                     CASE s.status WHEN 'failed' THEN 'expired'
                                   WHEN 'cancelled' THEN 'cancelled'
                                   WHEN 'active' THEN $2::text END
                FROM s JOIN unanswered u ON u.session_id = s.id
               WHERE s.status IN ('failed', 'cancelled') OR (s.status = 'active' AND $2::text IS NOT NULL))
          INSERT INTO app_events (seq, audience, recipients, kind, session_id, status, mitra_id,
                                  minutes, ends_at, expires_at, reason)
          SELECT nextval('app_events_seq'), audience, recipients, kind, id, status, mitra_id,
                 minutes, ends_at, expires_at, reason
            FROM (SELECT * FROM e ORDER BY id, ord) ordered",
};

pub const EVENTS_HEAD: NamedQuery = NamedQuery {
    name: "events_head",
    sql: "SELECT COALESCE(max(seq), 0) AS head FROM app_events",
};

/// The pump's read: every audience. $1 after, $2 limit.
pub const EVENTS_AFTER: NamedQuery = NamedQuery {
    name: "events_after",
    sql: concat!(
        "SELECT ",
        event_columns!(),
        ", recipients FROM app_events WHERE seq > $1 ORDER BY seq LIMIT $2"
    ),
};

/// A resume: one recipient's events (a range scan of the recent log; the recipient is named
/// alone in `recipients`). $1 audience, $2 recipient, $3 after, $4 limit.
pub const EVENTS_FOR: NamedQuery = NamedQuery {
    name: "events_for",
    sql: concat!(
        "SELECT ",
        event_columns!(),
        ", ARRAY[$2::uuid] AS recipients FROM app_events
          WHERE seq > $3 AND audience = $1 AND $2::uuid = ANY(recipients)
          ORDER BY seq LIMIT $4"
    ),
};

/// Whether $1 is a position from which nothing was pruned: at or after the oldest event's
/// predecessor (pruning deletes a prefix), and not beyond the newest.
pub const EVENTS_RESUMABLE: NamedQuery = NamedQuery {
    name: "events_resumable",
    sql: "SELECT min(seq) IS NOT NULL AND $1 >= min(seq) - 1 AND $1 <= max(seq) AS resumable
            FROM app_events",
};

/// A mitra's open sessions (awaiting payment or active), for its stream's first state.
/// $1 mitra.
pub const MITRA_OPEN_SESSION_ROWS: NamedQuery = NamedQuery {
    name: "mitra_open_session_rows",
    sql: "SELECT id, customer_id, mitra_id, status, minutes, created_at, accepted_at, ends_at,
                 ended_at, end_reason
            FROM chat_sessions
           WHERE mitra_id = $1 AND status IN ('active', 'pending_payment')
           ORDER BY created_at, id",
};

/// A customer's open sessions (searching, awaiting payment or active). $1 customer.
pub const CUSTOMER_OPEN_SESSION_ROWS: NamedQuery = NamedQuery {
    name: "customer_open_session_rows",
    sql: "SELECT id, customer_id, mitra_id, status, minutes, created_at, accepted_at, ends_at,
                 ended_at, end_reason
            FROM chat_sessions
           WHERE customer_id = $1 AND status IN ('searching', 'active', 'pending_payment')
           ORDER BY created_at, id",
};

/// Deletes the oldest events up to the newest one older than $1 seconds: always a prefix of
/// the log, so `EVENTS_RESUMABLE` can tell what is gone. $1 age (s), $2 limit.
pub const PRUNE_EVENTS: NamedQuery = NamedQuery {
    name: "prune_events",
    sql: "WITH cut AS (
              SELECT max(seq) AS upto FROM app_events
               WHERE created_at < now() - make_interval(secs => $1::float8)),
          doomed AS (
              SELECT seq FROM app_events, cut WHERE seq <= cut.upto ORDER BY seq LIMIT $2)
          DELETE FROM app_events WHERE seq IN (SELECT seq FROM doomed)",
};
